"""Monte-Carlo dropout throughput: shared trunk + replicated head versus S full forward passes, and a
user's own network wrapped (``bayesrobust.wrap``) beside torch-uncertainty's ``mc_dropout`` wrapper.

Prints JSON: images/s of the naive loop (S complete forwards in train mode with ``torch.nn.Dropout``,
the usual hand-written MC dropout), of the same loop with our cheaper masks, of one replicated
forward of the whole net, of bayesrobust's predictive (trunk once, head S times), of the same weights
as a plain ``nn.Module`` with ``nn.Dropout`` wrapped generically (replicated batch, chunked) and of
torch-uncertainty's ``mc_dropout(net, S)`` on that module (replicated batch, one pass), and the ratios.
Every row returns the S × N × C class probabilities.

    python benchmarks/mc_dropout.py --samples 50 --images 500

torch-uncertainty is optional (``make bench-peers`` installs it without its dependencies: its package
``__init__`` imports Lightning, so its wrapper's module file is loaded on its own; it needs einops).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import time
from pathlib import Path

import torch

from bayesrobust.data import load_dataset
from bayesrobust.models import MCDropout, build_model, wrap
from bayesrobust.seeding import make_generator, seed_everything


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def torch_reference(model) -> torch.nn.Sequential:
    """The same weights as a plain PyTorch net with ``nn.Dropout`` in train mode: what a user who
    writes MC dropout by hand runs S times."""
    layers = [torch.nn.Dropout(m.p) if isinstance(m, MCDropout) else m for m in [*model.trunk, *model.head]]
    return torch.nn.Sequential(*layers).train()


def torch_uncertainty_mc_dropout():
    """torch-uncertainty's ``mc_dropout`` function, or None when it is not installed."""
    spec = importlib.util.find_spec("torch_uncertainty")
    if spec is None or spec.submodule_search_locations is None or importlib.util.find_spec("einops") is None:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "methods" / "mc_dropout.py"
    module_spec = importlib.util.spec_from_file_location("_tu_mc_dropout", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.mc_dropout


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="lenet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    model = build_model(args.arch, mode="mc_dropout")
    x = load_dataset("mnist-5k", "test").images[: args.images]
    s = args.samples

    reference = torch_reference(model)

    @torch.no_grad()
    def naive_loop_torch_dropout():
        return torch.stack([torch.softmax(reference(x), -1) for _ in range(s)])

    @torch.no_grad()
    def naive_loop():
        with model.dropout_sampling(True, make_generator(args.seed)):
            return torch.stack([torch.softmax(model(x), -1) for _ in range(s)])

    @torch.no_grad()
    def replicated_whole_net():
        with model.dropout_sampling(True, make_generator(args.seed)):
            rep = x.unsqueeze(0).expand(s, *x.shape).reshape(s * x.shape[0], *x.shape[1:])
            return torch.softmax(model(rep), -1).view(s, x.shape[0], -1)

    def ours():
        return model.predictive(x, s, generator=make_generator(args.seed))

    user_net = torch_reference(model)  # the same weights as a user's nn.Module with nn.Dropout
    wrapped = wrap(user_net, "mc_dropout")

    def ours_wrapped():
        return wrapped.predictive(x, s, generator=make_generator(args.seed))

    t_torch, t_naive, t_rep, t_ours, t_wrapped = (timed(f, args.repeats) for f in
                                                  (naive_loop_torch_dropout, naive_loop, replicated_whole_net, ours,
                                                   ours_wrapped))
    n = x.shape[0]
    peer = torch_uncertainty_mc_dropout()
    t_peer = None
    if peer is not None:
        peer_model = peer(torch_reference(model), num_estimators=s)
        peer_model.eval()  # its train() keeps the dropout layers on

        @torch.no_grad()
        def torch_uncertainty():
            return torch.softmax(peer_model(x), -1).view(s, n, -1)

        t_peer = timed(torch_uncertainty, args.repeats)
    result = {
        "benchmark": "mc_dropout_predictive",
        "arch": args.arch,
        "samples": s,
        "images": n,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "naive_loop_torch_dropout_img_per_s": n / t_torch,
        "naive_loop_our_masks_img_per_s": n / t_naive,
        "replicated_whole_net_img_per_s": n / t_rep,
        "bayesrobust_img_per_s": n / t_ours,
        "speedup_vs_naive_loop_torch_dropout": t_torch / t_ours,
        "speedup_vs_naive_loop_our_masks": t_naive / t_ours,
        "speedup_vs_replicated_whole_net": t_rep / t_ours,
        "bayesrobust_wrapped_img_per_s": n / t_wrapped,
        "torch_uncertainty_mc_dropout_img_per_s": None if t_peer is None else n / t_peer,
        "wrapped_vs_torch_uncertainty": None if t_peer is None else t_peer / t_wrapped,
        "shared_trunk_vs_wrapped": t_wrapped / t_ours,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
