"""GPDNN cost against the same CNN with a softmax head: training seconds per epoch and inference
images/s, and how the GP's cost grows with the number of inducing points M and of predictive draws S.

Prints JSON. The CNN is Bradshaw et al.'s (conv 5×5×32 → pool → conv 5×5×64 → pool → FC 1024): the
baseline is our plain LeNet with ``hidden = 1024`` (FC 1024 → FC 10), the GPDNN puts FC 1024 → FC 100
→ sparse variational GP with M inducing points → robust max on the same trunk. Both train with Adam,
batch 128, on the same digits; epoch times are the median of ``--epochs`` epochs after the first.

With ``--extractors lenet residual_sn`` the GPDNN rows are repeated with DUE's spectrally bounded
residual extractor (``models/residual.py``), each with its epoch time as a ratio to the LeNet extractor's at
the same M (issue 27's goal: at most 2× at M = 100); ``--residual-channels`` sets the residual extractor's
widths alone.

    python benchmarks/gpdnn.py --images 5000 --inducing 100 250 500 --samples 1 50 200
    python benchmarks/gpdnn.py --inducing 100 --samples 50 --extractors lenet residual_sn
    python benchmarks/gpdnn.py --inducing 100 --samples 50 --extractors lenet residual_sn --residual-channels 32 32
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from bayesrobust.config import TrainSection
from bayesrobust.data import load_dataset
from bayesrobust.models import build_model
from bayesrobust.runs import cpu_path
from bayesrobust.seeding import make_generator, seed_everything


def epoch_seconds(model, train, epochs: int, seed: int) -> float:
    """Median seconds of a training epoch (the k-means initialisation of a GP is excluded)."""
    model.fit(train, TrainSection(epochs=epochs, batch_size=128, lr=1e-3), seed=seed, progress=False)
    times = [h["seconds"] for h in model.history_]
    return statistics.median(times[1:] if len(times) > 1 else times)


def images_per_second(fn, n: int, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000, help="training digits (mnist-5k)")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--inducing", type=int, nargs="+", default=[100, 250, 500])
    parser.add_argument("--samples", type=int, nargs="+", default=[1, 50, 200])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--extractors", nargs="+", default=["lenet"], choices=["lenet", "residual_sn"],
                        help="GPDNN feature extractors to time (the first is the reference of the ratios)")
    parser.add_argument("--residual-channels", type=int, nargs=2, default=[32, 64], metavar=("C1", "C2"),
                        help="the residual extractor's channels (the LeNet extractor keeps 32, 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    train = load_dataset("mnist-5k", "train").head(args.images, seed=args.seed)
    x = load_dataset("mnist-5k", "test").images[: args.test_images]
    n = len(x)

    cnn = build_model("lenet", mode="plain", hidden=args.hidden)
    cnn_epoch = epoch_seconds(cnn, train, args.epochs, args.seed)
    cnn_infer = images_per_second(lambda: cnn.predictive(x), n, args.repeats)
    result = {
        "benchmark": "gpdnn_vs_softmax_cnn",
        "train_images": len(train), "test_images": n, "epochs_timed": args.epochs, "hidden": args.hidden,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(), **cpu_path(),
        "cnn": {"epoch_seconds": cnn_epoch, "predictive_img_per_s": cnn_infer},
        "gpdnn": {},
    }
    for extractor, m in ((e, m) for e in args.extractors for m in args.inducing):
        seed_everything(args.seed)
        channels = args.residual_channels if extractor == "residual_sn" else [32, 64]
        gp = build_model("gpdnn", hidden=args.hidden, inducing=m, kmeans_images=min(5000, len(train)), extractor=extractor,
                         channels=channels)
        epoch = epoch_seconds(gp, train, args.epochs, args.seed)
        row = {"channels": gp.params["channels"], "epoch_seconds": epoch, "epoch_ratio_to_cnn": epoch / cnn_epoch,
               "accuracy": None}
        reference = result["gpdnn" if args.extractors[0] == "lenet" else f"gpdnn_{args.extractors[0]}"].get(f"M{m}")
        if extractor != args.extractors[0] and reference:
            row[f"epoch_ratio_to_{args.extractors[0]}_extractor"] = epoch / reference["epoch_seconds"]
        with torch.no_grad():
            row["log_prob_img_per_s"] = images_per_second(lambda gp=gp: gp.log_prob(x), n, args.repeats)
        for s in args.samples:
            row[f"predictive_S{s}_img_per_s"] = images_per_second(
                lambda gp=gp, s=s: gp.predictive(x, s, generator=make_generator(args.seed)), n, args.repeats)
        labels = load_dataset("mnist-5k", "test").labels[:n]
        row["accuracy"] = gp.predictive(x, 50, generator=make_generator(args.seed)).accuracy(labels)
        result.setdefault("gpdnn" if extractor == "lenet" else f"gpdnn_{extractor}", {})[f"M{m}"] = row
    result["cnn"]["accuracy"] = cnn.predictive(x).accuracy(load_dataset("mnist-5k", "test").labels[:n])
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
