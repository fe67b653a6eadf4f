"""The calibration suite: calibrated versus plain networks on the same test digits.

For every model: accuracy, NLL, Brier score, ECE (``bins`` bins, equal-width or equal-mass), MCE,
classwise ECE and the area under the risk–coverage curve of its predictive entropy, with percentile
bootstrap intervals of accuracy, NLL, Brier and ECE (one shared draw, ``metrics/bootstrap.py``), and the
reliability diagram; then, for each configured attack on ``attack_limit`` test digits, the accuracy on the
adversarial examples and the mean confidence — overall and on the misclassified ones, Goodfellow et al.'s
"confidently wrong" number. Stochastic models are attacked in the adaptive form (EOT over
``adaptive_eot_samples`` draws per gradient), so a model does not look calibrated under attack merely
because its gradients are noisy.

``ece_debiased`` beside ``ece``: the estimate minus the bootstrap's bias estimate, with the basic bootstrap
interval clipped at 0 (``Interval.bias_corrected``; why binned ECE needs it: ``metrics/calibration.py``).

Metrics ``calib/<model>/{acc,nll,brier,ece,ece_debiased,mce,classwise_ece,aurc}`` (+ ``_low`` / ``_high``),
selective prediction per uncertainty score (``confidence``: 1 − confidence, ``entropy``, ``mi``):
``calib/<model>/aurc_<score>`` and ``calib/<model>/acc_at_{90,80}_<score>`` (accuracy on the most certain 90%
/ 80%) with intervals and the risk–coverage curves in the arrays, and
``calib/<model>/<attack>/{accuracy,confidence,confidence_wrong,entropy}``; under transfer (``shifted``, on by
default) the same calibration metrics on every labelled shifted set, ``calib_shift/<set>/<model>/…``, and with
``rotations`` / ``translations`` on rotated and translated copies of ``shift_limit`` test digits as more sets
(``<set>`` = ``rotate_<deg>``, ``translate_<px>``: Ovadia et al.'s protocol with intervals); and
the paired differences between each model and the ``reference`` (default: the first model) on the same
digits, ``calib_paired/<set>/<model>/{acc,nll,brier,ece}`` (+ ``_low`` / ``_high``; ``<set>`` is ``test`` or a
shifted set's name); with ``[calibration.conformal]``, split conformal sets calibrated on the validation split
(``metrics/conformal.py``): ``conformal/<model>/<method>/threshold``, ``conformal/<set>/<model>/<method>/{coverage,
size,empty}`` and ``conformal_adv/<attack>/<model>/<method>/…`` on the attacked digits; arrays in
``arrays/calibration.npz`` (reliability bins per model, and the per-example correctness, NLL, Brier and
confidence that ``bayesrobust compare`` pairs across runs). With ``[calibration.logistic]``, Goodfellow
et al.'s logistic regression on two digit classes, trained plain, L1-regularised and on the exact
adversarial objective (``analysis/logistic.py``): ``logistic/<variant>/{clean_error,nll,adv_error,
adv_confidence_wrong,w_l1,w_zero_fraction}``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from bayesrobust.analysis.logistic import LOGISTIC_KEYS, LogisticSection, run_logistic, validate_logistic
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import choose_targets, run_batched
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.data.shift import ShiftGrid
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.metrics import calibration as cal
from bayesrobust.metrics import conformal
from bayesrobust.metrics.bootstrap import batched_mean, bootstrap_all, mean_bounds
from bayesrobust.models.calibrators import calibration_label
from bayesrobust.schema import to_plain
from bayesrobust.seeding import derive_seed, make_generator
from bayesrobust.suites.registry import SUITES, Headline, Suite
from bayesrobust.units import Units

# metrics.json
CALIB = Key("calib/{model}/{measure}")  # the test split
CALIB_ATTACK = Key("calib/{model}/{attack}/{measure}")  # under one configured attack
CALIB_SHIFT = Key("calib_shift/{set}/{model}/{measure}")  # a labelled shifted set, or a rotated / translated copy
CALIB_PAIRED = Key("calib_paired/{set}/{model}/{measure}")  # model minus the reference on the same digits
THRESHOLD = Key("conformal/{model}/{method}/{measure}")  # q̂ from the validation split ("threshold")
CONFORMAL = Key("conformal/{set}/{model}/{method}/{measure}")  # coverage, size, empty on a set
CONFORMAL_ADV = Key("conformal_adv/{attack}/{model}/{method}/{measure}")  # … on adversarial examples
# arrays/calibration.npz: group "bins" (count, confidence, accuracy), "examples" (per-example pieces, which
# ``bayesrobust compare`` pairs across runs) and "risk_coverage" (one curve per uncertainty score)
CALIB_ARRAYS = Key("calib/{model}/{group}/{quantity}")
CALIB_SHIFT_ARRAYS = Key("calib_shift/{set}/{model}/{group}/{quantity}")
ARRAY_GROUPS = ("bins", "examples", "risk_coverage")  # never an attack's name (calib/<model>/<attack>/… is a metric)


def on_set(set_name: str):
    """(metric key, array key) of a model's results on a set: the test split ("test") under ``calib/``,
    any other under ``calib_shift/<set>/``."""
    if set_name == "test":
        return CALIB, CALIB_ARRAYS
    return partial(CALIB_SHIFT, set=set_name), partial(CALIB_SHIFT_ARRAYS, set=set_name)


@dataclass(frozen=True)
class ConformalSection:
    """``[calibration.conformal]``: split conformal prediction sets, calibrated on the validation split."""

    alpha: float = 0.1  # the sets hold the true class with probability >= 1 - alpha (exchangeable data)
    methods: tuple[str, ...] = ("lac", "aps", "raps")
    lam: float = 0.01  # RAPS's penalty per class beyond the k_reg-th
    k_reg: int = 5


@dataclass(frozen=True)
class CalibrationSection(ShiftGrid):
    """``[calibration]``: bins, intervals and the attacks under which confidence is measured, and Ovadia et
    al.'s rotated and translated copies of the test digits as more sets (``rotations``, ``translations``,
    ``shift_limit``: ``data/shift.py``; sets ``rotate_<deg>``, ``translate_<px>``)."""

    samples: int = 50  # posterior draws per prediction
    bins: int = 15
    scheme: str = "width"  # width | mass
    bootstrap: int = 1000  # resamples for the intervals (0: none)
    attacks: Mapping[str, AttackSpec] = field(default_factory=dict)
    attack_limit: int = 1000  # test digits attacked (stratified, seeded)
    adaptive_eot_samples: int = 10  # EOT draws per gradient on stochastic models
    logistic: LogisticSection | None = None  # Goodfellow et al.'s logistic regression: plain, L1, adversarial objective
    shifted: bool = True  # also on every labelled shifted set the run evaluates (calibration under transfer)
    reference: str = ""  # the model every other is compared with on the same digits (default: the first model)
    conformal: ConformalSection | None = None  # conformal sets: coverage and size on every set and under attack


def validate_calibration(config) -> None:
    section = config.suites["calibration"]
    if section.scheme not in ("width", "mass"):
        raise ConfigError(f"calibration.scheme must be 'width' or 'mass', got {section.scheme!r}")
    for key in ("samples", "bins", "attack_limit", "adaptive_eot_samples"):
        if getattr(section, key) < 1:
            raise ConfigError(f"calibration.{key} must be >= 1")
    if section.bootstrap < 0:
        raise ConfigError(f"calibration.bootstrap must be >= 0 (0: no intervals), got {section.bootstrap}")
    for name, spec in section.attacks.items():
        spec.check(f"calibration.attacks.{name}")
        if name in ARRAY_GROUPS:
            raise ConfigError(f"calibration.attacks.{name}: {', '.join(ARRAY_GROUPS)} name the suite's arrays; rename the attack")
    if section.logistic is not None:
        validate_logistic(section.logistic)
    if section.conformal is not None:
        c = section.conformal
        if not 0.0 < c.alpha < 1.0:
            raise ConfigError(f"calibration.conformal.alpha must be in (0, 1), got {c.alpha}")
        unknown = [m for m in c.methods if m not in conformal.METHODS]
        if unknown or not c.methods:
            raise ConfigError(f"calibration.conformal.methods: unknown {unknown[0]!r}; known: {', '.join(conformal.METHODS)}"
                              if unknown else "calibration.conformal.methods: give at least one method")
        if c.lam < 0 or c.k_reg < 0:
            raise ConfigError("calibration.conformal.lam and k_reg must be >= 0")
        if config.data.val_fraction <= 0:
            raise ConfigError("calibration.conformal calibrates on the validation split: set data.val_fraction > 0")
    section.check("calibration")
    if section.reference and section.reference not in config.models:
        raise ConfigError(f"calibration.reference: no model {section.reference!r}; models: {', '.join(config.models)}")


PAIRED = ("acc", "nll", "brier", "ece")  # the measures compared between models, each on the same digits


def paired_statistic(measure: str, bins: int, scheme: str) -> tuple:
    """(bootstrap statistic, names of the per-example arrays it takes) of one :data:`PAIRED` measure: what
    paired differences between two models (this suite) or two runs (``bayesrobust compare``) resample."""
    if measure == "ece":
        return cal.ece_statistic(bins, scheme), ("confidence", "correct")
    return batched_mean, ({"acc": "correct"}.get(measure, measure),)


def paired_differences(arrays: dict[str, np.ndarray], set_name: str, models: list[str], reference: str,
                       section: CalibrationSection, seed: int) -> dict[str, float]:
    """``calib_paired/<set>/<model>/<measure>`` (+ ``_low`` / ``_high``): model minus ``reference`` on the
    same digits, from the per-example arrays of the set (group "examples"), with a paired bootstrap (the
    same resampled digits for both models, so the digits' own difficulty cancels)."""
    from bayesrobust.metrics.bootstrap import paired_bootstrap

    out: dict[str, float] = {}
    for model in models:
        if model == reference:
            continue
        for measure in PAIRED:
            statistic, names = paired_statistic(measure, section.bins, section.scheme)
            examples = partial(on_set(set_name)[1], group="examples")
            first = [np.asarray(arrays[examples(model=model, quantity=n)], np.float64) for n in names]
            second = [np.asarray(arrays[examples(model=reference, quantity=n)], np.float64) for n in names]
            if section.bootstrap:
                values = paired_bootstrap(statistic, first, second, resamples=section.bootstrap, seed=seed).as_dict(measure)
            else:
                values = {measure: float(statistic(*(a[None] for a in first))[0] - statistic(*(a[None] for a in second))[0])}
            out.update({CALIB_PAIRED(set=set_name, model=model, measure=k): v for k, v in values.items()})
    return out


def per_example(probs_mean: np.ndarray, labels: np.ndarray, log_likelihood: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example pieces whose means are the headline metrics (so one bootstrap draw serves all)."""
    onehot = np.eye(probs_mean.shape[1])[labels]
    return {"correct": probs_mean.argmax(1) == labels, "nll": -log_likelihood,
            "brier": ((probs_mean - onehot) ** 2).sum(1), "confidence": probs_mean.max(1)}


SELECTIVE_SCORES = ("confidence", "entropy", "mi")  # what a selective classifier abstains by (1 − confidence, …)
COVERAGES = (0.9, 0.8)  # accuracy on the most certain 90% and 80% of the digits
COVERAGE_GRID = np.linspace(0.01, 1.0, 100)  # where the saved risk–coverage curves are sampled


def selective_statistics(uncertainty: dict[str, np.ndarray], correct: np.ndarray) -> dict[str, tuple]:
    """Selective prediction per score: AURC and the accuracy at each of :data:`COVERAGES`, as bootstrap
    statistics (``aurc_<score>``, ``acc_at_90_<score>``, …)."""
    out = {}
    for score, values in uncertainty.items():
        out[f"aurc_{score}"] = (cal.area_under_risk_coverage, (values, correct))
        for coverage in COVERAGES:
            out[f"acc_at_{round(coverage * 100)}_{score}"] = (cal.accuracy_at_coverage(coverage), (values, correct))
    return out


def calibration_metrics(pred, labels, section: CalibrationSection, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Headline metrics with intervals, selective prediction per uncertainty score with intervals, and the
    reliability bins and risk–coverage curves (keyed (group, quantity)), of one model's predictive."""
    y = labels.numpy()
    parts = per_example(pred.mean.double().numpy(), y, pred.log_likelihood(labels).double().numpy())
    entropy = pred.entropy.double().numpy()
    uncertainty = {"confidence": 1.0 - parts["confidence"], "entropy": entropy,
                   "mi": pred.mutual_information.double().numpy()}
    ece = cal.ece_statistic(section.bins, section.scheme)
    statistics = {"acc": (batched_mean, (parts["correct"],)), "nll": (batched_mean, (parts["nll"],)),
                  "brier": (batched_mean, (parts["brier"],)), "ece": (ece, (parts["confidence"], parts["correct"])),
                  **selective_statistics(uncertainty, parts["correct"])}
    out: dict[str, float] = {}
    if section.bootstrap:
        intervals = bootstrap_all(statistics, resamples=section.bootstrap, seed=seed)
        for key, interval in intervals.items():
            out.update(interval.as_dict(key))
        out.update(intervals["ece"].bias_corrected(floor=0.0).as_dict("ece_debiased"))
    else:
        out.update({key: float(statistic(*(a[None] for a in arrays))[0]) for key, (statistic, arrays) in statistics.items()})
    out["mce"] = float(cal.maximum_calibration_error(parts["confidence"], parts["correct"], section.bins, section.scheme)[0])
    out["classwise_ece"] = float(cal.classwise_ece(pred.mean.double().numpy(), y, section.bins, section.scheme)[0])
    out["aurc"] = float(cal.area_under_risk_coverage(entropy, parts["correct"])[0])
    count, confidence, accuracy = cal.reliability(parts["confidence"], parts["correct"], section.bins, section.scheme)
    per = {("examples", k): v for k, v in parts.items()}  # for paired comparisons between runs (``bayesrobust compare``)
    curves = {}
    for score, values in uncertainty.items():
        coverage, risk = cal.risk_coverage(values, parts["correct"])
        curves["risk_coverage", score] = np.interp(COVERAGE_GRID, coverage, risk[0])
    bins = {("bins", "count"): count[0], ("bins", "confidence"): confidence[0], ("bins", "accuracy"): accuracy[0]}
    return out, {**bins, **per, **curves}


def conformal_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: dict[str, float], section: CalibrationSection,
                      seed: int) -> dict[tuple[str, str], float]:
    """``(method, coverage | size | empty)`` of each method's sets on these examples (coverage with its
    bootstrap interval): does the validation split's guarantee hold here?"""
    c, out = section.conformal, {}
    u = conformal.uniforms(len(probs), derive_seed(seed, "u"))
    for method in c.methods:
        sets = conformal.prediction_sets(probs, thresholds[method], method, lam=c.lam, k_reg=c.k_reg, u=u)
        hit = conformal.covered(sets, labels).astype(np.float64)
        out[method, "coverage"] = float(hit.mean())
        if section.bootstrap:
            out.update({(method, k): v for k, v in mean_bounds({"coverage": hit}, resamples=section.bootstrap, seed=seed).items()})
        out[method, "size"] = float(sets.sum(1).mean())
        out[method, "empty"] = float((sets.sum(1) == 0).mean())
    return out


def adversarial_confidence(model, test, spec: AttackSpec, section: CalibrationSection, seed: int,
                           desc: str = "", thresholds: dict[str, float] | None = None) -> tuple[dict[str, float], dict]:
    """Accuracy and confidence on adversarial examples of one attack (adaptive on stochastic models), and
    with ``thresholds`` the conformal sets' coverage on them (``(method, measure)``; else {})."""
    params = dict(spec.params)
    if model.draws.random:
        params["eot_samples"] = max(int(params.get("eot_samples", 1)), section.adaptive_eot_samples)
    attack = build_attack(spec.attack, {"eval_samples": section.samples}, **params)
    target = choose_targets(spec.targets, test.labels, derive_seed(seed, "targets"))
    result = run_batched(attack, model, test.images, test.labels, target=target, generator=make_generator(seed),
                         progress=True, desc=f"calibration: {desc}")
    pred = result.predictive
    wrong = pred.predicted != test.labels
    out = {"accuracy": float((~wrong).float().mean()), "confidence": float(pred.confidence.mean()),
           "confidence_wrong": float(pred.confidence[wrong].mean()) if bool(wrong.any()) else float("nan"),
           "entropy": float(pred.entropy.mean())}
    sets = conformal_metrics(pred.mean.double().numpy(), test.labels.numpy(), thresholds, section,
                             derive_seed(seed, "conformal")) if thresholds else {}
    return out, sets


def run_calibration(run, models, data, section: CalibrationSection, seed: int) -> dict[str, float]:
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    attacked = data.test.head(section.attack_limit, seed=0)
    # units: each model's conformal thresholds, its pass on each set, each attack on it; the paired
    # differences per set; the logistic study
    units = Units(run, "calibration", seed)

    def keep(key: str, compute) -> None:
        m, a = units(key, compute)
        metrics.update(m)
        arrays.update(a)

    def thresholds(name: str, model) -> tuple[dict, dict]:
        """Each conformal method's q̂ on the validation split (the calibration set of split conformal)."""
        c = section.conformal
        pred = model.predictive(data.val.images, section.samples, generator=make_generator(derive_seed(seed, "conformal", name)))
        probs, labels = pred.mean.double().numpy(), data.val.labels.numpy()
        u = conformal.uniforms(len(probs), derive_seed(seed, "conformal", name, "u"))
        return {THRESHOLD(model=name, method=m, measure="threshold"): conformal.calibrate(probs, labels, m, c.alpha, lam=c.lam,
                                                                                         k_reg=c.k_reg, u=u)
                for m in c.methods}, {}

    q: dict[str, dict[str, float]] = {}

    def scored(name: str, model, dataset, set_name: str) -> tuple[dict, dict]:
        on = () if set_name == "test" else (set_name,)  # the test split keeps the seeds it always had
        pred = model.predictive(dataset.images, section.samples, generator=make_generator(derive_seed(seed, "calibration", name, *on)))
        values, bins = calibration_metrics(pred, dataset.labels, section, derive_seed(seed, "calibration", "bootstrap", *on))
        metric, array = on_set(set_name)
        out = {metric(model=name, measure=k): v for k, v in values.items()}
        if name in q:  # conformal coverage on this set, with the validation split's thresholds
            out.update({CONFORMAL(set=set_name, model=name, method=method, measure=k): v for (method, k), v in conformal_metrics(
                pred.mean.double().numpy(), dataset.labels.numpy(), q[name], section,
                derive_seed(seed, "conformal", set_name)).items()})
        return out, {array(model=name, group=group, quantity=k): v for (group, k), v in bins.items()}

    def attacked_with(name: str, model, attack_name: str, spec) -> tuple[dict, dict]:
        out, sets = adversarial_confidence(model, attacked, spec, section, derive_seed(seed, "calibration", name, attack_name),
                                           desc=f"{attack_name} on {name}", thresholds=q.get(name))
        return ({**{CALIB_ATTACK(model=name, attack=attack_name, measure=k): v for k, v in out.items()},
                 **{CONFORMAL_ADV(attack=attack_name, model=name, method=method, measure=k): v
                    for (method, k), v in sets.items()}}, {})

    # the test split (calib/<model>/…) and, under transfer, every labelled shifted set (calib_shift/<set>/<model>/…)
    sets = {"test": data.test}
    if section.shifted:
        sets.update({n: d for n, d in data.shifted.items() if d.labelled})
    sets.update({n: d for n, (_, _, d) in section.copies(data.test).items()})
    for name, model in models.items():
        if section.conformal is not None:
            m, _ = units(f"conformal/{name}", partial(thresholds, name, model))
            metrics.update(m)
            q[name] = {method: m[THRESHOLD(model=name, method=method, measure="threshold")] for method in section.conformal.methods}
        for set_name, dataset in sets.items():
            keep(f"model/{name}" if set_name == "test" else f"shift/{set_name}/{name}",
                 partial(scored, name, model, dataset, set_name))
        for attack_name, spec in section.attacks.items():
            keep(f"attack/{name}/{attack_name}", partial(attacked_with, name, model, attack_name, spec))
    reference = section.reference or next(iter(models))
    for set_name in sets:
        m, _ = units(f"paired/{set_name}", lambda set_name=set_name: (paired_differences(
            arrays, set_name, list(models), reference, section, derive_seed(seed, "calibration", "paired", set_name)), {}))
        metrics.update(m)
    if section.logistic is not None:
        keep("logistic", lambda: run_logistic(data.train, data.test, section.logistic,
                                              derive_seed(seed, "calibration", "logistic")))
    run.save_arrays("arrays/calibration.npz", **arrays)
    run.write_json("arrays/calibration.json", {
        "models": list(models), "bins": section.bins, "scheme": section.scheme, "bootstrap": section.bootstrap,
        "samples": section.samples, "attacks": {n: a.describe() for n, a in section.attacks.items()},
        "attack_limit": len(attacked), "adaptive_eot_samples": section.adaptive_eot_samples,
        "test_labels_sha256": hashlib.sha256(data.test.labels.numpy().astype(np.int64).tobytes()).hexdigest(),
        "draws": {n: m.draws.value for n, m in models.items()},
        "sets": list(sets), "reference": reference, "shift_grid": {"rotate": list(section.rotations),
                                                                    "translate": list(section.translations)},
        "shift_examples": min(section.shift_limit or len(data.test), len(data.test)) if section.points() else 0,
        "temperatures": {n: m.temperature for n, m in models.items() if m.temperature != 1.0},
        "calibrations": {n: calibration_label(m) for n, m in models.items() if calibration_label(m)},
        "logistic": None if section.logistic is None else to_plain(section.logistic),
        "conformal": None if section.conformal is None else to_plain(section.conformal)})
    return metrics


CALIBRATION_KEYS = (CALIB, CALIB_ATTACK, CALIB_SHIFT, CALIB_PAIRED, THRESHOLD, CONFORMAL, CONFORMAL_ADV, *LOGISTIC_KEYS)

SUITES.add("calibration", Suite(CalibrationSection, run_calibration, validate_calibration, ("calibration",), CALIBRATION_KEYS,
                                (Headline("ECE", Key("calib/{model}/ece")), Headline("accuracy", Key("calib/{model}/acc"), summary=False),
                                 Headline("NLL", Key("calib/{model}/nll"), summary=False),
                                 Headline("Brier", Key("calib/{model}/brier"), summary=False)),
                                order=20))
