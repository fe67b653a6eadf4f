"""Monte-Carlo dropout throughput: shared trunk + replicated head versus S full forward passes.

Prints JSON: images/s of the naive loop (S complete forwards in train mode with ``torch.nn.Dropout``,
the usual hand-written MC dropout), of the same loop with our cheaper masks, of one replicated
forward of the whole net, and of bayesrobust's predictive (trunk once, head S times), and the ratios.

    python benchmarks/mc_dropout.py --samples 50 --images 500
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from bayesrobust.data import load_dataset
from bayesrobust.models import MCDropout, build_model
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

    t_torch, t_naive, t_rep, t_ours = (timed(f, args.repeats) for f in
                                       (naive_loop_torch_dropout, naive_loop, replicated_whole_net, ours))
    n = x.shape[0]
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
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
