"""Attack throughput and quality: bayesrobust beside torchattacks and ART, same model, same images.

Prints JSON: for each attack and library, images/s, success rate (and robust accuracy), mean L0 / L2 /
L∞, the cost in forward + backward passes per image next to the method's minimum, and ours/peer ratios.
For APGD and Square, ours stops each example at its first success while torchattacks spends the whole
budget, so images/s mostly measures that; ``ms_per_image_step`` (ours: per step taken; torchattacks: per
step of the budget, a lower bound of its cost per step taken) compares the cost of a step. Our speed is
timed on ``Attack.generate`` (adversarial images only, what the peers return); the full call, which
also evaluates the model's predictive on the adversarial batch, is reported beside it.

    python benchmarks/attacks.py --checkpoint runs/lenet_mnist/<time>/checkpoints/lenet.pt --data-dir ../shared/data

Peers are optional (``pip install -e .[peers]`` and ``pip install --no-deps torchattacks``); a missing
peer is reported as such. Without --checkpoint a plain LeNet is trained for --epochs on the data.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from bayesrobust.attacks import build_attack
from bayesrobust.config import TrainSection
from bayesrobust.data import load_dataset
from bayesrobust.errors import DatasetError
from bayesrobust.models import BayesianClassifier, build_model
from bayesrobust.seeding import seed_everything


class DeterministicLogits(torch.nn.Module):
    """The model's dropout-off logits as a plain module, for the peer libraries."""

    def __init__(self, model: BayesianClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        with self.model.dropout_sampling(False):
            return self.model(x)


def quality(model, x, y, x_adv, target=None) -> dict:
    with torch.no_grad(), model.dropout_sampling(False):
        pred = model(x_adv).argmax(1)
    ok = (pred == target) if target is not None else (pred != y)
    delta = (x_adv - x).flatten(1)
    l0 = (delta.abs() > 1e-6).sum(1).float()
    return {"success_rate": float(ok.float().mean()), "l0": float(l0.mean()), "l0_success": float(l0[ok].mean()) if ok.any() else None,
            "l2": float(delta.norm(dim=1).mean()), "linf": float(delta.abs().amax(1).mean())}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def ours(model, attack_name, params, x, y, target=None):
    """Time ``generate`` (adversarial images only, like the peers) and the full call that also
    evaluates the predictive (success, uncertainty) on the adversarial batch."""
    attack = build_attack(attack_name, **params)
    seeded = lambda: torch.Generator().manual_seed(0)  # noqa: E731  (random starts and windows: the same in both calls)
    (x_adv, iterations), seconds = timed(lambda: attack.generate(model, x, y, target=target, generator=seeded()))
    result, full_seconds = timed(lambda: attack(model, x, y, target=target, generator=seeded()))
    assert torch.equal(result.x_adv, x_adv.cpu())
    return result, seconds, full_seconds


def peer_torchattacks(name, net, x, y, target, params):
    try:
        import torchattacks
    except ImportError:
        return None, "torchattacks not installed (pip install --no-deps torchattacks)"
    if name == "fgsm":
        atk = torchattacks.FGSM(net, eps=params["eps"])
    elif name == "bim":
        atk = torchattacks.BIM(net, eps=params["eps"], alpha=params["alpha"], steps=params["steps"])
    elif name == "jsma":
        atk = torchattacks.JSMA(net, theta=params["theta"], gamma=params["gamma"])
    elif name == "cw_l2":
        atk = torchattacks.CW(net, c=1.0, kappa=0.0, steps=params["steps"], lr=0.01)
    elif name == "apgd" and params.get("target_classes"):  # APGD-T: torchattacks' DLR-targeted run over 9 classes
        atk = torchattacks.APGDT(net, norm="Linf", eps=params["eps"], steps=params["steps"], n_classes=10)
    elif name == "apgd":
        atk = torchattacks.APGD(net, norm="Linf", eps=params["eps"], steps=params["steps"], loss=params["loss"])
    elif name == "square":
        atk = torchattacks.Square(net, norm=params.get("norm", "Linf"), eps=params["eps"], n_queries=params["queries"], p_init=0.8)
    elif name == "autoattack":  # as torchattacks ships it: APGD-CE, APGD-T, FAB-T, Square, with its 10-step APGD default
        atk = torchattacks.AutoAttack(net, norm="Linf", eps=params["eps"], version="standard", n_classes=10, seed=0)
    else:
        return None, "no torchattacks counterpart"
    if target is not None:
        atk.set_mode_targeted_by_function(lambda images, labels: target)
    out, seconds = timed(lambda: atk(x, y))
    return (out.detach(), seconds), None


def random_start_spread(model, net, params, x, y, starts: int) -> dict:
    """APGD-CE's robust accuracy over ``starts`` random starts (seeds 0…starts−1) in each library, on the
    same images: how far one start's number can move, to read a gap between the libraries against."""
    import torchattacks

    def robust(x_adv):
        with torch.no_grad():
            return float((net(x_adv).argmax(1) == y).float().mean())

    ours_ = [robust(build_attack("apgd", **params)(model, x, y, generator=torch.Generator().manual_seed(s), progress=False).x_adv)
             for s in range(starts)]
    peer = [robust(torchattacks.APGD(net, norm="Linf", eps=params["eps"], steps=params["steps"], loss="ce", seed=s)(x, y))
            for s in range(starts)]
    return {"bayesrobust": ours_, "torchattacks": peer}


def peer_torchattacks_stages(name, net, x, y, target, params):
    """torchattacks' components chained as our AutoAttack chains them: APGD-CE and APGD-T with our step
    budget, then Square, each on the images still robust (``MultiAttack``), no FAB-T."""
    if name != "autoattack":
        return None, "only for autoattack"
    try:
        import torchattacks
    except ImportError:
        return None, "torchattacks not installed (pip install --no-deps torchattacks)"
    eps, steps = params["eps"], params["steps"]
    atk = torchattacks.MultiAttack([
        torchattacks.APGD(net, norm="Linf", eps=eps, steps=steps, loss="ce", seed=0),
        torchattacks.APGDT(net, norm="Linf", eps=eps, steps=steps, n_classes=params["target_classes"] + 1, seed=0),
        torchattacks.Square(net, norm="Linf", eps=eps, n_queries=params["queries"], p_init=0.8, seed=0)])
    out, seconds = timed(lambda: atk(x, y))
    return (out.detach(), seconds), None


def peer_art(name, net, x, y, target, params):
    try:
        from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod, SaliencyMapMethod
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None, "adversarial-robustness-toolbox not installed (pip install -e .[peers])"
    clf = PyTorchClassifier(net, loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0))
    n = x.shape[0]
    if name == "fgsm":
        atk = FastGradientMethod(clf, eps=params["eps"], batch_size=n)
    elif name == "bim":
        atk = BasicIterativeMethod(clf, eps=params["eps"], eps_step=params["alpha"], max_iter=params["steps"], batch_size=n, verbose=False)
    elif name == "jsma":
        atk = SaliencyMapMethod(clf, theta=params["theta"], gamma=params["gamma"], batch_size=n, verbose=False)
    else:
        return None, "not benchmarked for ART"
    labels = np.eye(10)[(target if target is not None else y).numpy()]
    out, seconds = timed(lambda: atk.generate(x.numpy(), y=labels))
    return (torch.from_numpy(out).float(), seconds), None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a saved bayesrobust model (plain mode is used for every library)")
    parser.add_argument("--data-dir", help="folder with MNIST files; else the embedded mnist-5k")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--cw-images", type=int, default=100)
    parser.add_argument("--slow-peer-images", type=int, default=100, help="images for torchattacks JSMA (≈4 img/s)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--square-queries", type=int, default=5000)
    parser.add_argument("--apgd-steps", type=int, default=100, help="APGD's steps per run (AutoAttack's 100)")
    parser.add_argument("--eps", type=float, default=0.3, help="L∞ ε of APGD-CE, APGD-T and Square (AutoAttack's MNIST 0.3)")
    parser.add_argument("--starts", type=int, default=1, help="also APGD-CE's robust accuracy over this many random starts per library")
    parser.add_argument("--l2-eps", type=float, default=2.0, help="L2 ε of square_l2")
    parser.add_argument("--only", nargs="*", default=["fgsm", "bim", "jsma", "jsma_f", "cw_l2", "apgd_ce", "apgd_t", "square",
                                                      "square_l2", "autoattack"])
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    try:
        test = load_dataset("mnist", "test", root=args.data_dir)
        train_name = "mnist"
    except DatasetError:
        test, train_name = load_dataset("mnist-5k", "test"), "mnist-5k"
    if args.checkpoint:
        model = BayesianClassifier.load(args.checkpoint)
    else:
        model = build_model("lenet", mode="plain").fit(load_dataset(train_name, "train", root=args.data_dir),
                                                       TrainSection(epochs=args.epochs), progress=False)
    model = model.with_mode("plain")
    for p in model.parameters():
        p.requires_grad_(False)
    net = DeterministicLogits(model).eval()
    sub = test.head(args.images, seed=0)
    x, y = sub.images, sub.labels
    setups = {
        "fgsm": ({"eps": 0.25}, None, args.images, "1 forward + 1 backward"),
        "bim": ({"eps": 0.3, "alpha": 0.01, "steps": 10}, None, args.images, "10 × (1 forward + 1 backward)"),
        "jsma": ({"theta": 1.0, "gamma": 0.145}, "next", args.images, "per iteration: 1 forward + 2 backward"),
        # JSMA-F: the same two-pixel search on the softmax outputs; peers run their own JSMA
        "jsma_f": ({"theta": 1.0, "gamma": 0.145}, "next", args.images, "per iteration: 1 forward + 1 backward (β = −α)"),
        "cw_l2": ({"steps": 100}, None, args.cw_images, "per step: 1 forward + 1 backward"),
        # AutoAttack's components at its MNIST setting (L∞ ε 0.3): every example stops once broken
        "apgd_ce": ({"eps": args.eps, "steps": args.apgd_steps, "loss": "ce"}, None, args.images, f"≤ {args.apgd_steps} × (1 forward + 1 backward)"),
        "apgd_t": ({"eps": args.eps, "steps": args.apgd_steps, "loss": "dlr", "target_classes": 9}, None, args.images,
                   f"≤ 9 targets × {args.apgd_steps} × (1 forward + 1 backward)"),
        "square": ({"eps": args.eps, "queries": args.square_queries}, None, args.images, f"≤ {args.square_queries} forwards"),
        "square_l2": ({"eps": args.l2_eps, "norm": "L2", "queries": args.square_queries}, None, args.images,
                      f"≤ {args.square_queries} forwards"),
        "autoattack": ({"eps": args.eps, "version": "standard", "steps": args.apgd_steps, "target_classes": 9, "queries": args.square_queries},
                       None, args.images, "each stage only on the images still robust"),
    }
    report = {"benchmark": "attacks", "model": args.checkpoint or f"lenet trained {args.epochs} epochs on {train_name}",
              "data": test.info.name, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "machine": platform.machine(), "attacks": {}}
    for name in args.only:
        params, target_mode, n, minimum = setups[name]
        xs, ys = x[:n], y[:n]
        target = (ys + 1) % 10 if target_mode == "next" else None
        entry = {"params": params, "images": n, "targeted": target is not None, "minimum_passes": minimum}
        our_params = dict(params)
        attack_name = {"jsma_f": "jsma", "apgd_ce": "apgd", "apgd_t": "apgd", "square_l2": "square"}.get(name, name)
        if name == "jsma_f":
            our_params["space"] = "probs"
        if name == "bim":
            our_params["variant"] = "B"
        if name == "cw_l2":
            our_params.update({"binary_search_steps": 9, "initial_const": 1e-2, "lr": 0.1, "steps": 100})
        result, seconds, full_seconds = ours(model, attack_name, our_params, xs, ys, target)
        mine = {"seconds": seconds, "img_per_s": n / seconds, "img_per_s_with_predictive": n / full_seconds,
                **quality(model, xs, ys, result.x_adv, target),
                "mean_iterations": float(result.iterations.float().mean())}
        if attack_name == "jsma":
            backward = 1 if name == "jsma_f" else 2
            mine["passes_per_image"] = {"forward": mine["mean_iterations"], "backward": backward * mine["mean_iterations"]}
        if attack_name in ("apgd", "square"):  # ours stops each example once broken, torchattacks runs the budget:
            mine["ms_per_image_step"] = 1000 * seconds / float(result.iterations.sum().clamp_min(1))  # compare per step
        if name == "cw_l2":
            steps = float(result.iterations.max())
            mine["binary_search"] = our_params
            mine["ms_per_image_step"] = 1000 * seconds / (n * steps)
        mine["robust_accuracy"] = 1.0 - mine["success_rate"]
        entry["bayesrobust"] = mine
        if name == "autoattack":
            mine["robust_accuracy_after_stage"] = {k.removeprefix("robust_accuracy_after_"): v for k, v in result.summary().items()
                                                   if k.startswith("robust_accuracy_after_")}
        peers = (("torchattacks", peer_torchattacks), ("torchattacks_same_stages", peer_torchattacks_stages), ("art", peer_art))
        for peer, fn in peers:
            m = min(n, args.slow_peer_images) if (peer == "torchattacks" and attack_name == "jsma") else n
            out, why = fn(attack_name, net, xs[:m], ys[:m], None if target is None else target[:m], params)
            if out is None:
                if peer != "torchattacks_same_stages":
                    entry[peer] = {"skipped": why}
                continue
            x_adv, peer_seconds = out
            entry[peer] = {"seconds": peer_seconds, "images": m, "img_per_s": m / peer_seconds,
                           **quality(model, xs[:m], ys[:m], x_adv, None if target is None else target[:m])}
            entry[peer]["robust_accuracy"] = 1.0 - entry[peer]["success_rate"]
            if name == "cw_l2":
                entry[peer]["ms_per_image_step"] = 1000 * peer_seconds / (m * params["steps"])
            if peer == "torchattacks" and attack_name in ("apgd", "square"):  # per step of its full budget: a lower bound of its cost per step
                budget = params.get("queries") or params["steps"] * max(1, params.get("target_classes", 0))
                entry[peer]["ms_per_image_step_lower_bound"] = 1000 * peer_seconds / (m * budget)
            entry[f"speed_ratio_vs_{peer}"] = mine["img_per_s"] / entry[peer]["img_per_s"]
        if name == "apgd_ce" and args.starts > 1 and "seconds" in entry.get("torchattacks", {}):
            entry["robust_accuracy_per_start"] = random_start_spread(model, net, params, xs, ys, args.starts)
        report["attacks"][name] = entry
        print(json.dumps({name: entry}), flush=True)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
