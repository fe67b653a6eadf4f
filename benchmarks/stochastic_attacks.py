"""Configured versus adaptive attacks on plain and MC-dropout models: the table of issue 8, re-measured.

For every model of a run folder (its ``checkpoints/*.pt``) and every row below, prints JSON with the
success rate under the attack's judge (MC mean over ``--eval-samples`` fixed draws), the success on
independent draws, the model's mutual information and entropy on the adversarial examples, the mean
L2 of the successful ones and the seconds spent; the clean digits' uncertainty is given beside.

    python benchmarks/stochastic_attacks.py --run runs/quickstart/<time>              # mnist-5k
    python benchmarks/stochastic_attacks.py --run runs/lenet_mnist/<time> --dataset mnist --data-dir ../shared/data

On a plain model the EOT-only variants equal their one-mask rows and are skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from bayesrobust.attacks import build_attack
from bayesrobust.data import load_dataset
from bayesrobust.models import BayesianClassifier
from bayesrobust.seeding import derive_seed, make_generator, seed_everything

BIM = {"eps": 0.3, "alpha": 0.01, "steps": 40}
CW = {"steps": 100, "binary_search_steps": 5, "initial_const": 1.0, "lr": 0.1}
ROWS = {
    "bim_a": ("bim", {**BIM, "variant": "A"}),
    "bim_a eot10": ("bim", {**BIM, "variant": "A", "eot_samples": 10}),
    "bim_a eot10 k1": ("bim", {**BIM, "variant": "A", "eot_samples": 10, "kappa": 1.0}),  # the suite's adaptive form
    "bim_b": ("bim", {**BIM, "variant": "B"}),
    "cw k0": ("cw_l2", {**CW, "kappa": 0.0}),
    "cw k0 eot10": ("cw_l2", {**CW, "kappa": 0.0, "eot_samples": 10}),
    "cw k5 eot10": ("cw_l2", {**CW, "kappa": 5.0, "eot_samples": 10}),  # the suite's adaptive form
}


def measure(model, x, y, rows, *, eval_samples: int, seed: int) -> dict:
    clean = model.predictive(x, eval_samples, generator=make_generator(derive_seed(seed, "clean")))
    out = {"clean": {"error_rate": 1 - clean.accuracy(y), "mi": float(clean.mutual_information.mean()),
                     "entropy": float(clean.entropy.mean())}}
    for row in rows:
        name, params = ROWS[row]
        if not model.draws.random and params.get("eot_samples", 1) > 1 and params.get("kappa", 0.0) == 0.0:
            continue  # EOT changes nothing on a plain model
        attack = build_attack(name, eval_samples=eval_samples, **params)
        start = time.perf_counter()
        result = attack(model, x, y, generator=make_generator(derive_seed(seed, row)))
        seconds = time.perf_counter() - start
        s = result.summary()
        out[row] = {k: s[k] for k in ("success_rate", "success_rate_fresh", "mi", "entropy", "confidence", "l2_success")}
        out[row]["claimed_rate"] = float(result.claimed.float().mean())
        out[row]["seconds"] = seconds
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder with checkpoints/*.pt")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=int, default=100, help="test digits attacked (stratified, seeded)")
    parser.add_argument("--eval-samples", type=int, default=50)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    test = load_dataset(args.dataset, "test", root=args.data_dir).head(args.limit, seed=0)
    report = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "dataset": args.dataset, "examples": len(test), "eval_samples": args.eval_samples, "models": {}}
    for path in sorted(Path(args.run, "checkpoints").glob("*.pt")):
        model = BayesianClassifier.load(path)
        report["models"][path.stem] = {"mode": model.mode, **measure(model, test.images, test.labels, args.rows,
                                                                        eval_samples=args.eval_samples, seed=args.seed)}
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
