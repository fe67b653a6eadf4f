"""Clean and shifted-set evaluation: accuracy, NLL and uncertainty of every model.

Writes ``clean/<model>/{acc,nll,ll,confidence,entropy,mi,variance}`` (accuracy and mean
log-likelihood ``ll`` with bootstrap intervals ``_low`` / ``_high``: the transfer table of Bradshaw et
al.), the same under ``shift/<set>/<model>/`` (label-free quantities only for an unlabelled
set, such as a user's folder without labels) plus ``auroc_<score>`` and ``fpr95_<score>`` for entropy, mi, variance and
max_probability (1 − confidence): telling the shifted set from the test set by the model's own
uncertainty (FPR@95: the share of test digits flagged when 95% of the shifted ones are). VAEs add
``auroc_elbo`` and ``auroc_reconstruction``, with the mean ELBO in ``clean/<vae>/elbo`` and
``shift/<set>/<vae>/elbo``: the generative model's own surprise. GPDNNs add their feature-collapse
diagnostics (``inducing_distance``, ``training_distance`` to the nearest of ``reference_digits`` training digits,
``latent_std_ratio``, ``latent_variance``: means under ``clean/`` and ``shift/<set>/``, and
``auroc_<diagnostic>`` per shifted set; ``GPDNN.collapse_diagnostics``). Also ``arrays/evaluation.npz``
(per-example uncertainty for the report's histograms and a stratified grid of test digits) and one ArviZ NetCDF per model on the test split. With ``rotations`` /
``translations``, Ovadia et al.'s shift protocol (``data/shift.py``, the calibration suite's too):
``ovadia/<copy>/<model>/{acc,nll,brier,ece,entropy}`` on each shifted copy of the test digits (``rotate_45``,
``translate_4``; ``rotate_0``: the same digits unshifted, where each curve starts), NLL and Brier with
bootstrap intervals, and their per-example values in ``arrays/evaluation.npz`` under the same keys (paired
differences between models on the same shifted digits).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from bayesrobust.data.shift import ShiftGrid, copy_name
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.metrics.bootstrap import mean_bounds
from bayesrobust.metrics.ood import auroc
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import derive_seed, make_generator
from bayesrobust.suites.registry import SUITES, Headline, Suite
from bayesrobust.units import Units

# metrics.json
CLEAN = Key("clean/{model}/{measure}")  # the test split
SHIFTED = Key("shift/{set}/{model}/{measure}")  # every shifted (or transfer) set
OVADIA = Key("ovadia/{copy}/{model}/{measure}")  # Ovadia et al.'s protocol: a rotated or translated copy (data/shift.py)
# arrays/evaluation.npz: per-example values, never under a metric's key
TEST_EXAMPLES = Key("test/{model}/{quantity}")  # the test split
SHIFTED_EXAMPLES = Key("shifted/{set}/{model}/{quantity}")  # entropy, mutual_information
OVADIA_EXAMPLES = Key("ovadia/{copy}/{model}/per_example/{quantity}")  # nll, brier: paired differences
GRID = Key("grid/{model}/{quantity}")  # the report's digit grid: predicted, confidence
TEST_LABELS, GRID_IMAGES, GRID_LABELS = "test/labels", "grid/images", "grid/labels"


def on_set(set_name: str | None):
    """The metric key of a model's measure on the test split (``None``) or on the shifted set ``set_name``."""
    return CLEAN if set_name is None else partial(SHIFTED, set=set_name)


@dataclass(frozen=True)
class EvaluationSection(ShiftGrid):
    """Clean and shifted-set evaluation (the ``evaluation`` suite), with Ovadia et al.'s shift protocol
    (``rotations``, ``translations``, ``shift_limit``: ``data/shift.py``)."""

    samples: int = 50
    batch_size: int = 500
    grid_size: int = 16
    bootstrap: int = 1000  # resamples for the intervals of accuracy and log-likelihood (0: none)
    reference_digits: int = 5000  # training digits a GP model's training_distance is measured to (0: not measured)


def validate_evaluation(config) -> None:
    section = config.suites["evaluation"]
    if section.samples < 1:
        raise ConfigError("evaluation.samples must be >= 1")
    section.check("evaluation")
    if section.bootstrap < 0:
        raise ConfigError(f"evaluation.bootstrap must be >= 0 (0: no intervals), got {section.bootstrap}")
    if section.reference_digits < 0:
        raise ConfigError("evaluation.reference_digits must be >= 0 (0: no distance to the training digits)")


OOD_SCORES = ("entropy", "mi", "variance", "max_probability")  # max_probability scores 1 − confidence


def predictive_metrics(pred: Predictive, labels: torch.Tensor | None, *, resamples: int = 0,
                       seed: int = 0) -> dict[str, float]:
    """Accuracy, NLL and mean log-likelihood (with bootstrap intervals when ``resamples`` > 0: the
    Bradshaw et al. table's cells) and the mean uncertainties; without labels only the label-free ones."""

    out = {"confidence": float(pred.confidence.mean()), "entropy": float(pred.entropy.mean()),
           "mi": float(pred.mutual_information.mean()), "variance": float(pred.variance.mean())}
    if labels is None:
        return out
    correct = (pred.predicted == labels).double().numpy()
    ll = pred.log_likelihood(labels).double().numpy()
    out.update(acc=float(correct.mean()), nll=float(-ll.mean()), ll=float(ll.mean()))
    if resamples:
        out.update(mean_bounds({"acc": correct, "ll": ll}, resamples=resamples, seed=seed))
    return out


def ood_metrics(test: Predictive, shifted: Predictive) -> dict[str, float]:
    """Telling the shifted set from the test split by each uncertainty score: ROC-AUC and the false
    alarm rate on test digits at 95% of the shifted inputs caught (FPR@95)."""
    from bayesrobust.detection.uncertainty import uncertainty_score
    from bayesrobust.metrics.ranking import fpr_at_tpr

    truth = np.concatenate([np.zeros(test.num_examples, bool), np.ones(shifted.num_examples, bool)])
    out = {}
    for kind in OOD_SCORES:
        scores = np.concatenate([uncertainty_score(test, kind), uncertainty_score(shifted, kind)])
        out[f"auroc_{kind}"] = auroc(scores[~truth], scores[truth])
        out[f"fpr95_{kind}"] = float(fpr_at_tpr(truth, scores)[0])
    return out


def generative_scores(model, images: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    """A VAE's per-example −ELBO (nats, 8 draws of z) and reconstruction error; {} for other models."""
    from bayesrobust.detection.generative import GENERATIVE_SCORES, GenerativeDetector

    if not hasattr(model, "reconstruction_error"):
        return {}
    return {kind: GenerativeDetector(model, kind, seed=seed).score(images) for kind in GENERATIVE_SCORES}


def collapse_scores(model, images: torch.Tensor, reference: torch.Tensor | None) -> dict[str, np.ndarray]:
    """A GP model's feature-collapse diagnostics per image (``GPDNN.collapse_diagnostics``), distances to
    the ``reference`` training digits included; {} for other models."""
    if not hasattr(model, "collapse_diagnostics"):
        return {}
    return {kind: values.numpy() for kind, values in model.collapse_diagnostics(images, reference=reference).items()}


def shift_metrics(pred: Predictive, labels: torch.Tensor, *, resamples: int = 0,
                  seed: int = 0) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Ovadia et al.'s quantities on one shifted copy — accuracy, NLL, Brier, ECE (15 bins), entropy —
    with bootstrap intervals of NLL and Brier when ``resamples`` > 0, and the per-example NLL and Brier
    (what paired differences between models on the same shifted digits are computed from)."""
    from bayesrobust.metrics import calibration as cal

    probs = pred.mean.double().numpy()
    y = labels.numpy()
    correct = probs.argmax(1) == y
    nll = -pred.log_likelihood(labels).double().numpy()
    brier = cal.brier_terms(probs, y)[0]
    metrics = {"acc": float(correct.mean()), "nll": float(nll.mean()), "brier": float(brier.mean()),
               "ece": float(cal.expected_calibration_error(probs.max(1), correct)[0]), "entropy": float(pred.entropy.mean())}
    if resamples:
        metrics.update(mean_bounds({"nll": nll, "brier": brier}, resamples=resamples, seed=seed))
    return metrics, {"nll": nll.astype(np.float32), "brier": brier.astype(np.float32)}


def run_shift_protocol(models, test, config, seed: int, units) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every model on the rotated and translated copies of the test digits (``ovadia/<copy>/<model>/…``),
    the per-example NLL and Brier as arrays under the same keys. Every model sees the same copies and the
    bootstrap the same resamples (one seed per copy), so intervals of paired differences can be read from
    the arrays. Each copy (a grid point, every model) is a unit."""
    from bayesrobust.progress import progress_bar

    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}

    def grid_point(copy: str, kind: str, strength, shifted) -> tuple[dict, dict]:
        point_metrics, point_arrays = {}, {}
        for name, model in models.items():
            pred = model.predictive(shifted.images, config.samples, generator=make_generator(derive_seed(seed, kind, name)),
                                    batch_size=config.batch_size)
            values, per_example = shift_metrics(pred, shifted.labels, resamples=config.bootstrap,
                                                seed=derive_seed(seed, "bootstrap", kind, f"{strength:g}"))
            point_metrics.update({OVADIA(copy=copy, model=name, measure=key): value for key, value in values.items()})
            point_arrays.update({OVADIA_EXAMPLES(copy=copy, model=name, quantity=key): value for key, value in per_example.items()})
        return point_metrics, point_arrays

    # strength 0 (the same digits unshifted) starts each curve, computed the same way
    copies = config.copies(test, identity=True)
    for copy, (kind, strength, shifted) in progress_bar(copies.items(), desc="shift protocol (rotations, translations)"):
        m, a = units(f"ovadia/{copy}", partial(grid_point, copy, kind, strength, shifted))
        metrics.update(m)
        arrays.update(a)
    return metrics, arrays


def evaluate_model(run, name: str, model, data, config, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One model on the test split, the report's grid and every shifted set (and its NetCDF file)."""
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    grid = data.test.head(config.grid_size, seed=0)
    gen = make_generator(derive_seed(seed, "evaluation", name))
    pred = model.predictive(data.test.images, config.samples, generator=gen, batch_size=config.batch_size)
    test_metrics = predictive_metrics(pred, data.test.labels, resamples=config.bootstrap,
                                      seed=derive_seed(seed, "bootstrap", name, "test"))
    metrics.update({CLEAN(model=name, measure=key): value for key, value in test_metrics.items()})
    for key, value in pred.per_example().items():
        arrays[TEST_EXAMPLES(model=name, quantity=key)] = value.numpy()
    run.save_inference_data(f"arrays/predictive_{name}_test.nc", pred.to_inference_data(data.test.labels))
    surprise = generative_scores(model, data.test.images, derive_seed(seed, "elbo", name))
    if surprise:
        metrics[CLEAN(model=name, measure="elbo")] = -float(surprise["elbo"].mean())
    reference = data.train.head(config.reference_digits, seed=0).images if config.reference_digits else None
    collapse = collapse_scores(model, data.test.images, reference)
    metrics.update({CLEAN(model=name, measure=kind): float(values.mean()) for kind, values in collapse.items()})
    grid_pred = model.predictive(grid.images, config.samples, generator=make_generator(derive_seed(seed, "grid", name)))
    arrays[GRID(model=name, quantity="predicted")] = grid_pred.predicted.numpy()
    arrays[GRID(model=name, quantity="confidence")] = grid_pred.confidence.numpy()
    for set_name, shifted in data.shifted.items():
        spred = model.predictive(shifted.images, config.samples, generator=gen, batch_size=config.batch_size)
        key = partial(SHIFTED, set=set_name, model=name)
        values = predictive_metrics(spred, shifted.labels if shifted.labelled else None, resamples=config.bootstrap,
                                    seed=derive_seed(seed, "bootstrap", name, set_name))
        values.update(ood_metrics(pred, spred))
        metrics.update({key(measure=measure): value for measure, value in values.items()})
        shifted_surprise = generative_scores(model, shifted.images, derive_seed(seed, "elbo", name))
        shifted_collapse = collapse_scores(model, shifted.images, reference)
        metrics.update({key(measure=kind): float(values.mean()) for kind, values in shifted_collapse.items()})
        for kind, scores in {**shifted_surprise, **shifted_collapse}.items():
            metrics[key(measure=f"auroc_{kind}")] = auroc({**surprise, **collapse}[kind], scores)
        if shifted_surprise:
            metrics[key(measure="elbo")] = -float(shifted_surprise["elbo"].mean())
        arrays[SHIFTED_EXAMPLES(set=set_name, model=name, quantity="entropy")] = spred.entropy.numpy()
        arrays[SHIFTED_EXAMPLES(set=set_name, model=name, quantity="mutual_information")] = spred.mutual_information.numpy()
    return metrics, arrays


def run_evaluation(run, models, data, config, seed: int) -> dict[str, float]:
    """Evaluate every model on the test split and each shifted set; return the metrics written. Each
    model's evaluation and each shift grid point is a unit (``units.py``), kept as it ends."""
    units = Units(run, "evaluation", seed)
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {TEST_LABELS: data.test.labels.numpy()}
    grid = data.test.head(config.grid_size, seed=0)
    arrays[GRID_IMAGES] = grid.images.numpy()
    arrays[GRID_LABELS] = grid.labels.numpy()
    for name, model in models.items():
        m, a = units(f"model/{name}", partial(evaluate_model, run, name, model, data, config, seed))
        metrics.update(m)
        arrays.update(a)
    shift_values, shift_arrays = run_shift_protocol(models, data.test, config, seed, units)
    metrics.update(shift_values)
    arrays.update(shift_arrays)
    run.save_arrays("arrays/evaluation.npz", **arrays)
    run.write_json("arrays/evaluation.json", {"models": list(models), "shifted": list(data.shifted),
                                               "unlabelled": [k for k, v in data.shifted.items() if not v.labelled],
                                               "samples": config.samples, "test": data.test.info.name,
                                               "rotations": list(config.rotations), "translations": list(config.translations),
                                               "shift_examples": min(config.shift_limit or len(data.test), len(data.test)),
                                               "copies": [copy_name(k, s) for k, s in config.points(identity=True)]})
    return metrics



SUITES.add("evaluation", Suite(EvaluationSection, run_evaluation, validate_evaluation, ("evaluation",),
                               (CLEAN, SHIFTED, OVADIA),
                               (Headline("test accuracy", Key("clean/{model}/acc")), Headline("mean log-lik.", Key("clean/{model}/ll")),
                                Headline("mean entropy", Key("clean/{model}/entropy")),
                                Headline("NLL", Key("clean/{model}/nll"), summary=False),
                                Headline("accuracy on each shifted set", Key("shift/{set}/{model}/acc")),
                                Headline("entropy AUROC on each shifted set", Key("shift/{set}/{model}/auroc_entropy"))),
                               order=10))
