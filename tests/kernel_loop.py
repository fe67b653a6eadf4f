"""The training step that once hung or crashed oneDNN (issue 35), run as its own process by
tests/test_cpu_paths.py so that a hang or a crash fails one test instead of taking pytest down.

The tiny residual GPDNN of the contract tests (its strided 1×1 shortcut convolutions are what sent a
channels-last extractor to oneDNN's faulty 1×1 backward-weights kernels), forward and backward through
``log_prob`` in both training flags, on batches of 2, 3, 5 and 8 digits. Prints one line per iteration to
stderr, so a test that times out can say how far it got, and ``done`` with the seconds at the end.

    python tests/kernel_loop.py --iterations 200
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bayesrobust.data import load_dataset
from bayesrobust.models import MODELS, build_model

BATCHES = (2, 3, 5, 8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    model = build_model("gpdnn", **MODELS.get("gpdnn").tiny_params, extractor="residual_sn", feature_norm=True)
    digits = load_dataset("mnist-5k", "test").images[:max(BATCHES)]
    start = time.perf_counter()
    for iteration in range(args.iterations):
        for training in (True, False):
            model.train(training)
            for batch in BATCHES:
                model.log_prob(digits[:batch], samples=3).sum().backward()
        print(f"iteration {iteration + 1}/{args.iterations}", file=sys.stderr, flush=True)
    print(f"done {args.iterations} iterations in {time.perf_counter() - start:.1f} s "
          f"(ATen {torch.backends.cpu.get_cpu_capability()})", flush=True)


if __name__ == "__main__":
    main()
