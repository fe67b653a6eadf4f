"""Clean and shifted-set evaluation: accuracy, NLL and uncertainty of every model.

Writes ``clean/<model>/{acc,nll,entropy,mi,variance}``, ``shift/<set>/<model>/{acc,nll,entropy,mi,
auroc_entropy,auroc_mi}`` (AUROC of telling the shifted set from the test set by the model's own
uncertainty; for VAEs also ``auroc_elbo`` and ``auroc_reconstruction``, with the mean ELBO in
``clean/<vae>/elbo`` and ``shift/<set>/<vae>/elbo``: the generative model's own surprise), ``arrays/evaluation.npz`` (per-example uncertainty for the report's histograms and a
stratified grid of test digits) and one ArviZ NetCDF per model on the test split. With ``rotations`` /
``translations``, Ovadia et al.'s shift protocol: ``rotate/<degrees>/<model>/{acc,nll,brier,ece,entropy}``
and ``translate/<pixels>/<model>/…`` on shifted copies of the test digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.errors import ConfigError
from bayesrobust.metrics.ood import auroc
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import derive_seed, make_generator


@dataclass(frozen=True)
class EvaluationSection:
    """Clean and shifted-set evaluation (the ``evaluation`` suite)."""

    samples: int = 50
    batch_size: int = 500
    grid_size: int = 16
    rotations: tuple[float, ...] = ()  # degrees (Ovadia et al.: 15, 30, …, 180) applied to the test digits
    translations: tuple[int, ...] = ()  # pixels to the right (Ovadia et al.: 2, 4, …, 26)
    shift_limit: int = 0  # test digits per shifted copy (0: all)


def validate_evaluation(config) -> None:
    section = config.suites["evaluation"]
    if section.samples < 1:
        raise ConfigError("evaluation.samples must be >= 1")
    if any(not 0 < abs(r) <= 360 for r in section.rotations):
        raise ConfigError(f"evaluation.rotations are degrees in (0, 360], got {list(section.rotations)}")
    if any(not 0 < t < 28 for t in section.translations):
        raise ConfigError(f"evaluation.translations are pixels in 1..27, got {list(section.translations)}")
    if section.shift_limit < 0:
        raise ConfigError("evaluation.shift_limit must be >= 0 (0: all test digits)")


def predictive_metrics(pred: Predictive, labels: torch.Tensor) -> dict[str, float]:
    return {
        "acc": pred.accuracy(labels),
        "nll": pred.nll(labels),
        "confidence": float(pred.confidence.mean()),
        "entropy": float(pred.entropy.mean()),
        "mi": float(pred.mutual_information.mean()),
        "variance": float(pred.variance.mean()),
    }


def generative_scores(model, images: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """A VAE's per-example −ELBO (nats, 8 draws of z) and reconstruction error; {} for other models."""
    from bayesrobust.detection.generative import GENERATIVE_SCORES, GenerativeDetector

    if not hasattr(model, "reconstruction_error"):
        return {}
    return {kind: GenerativeDetector(model, kind, seed=seed).score(images) for kind in GENERATIVE_SCORES}


def shift_metrics(pred: Predictive, labels: torch.Tensor) -> dict[str, float]:
    """Ovadia et al.'s quantities on one shifted copy: accuracy, NLL, Brier, ECE (15 bins), entropy."""
    from bayesrobust.metrics import calibration as cal

    probs = pred.mean.double().numpy()
    y = labels.numpy()
    correct = probs.argmax(1) == y
    return {"acc": float(correct.mean()), "nll": pred.nll(labels), "brier": float(cal.brier_score(probs, y)[0]),
            "ece": float(cal.expected_calibration_error(probs.max(1), correct)[0]), "entropy": float(pred.entropy.mean())}


def run_shift_protocol(models, test, config, seed: int) -> dict[str, float]:
    """Every model on rotated and translated copies of the test digits (``rotate/<deg>/<model>/…``,
    ``translate/<px>/<model>/…``)."""
    from bayesrobust.data.shift import rotate, translate

    subset = test.head(config.shift_limit, seed=0) if config.shift_limit else test
    metrics: dict[str, float] = {}
    # strength 0 (the same digits unshifted) starts each curve, computed the same way
    copies = [("rotate", r, rotate(subset.images, r)) for r in ([0.0, *config.rotations] if config.rotations else [])]
    copies += [("translate", t, translate(subset.images, t)) for t in ([0, *config.translations] if config.translations else [])]
    for kind, strength, images in copies:
        for name, model in models.items():
            pred = model.predictive(images, config.samples, generator=make_generator(derive_seed(seed, kind, name)),
                                    batch_size=config.batch_size)
            for key, value in shift_metrics(pred, subset.labels).items():
                metrics[f"{kind}/{strength:g}/{name}/{key}"] = value
    return metrics


def run_evaluation(run, models, data, config, seed: int) -> dict[str, float]:
    """Evaluate every model on the test split and each shifted set; return the metrics written."""
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {"test/labels": data.test.labels.numpy()}
    grid = data.test.head(config.grid_size, seed=0)
    arrays["grid/images"] = grid.images.numpy()
    arrays["grid/labels"] = grid.labels.numpy()
    for name, model in models.items():
        gen = make_generator(derive_seed(seed, "evaluation", name))
        pred = model.predictive(data.test.images, config.samples, generator=gen, batch_size=config.batch_size)
        for key, value in predictive_metrics(pred, data.test.labels).items():
            metrics[f"clean/{name}/{key}"] = value
        for key, value in pred.summary().items():
            arrays[f"test/{name}/{key}"] = value.numpy()
        run.save_inference_data(f"arrays/predictive_{name}_test.nc", pred.to_inference_data(data.test.labels))
        surprise = generative_scores(model, data.test.images, derive_seed(seed, "elbo", name))
        if surprise:
            metrics[f"clean/{name}/elbo"] = -float(surprise["elbo"].mean())
        grid_pred = model.predictive(grid.images, config.samples, generator=make_generator(derive_seed(seed, "grid", name)))
        arrays[f"grid/{name}/predicted"] = grid_pred.predicted.numpy()
        arrays[f"grid/{name}/confidence"] = grid_pred.confidence.numpy()
        for set_name, shifted in data.shifted.items():
            spred = model.predictive(shifted.images, config.samples, generator=gen, batch_size=config.batch_size)
            prefix = f"shift/{set_name}/{name}"
            for key, value in predictive_metrics(spred, shifted.labels).items():
                metrics[f"{prefix}/{key}"] = value
            metrics[f"{prefix}/auroc_entropy"] = auroc(pred.entropy, spred.entropy)
            metrics[f"{prefix}/auroc_mi"] = auroc(pred.mutual_information, spred.mutual_information)
            shifted_surprise = generative_scores(model, shifted.images, derive_seed(seed, "elbo", name))
            for kind, values in shifted_surprise.items():
                metrics[f"{prefix}/auroc_{kind}"] = auroc(surprise[kind], values)
            if shifted_surprise:
                metrics[f"{prefix}/elbo"] = -float(shifted_surprise["elbo"].mean())
            arrays[f"shift/{set_name}/{name}/entropy"] = spred.entropy.numpy()
            arrays[f"shift/{set_name}/{name}/mutual_information"] = spred.mutual_information.numpy()
    metrics.update(run_shift_protocol(models, data.test, config, seed))
    run.save_arrays("arrays/evaluation.npz", **arrays)
    run.write_json("arrays/evaluation.json", {"models": list(models), "shifted": list(data.shifted),
                                               "samples": config.samples, "test": data.test.info.name,
                                               "rotations": list(config.rotations), "translations": list(config.translations),
                                               "shift_examples": min(config.shift_limit or len(data.test), len(data.test))})
    return metrics
