"""Detector throughput: images/s of each detector's ``score`` (and the fit times of those that fit on
training data), on one MC-dropout LeNet.

Prints JSON. Targets (issue 10): the hybrid ≥ 300 img/s at 50 samples (MC passes + five crops, all through
the shared-trunk MC path; measured with every image cropped and, as used, with L, H and C fitted on a
validation mix so that only the uncertain band is cropped); KD+BU with 60,000 training features ≤ 60 s for 10,000 digits (chunked
distances); the one-class SVMs' fit and score times stated.

    python benchmarks/detection.py --checkpoint <lenet_mnist run>/checkpoints/mc_lenet.pt --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.config import TrainSection
from bayesrobust.data import load_dataset
from bayesrobust.detection import HybridDetector, KernelDensityUncertainty, OneClassSVMDetector, UncertaintyDetector
from bayesrobust.models import BayesianClassifier, build_model
from bayesrobust.seeding import make_generator, seed_everything


def seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a saved MC-dropout model; else a LeNet trained briefly on mnist-5k")
    parser.add_argument("--data-dir", help="folder with MNIST files; else the embedded mnist-5k")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--train-images", type=int, default=60000, help="training features for KD, digits for the SVMs")
    parser.add_argument("--ocsvm-per-class", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--crop-samples", type=int, nargs="+", default=[50, 10],
                        help="MC draws classifying the hybrid's crops (one measurement each)")
    parser.add_argument("--fgsm-eps", type=float, default=0.2, help="the attack of the hybrid's fitted-band measurement")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    name = "mnist" if args.data_dir else "mnist-5k"
    train = load_dataset(name, "train", args.data_dir).head(args.train_images, seed=args.seed)
    test = load_dataset(name, "test", args.data_dir).head(args.images, seed=0)
    if args.checkpoint:
        model = BayesianClassifier.load(args.checkpoint).with_mode("mc_dropout")
    else:
        model = build_model("lenet", mode="mc_dropout").fit(train, TrainSection(epochs=args.epochs), seed=args.seed, progress=False)
    x, n = test.images, len(test)
    fit_x = test.images[: min(500, n)]
    result = {"benchmark": "detector_throughput", "images": n, "train_images": len(train), "samples": args.samples,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.machine(),
              "detectors": {}}
    for kind in ("variance", "mi"):
        detector = UncertaintyDetector(model, kind, samples=args.samples).fit(fit_x)
        t, _ = seconds(lambda d=detector: d.score(x))
        result["detectors"][kind] = {"score_img_per_s": n / t}
    # as used: L, H and C fitted on a validation mix of training digits and their FGSM images, then the
    # decision on a test mix (half FGSM); only images in the uncertain band [L, H] are cropped
    fgsm = build_attack("fgsm", eps=args.fgsm_eps, eval_samples=args.samples)
    adversarial = lambda imgs, labels: run_batched(fgsm, model, imgs, labels, generator=make_generator(args.seed)).x_adv  # noqa: E731
    half, val_n = n // 2, min(1000, len(train)) // 2
    val_clean, val_adv = train.images[:val_n], adversarial(train.images[val_n: 2 * val_n], train.labels[val_n: 2 * val_n])
    mix = torch.cat([x[:half], adversarial(x[half:], test.labels[half:])])
    result["detectors"]["hybrid"] = {"fgsm_eps": args.fgsm_eps}
    for crop_samples in args.crop_samples:
        hybrid = HybridDetector(model, samples=args.samples, crop_samples=crop_samples)
        hybrid.low_, hybrid.high_, hybrid.agree_ = 0.0, float("inf"), 5  # every image through the crops: the worst case
        t_all, _ = seconds(lambda h=hybrid: h.decide(x))
        hybrid.fit(val_clean, val_adv)
        u = hybrid.score(mix)
        t, flagged = seconds(lambda h=hybrid: h.decide(mix))
        result["detectors"]["hybrid"][f"crop_samples_{crop_samples}"] = {
            "decide_img_per_s_all_cropped": n / t_all, "decide_img_per_s_fitted": n / t,
            "fitted_band_fraction": float(((u >= hybrid.low_) & (u <= hybrid.high_)).mean()),
            "detection_accuracy_on_mix": float((flagged == (torch.arange(len(mix)) >= half).numpy()).mean())}
    t_build, kd = seconds(lambda: KernelDensityUncertainty(model, train.images, train.labels, samples=args.samples))
    t, _ = seconds(lambda: kd.raw_scores(x))
    result["detectors"]["kd_bu"] = {"training_features_seconds": t_build, "raw_scores_seconds": t, "raw_scores_img_per_s": n / t}
    t_fit, svm = seconds(lambda: OneClassSVMDetector(model, train.images, train.labels, per_class=args.ocsvm_per_class,
                                                      samples=args.samples))
    t, _ = seconds(lambda: svm.score(x))
    result["detectors"]["ocsvm"] = {"fit_seconds": t_fit, "per_class": args.ocsvm_per_class, "score_img_per_s": n / t}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
