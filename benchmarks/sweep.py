"""Sweep throughput: the same ``--trials`` tiny trials (a 2-value grid × seeds of a small MLP on the
embedded digits) run by ``bayesrobust sweep`` serially in one process and as Ray tasks on this machine's
cores, in one run; plus Ray's own start-up (``ray.init`` and a first no-op task) in seconds.

Prints JSON: wall seconds of each, the speed-up (serial / Ray) and Ray's overhead. On 2 cores the
ceiling is 2×, less the start-up; the trials are tiny on purpose, so the overhead shows.

    python benchmarks/sweep.py --trials 8 --cpus-per-trial 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

CONFIG = """
[run]
name = "bench_sweep"
[data]
train = "mnist-5k"
train_limit = {images}
test_limit = 500
val_fraction = 0.0
[models.mlp]
arch = "mlp"
mode = "plain"
params = {{ hidden = [64] }}
[models.mlp.train]
epochs = {epochs}
[evaluation]
samples = 1
grid_size = 4
"""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="an even number: 2 grid values × trials/2 seeds")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=1000, help="training digits per trial")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    import ray

    from bayesrobust.sweeps import run_sweep

    seeds = f"0-{args.trials // 2 - 1}"
    grid = ["models.mlp.train.lr=0.001,0.003"]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.toml"
        config.write_text(CONFIG.format(images=args.images, epochs=args.epochs))
        start = time.perf_counter()
        run_sweep(config, grid_options=grid, seeds=seeds, out=Path(tmp) / "serial", executor="serial", progress=False)
        serial = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(address="local", include_dashboard=False, logging_level="ERROR", log_to_driver=False, configure_logging=False)
        ray.get(ray.remote(lambda: None).remote())
        startup = time.perf_counter() - start
        start = time.perf_counter()
        run_sweep(config, grid_options=grid, seeds=seeds, out=Path(tmp) / "ray", executor="ray",
                  cpus_per_trial=args.cpus_per_trial, progress=False)
        ray_seconds = time.perf_counter() - start
        ray.shutdown()
    result = {"benchmark": "sweep", "trials": args.trials, "images": args.images, "epochs": args.epochs, "cpus": os.cpu_count(), "cpus_per_trial": args.cpus_per_trial,
              "serial_seconds": round(serial, 2), "ray_seconds": round(ray_seconds, 2),
              "ray_startup_seconds": round(startup, 2), "speedup": round(serial / ray_seconds, 2),
              "speedup_including_startup": round(serial / (ray_seconds + startup), 2),
              "ray": ray.__version__, "python": platform.python_version()}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
