"""The detection suite: uncertainty-based adversarial detectors fitted on validation data and evaluated
on disjoint mixed sets, per attack, and held out across attacks.

Protocol: for each configured attack, two 50/50 mixed sets (``detection/mixed.py``) — a validation set
from the validation split carved out of the training data, an evaluation set from the test split — each
holding only digits the defended model classifies correctly and only successful adversarial examples.
Every detector is fitted on the validation set alone and scored on the evaluation set. ``held_out``
refits nothing: the detectors fitted on the first attack are also scored on every other attack (Feinman
et al. fitted and scored on the same attack).

Adaptive evaluation (Carlini & Wagner 2017): an attack entry may use EOT and a high-confidence margin
(``params = { eot_samples = 10, kappa = 5 }``), and ``aware_of = "mi"`` (or "entropy") makes it
detector-aware: its goal also asks the example's uncertainty to stay under the threshold an MI detector
fitted on clean validation digits (5% false positives) would use, so it seeks examples that are wrong
*and* look clean; ``aware_of = "reconstruction"`` adds instead the excess of the VAE's reconstruction error
over the reconstruction detector's validation threshold (weighted by ``aware_weight``) to the gradient
attacks' objective once the digit is misclassified — the VAE-aware attack MagNet-style detectors must
face; ``aware_of = "kd"`` adds the excess of −log KD (Feinman's kernel density) over its 5%-FPR validation
threshold — Carlini & Wagner's KDE attack, to the gradient attacks and C&W alike. The required distortion
is ``detect/<model>/<attack>/mean_l2`` (and ``median_l2``). Every defended model (``models``; default:
every stochastic one — MC-dropout nets, GPDNNs) gets the whole protocol.

``only = ["fgsm", "bim"]`` evaluates a subset of the configured attacks (a long experiment split into runs
that share checkpoints through ``bayesrobust evaluate --from``).

Metrics ``detect/<model>/<attack>/<detector>/{roc_auc,aupr,tpr_at_5_fpr,detection_accuracy,accuracy_passed,
undefended_accuracy,tp,fp,tn,fn,...}`` with 95% bootstrap intervals of the rates (``<rate>_low`` /
``<rate>_high``, ``bootstrap`` resamples), ``detect/<model>/<attack>/<detector>/held_out_roc_auc`` and
``detect/<model>/<attack>/{examples,mean_l2,median_l2}``; with ``noisy_negatives``, also
``.../<detector>/roc_auc_noisy_negatives`` (Feinman et al.'s negatives: clean and L2-matched Gaussian-noisy
digits); per-example scores in ``arrays/detection.npz``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.attacks.base import Penalty, penalised_attacks
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.detection import (
    GenerativeDetector,
    KernelDensityUncertainty,
    UncertaintyDetector,
    build_mixed_set,
    detection_metrics,
)
from bayesrobust.detection.base import DETECTORS
from bayesrobust.detection.density import gaussian_noise_like, kernel_density
from bayesrobust.detection.mixed import MixedSet
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.models.base import Reconstructs
from bayesrobust.models.families import reconstructing_models
from bayesrobust.seeding import derive_seed, isolated_rng, make_generator
from bayesrobust.suites.registry import SUITES, Headline, Suite
from bayesrobust.units import Units

PAIR = Key("detect/{model}/{attack}/{measure}")  # one defended model under one attack: examples, mean_l2, aware_cap, …
DETECTOR = Key("detect/{model}/{attack}/{detector}/{measure}")  # roc_auc (+ _low, _high), aupr, …, held_out_roc_auc
# arrays/detection.npz (no metric has these names): the evaluation set's truth and each detector's scores
TRUTH = Key("detect/{model}/{attack}/is_adversarial")
SCORES = Key("detect/{model}/{attack}/{detector}/scores")

PENALTIES = ("reconstruction", "kd")  # detectors a detector-aware attack adds to its objective as a penalty


@dataclass(frozen=True)
class DetectionAttack(AttackSpec):
    aware_of: str = ""  # "mi" | "entropy" | "reconstruction" | "kd": a detector-aware attack that must also stay under that detector's threshold
    aware_weight: float = 1.0  # weight of the penalty's excess over its cap (reconstruction: squared pixels; kd: nats) in the objective


@dataclass(frozen=True)
class DetectionSection:
    """``[detection]``: which models are defended, the attacks, the detectors, sizes and settings."""

    models: tuple[str, ...] = ()  # the defended models; default: every stochastic one
    attacks: Mapping[str, DetectionAttack] = field(default_factory=dict)
    vae: str = ""  # the VAE whose reconstruction error / ELBO score every mixed set (default: the first VAE)
    only: tuple[str, ...] = ()  # run only these configured attacks (split a long experiment into runs); default: all
    detectors: tuple[str, ...] = ("variance", "entropy", "mi", "hybrid", "kd_bu", "ocsvm")
    size: int = 1000  # images per evaluation mixed set (half clean, half adversarial); 0: all the test split allows
    val_size: int = 1000  # images per validation mixed set
    samples: int = 50
    kd_bandwidth: float = 0.0  # 0: chosen on the clean validation digits; Feinman's 1.20 was tuned for his network
    ocsvm_per_class: int = 1000
    crop: int = 24
    crop_samples: int = 0  # MC draws classifying each of the hybrid's crops (0: ``samples``)
    held_out: bool = True
    successful_only: bool = True  # false: every attacked digit is an "adversarial" example (the seed's protocol)
    noisy_negatives: bool = False  # also ROC-AUC against clean + L2-matched Gaussian-noisy digits (Feinman et al.'s negatives)
    bootstrap: int = 1000  # resamples for the 95% intervals of the rates (0: none)


def validate_detection(config) -> None:
    section = config.suites["detection"]
    for name in section.models:
        if name not in config.models:
            raise ConfigError(f"detection.models: no model {name!r}; models: {', '.join(config.models)}")
    if not section.attacks:
        raise ConfigError("detection.attacks: configure at least one attack, e.g. [detection.attacks.fgsm]")
    for name, spec in section.attacks.items():
        spec.check(f"detection.attacks.{name}")
        if spec.aware_of not in ("", "mi", "entropy", *PENALTIES):
            raise ConfigError(f"detection.attacks.{name}.aware_of must be '', 'mi', 'entropy', 'reconstruction' or 'kd', "
                              f"got {spec.aware_of!r}")
        if spec.aware_of in PENALTIES and not ATTACKS.get(spec.attack).supports_penalty:
            raise ConfigError(f"detection.attacks.{name}: {spec.attack} cannot take a detector's score in its objective "
                              f"(aware_of = {spec.aware_of!r}); use one of {', '.join(penalised_attacks())}")
        if spec.aware_of == "reconstruction" and not reconstructing_models(config):
            raise ConfigError(f"detection.attacks.{name}.aware_of = 'reconstruction' attacks a VAE's reconstruction "
                              "error too: add a model with arch = 'vae'")
        if spec.aware_weight <= 0:
            raise ConfigError(f"detection.attacks.{name}.aware_weight must be > 0, got {spec.aware_weight}")
        if spec.aware_of and ("max_uncertainty" in spec.params or "uncertainty" in spec.params):
            raise ConfigError(f"detection.attacks.{name}: aware_of sets max_uncertainty and uncertainty itself")
    for name in section.only:
        if name not in section.attacks:
            raise ConfigError(f"detection.only: no attack {name!r}; configured: {', '.join(section.attacks)}")
    for d in section.detectors:
        if d not in DETECTORS:
            raise ConfigError(f"detection.detectors: unknown detector {d!r}; known: {', '.join(DETECTORS.names())}")
    vaes = reconstructing_models(config)
    if section.vae and section.vae not in vaes:
        raise ConfigError(f"detection.vae: {section.vae!r} is not a VAE of this config (VAEs: {', '.join(vaes) or 'none'})")
    generative = [d for d in section.detectors if DETECTORS.get(d).needs_vae]
    if generative and not vaes:
        raise ConfigError(f"detection.detectors: {generative[0]!r} scores inputs with a VAE: add a model with arch = 'vae'")
    if section.crop_samples < 0:
        raise ConfigError(f"detection.crop_samples must be >= 0 (0: detection.samples), got {section.crop_samples}")
    for key in ("samples", "val_size"):
        if getattr(section, key) < 1:
            raise ConfigError(f"detection.{key} must be >= 1")
    if section.bootstrap < 0:
        raise ConfigError(f"detection.bootstrap must be >= 0 (0: no intervals), got {section.bootstrap}")
    if section.size < 0 or section.kd_bandwidth < 0 or section.ocsvm_per_class < 1:
        raise ConfigError("detection.size must be >= 0, detection.kd_bandwidth >= 0 (0: chosen on validation data) "
                          "and detection.ocsvm_per_class >= 1")


def make_detector(name: str, model, data, section, seed: int, vae=None, built: dict | None = None):
    """An unfitted detector of a registered kind (``detection/``); ``built`` (one dict per defended model)
    shares KD's training features."""
    return DETECTORS.get(name).build(model, data, section, seed, vae, built)


def detector_penalty(spec: DetectionAttack, model, data, section: DetectionSection, seed: int, vae=None,
                     built: dict | None = None) -> Penalty:
    """The detector a detector-aware attack also has to pass, as a penalty: its differentiable score and the
    threshold that flags 5% of the clean validation digits (the VAE's reconstruction error — MagNet's
    score — or Feinman's kernel density, whose −log KD Carlini & Wagner's KDE attack keeps under a cap)."""
    if spec.aware_of == "reconstruction":
        cap = GenerativeDetector(vae, "reconstruction", seed=seed).fit(data.val.images).threshold_
        return Penalty("vae reconstruction error", vae.reconstruction_error, cap, spec.aware_weight)
    kd = kernel_density(model, data, section, seed, built)
    cap = kd.density_cap(data.val.images)
    return Penalty("-log kernel density", kd.density_score, cap, spec.aware_weight, per_class=True)


def fit_detector(detector, val) -> None:
    if isinstance(detector, KernelDensityUncertainty):
        detector.fit(val.clean, val.adversarial, noise_l2=float(val.l2[val.is_adversarial].mean()))
    else:
        detector.fit(val.clean, val.adversarial)


def auc_with_noisy_negatives(detector, test, scores: np.ndarray, seed: int) -> float:
    """ROC-AUC of adversarial against clean *and* noisy digits — the clean digits of ``test`` plus Gaussian
    noise of the adversarial examples' mean L2 — as Feinman et al. evaluated: noise alone must not look
    adversarial."""
    adversarial = test.is_adversarial.numpy()
    noisy = gaussian_noise_like(test.clean, float(test.l2[test.is_adversarial].mean()), derive_seed(seed, "noisy"))
    negatives = np.concatenate([scores[~adversarial], detector.score(noisy)])
    return float(roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(int(adversarial.sum()))],
                               np.concatenate([negatives, scores[adversarial]])))


def selected_attacks(section: DetectionSection) -> dict[str, DetectionAttack]:
    """The attacks this run evaluates, in configured order: ``only`` if given, else all."""
    return {n: a for n, a in section.attacks.items() if not section.only or n in section.only}


def defended_models(models, section: DetectionSection) -> list[str]:
    """The configured models, else every stochastic one, else the first."""
    return list(section.models) or [n for n, m in models.items() if m.draws.several] or [next(iter(models))]


def scoring_vae(models, section: DetectionSection):
    """The VAE that scores inputs for the generative detectors: the configured one, else the first."""
    name = section.vae or next((n for n, m in models.items() if isinstance(m, Reconstructs)), "")
    return models[name] if name else None


def run_detection(run, models, data, section: DetectionSection, seed: int) -> dict[str, float]:
    if data.val is None or not len(data.val):
        raise ConfigError("detection needs a validation split to fit detectors on: set data.val_fraction > 0")
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    defended = defended_models(models, section)
    attacks = selected_attacks(section)
    vae = scoring_vae(models, section)
    units = Units(run, "detection", seed)
    for name in defended:
        DefendedModel(name, models[name], data, section, seed, units, vae).run(metrics, arrays)
    run.save_arrays("arrays/detection.npz", **arrays)
    run.write_json("arrays/detection.json", {"models": defended,
                                             "attacks": {n: {**a.describe(), "aware_of": a.aware_of} for n, a in attacks.items()},
                                             "detectors": list(section.detectors), "first_attack": next(iter(attacks)),
                                             "held_out": section.held_out, "noisy_negatives": section.noisy_negatives,
                                             "samples": section.samples,
                                             "bootstrap": section.bootstrap})
    return metrics


class DefendedModel:
    """The detection protocol on one defended model. Two units per attack (``units.py``): its mixed sets
    (the attack's work, kept whole) and the detectors fitted and scored on them. Each detector is fitted
    with its own seeded RNGs, so the held-out detectors of the first attack, refitted on its kept
    validation set after a resume, are the ones the uninterrupted run fitted."""

    def __init__(self, name: str, model, data, section: DetectionSection, seed: int, units: Units, vae=None) -> None:
        self.name, self.model, self.data, self.section, self.seed, self.units, self.vae = name, model, data, section, seed, units, vae
        self.attacks = selected_attacks(section)
        self.first = next(iter(self.attacks))
        self.built: dict[str, Any] = {}  # KD's training features, shared by the attacks
        self.fitted: dict[str, Any] = {}  # the first attack's detectors, for the held-out scores
        self.sets: dict[str, tuple[MixedSet, MixedSet]] = {}  # each attack's mixed sets, read from its unit once

    def run(self, metrics: dict, arrays: dict) -> None:
        for attack_name in self.attacks:
            metrics.update(self.mixed_unit(attack_name))
            m, a = self.units(f"{self.name}/{attack_name}/scores", partial(self.scores, attack_name))
            metrics.update(m)
            arrays.update(a)

    def attack_seed(self, attack_name: str) -> int:
        return derive_seed(self.seed, "detection", self.name, attack_name)

    def mixed_unit(self, attack_name: str) -> dict[str, float]:
        """The attack's mixed-set unit (computed when the folder does not hold it): its metrics; its sets
        are kept for :meth:`mixed_sets`."""
        m, a = self.units(f"{self.name}/{attack_name}/mixed", partial(self.mixed, attack_name))
        self.sets[attack_name] = MixedSet.from_arrays(a, "val"), MixedSet.from_arrays(a, "test")
        return m

    def mixed_sets(self, attack_name: str) -> tuple[MixedSet, MixedSet]:
        """(validation, evaluation) mixed sets of one attack, as its unit holds them."""
        if attack_name not in self.sets:
            self.mixed_unit(attack_name)
        return self.sets[attack_name]

    def mixed(self, attack_name: str) -> tuple[dict, dict]:
        """Attack the validation and the test split into their mixed sets (adaptive attacks first get
        the detector's threshold they must stay under)."""
        spec, model, data, section = self.attacks[attack_name], self.model, self.data, self.section
        key = partial(PAIR, model=self.name, attack=attack_name)
        metrics: dict[str, float] = {}
        params = dict(spec.params)
        if spec.aware_of in ("mi", "entropy"):  # Carlini & Wagner (2017): attack the detector too, not only the classifier
            cap = UncertaintyDetector(model, spec.aware_of, samples=section.samples, seed=self.seed).fit(data.val.images).threshold_
            params.update(max_uncertainty=cap, uncertainty=spec.aware_of)
            metrics[key(measure="aware_cap")] = cap
        attack = build_attack(spec.attack, {"eval_samples": section.samples}, **params)
        if spec.aware_of in PENALTIES:  # ... or a detector's differentiable score added to the attack's objective
            penalty = detector_penalty(spec, model, data, section, self.seed, self.vae, self.built)
            attack.with_penalty(penalty)
            metrics[key(measure="aware_cap")] = penalty.cap
        s = self.attack_seed(attack_name)
        common = {"samples": section.samples, "successful_only": section.successful_only, "targets": spec.targets,
                  "progress": True}
        val = build_mixed_set(model, attack, data.val.images, data.val.labels, size=section.val_size,
                              seed=derive_seed(s, "val"), desc=f"{attack_name} on {self.name}, validation set", **common)
        test = build_mixed_set(model, attack, data.test.images, data.test.labels, size=section.size,
                               seed=derive_seed(s, "test"), desc=f"{attack_name} on {self.name}, evaluation set", **common)
        metrics[key(measure="examples")] = len(test)
        metrics[key(measure="mean_l2")] = float(test.l2[test.is_adversarial].mean())
        metrics[key(measure="median_l2")] = float(test.l2[test.is_adversarial].median())  # adaptive vs oblivious: their ratio
        return metrics, {**val.as_arrays("val"), **test.as_arrays("test")}

    def fitted_detector(self, det_name: str, attack_name: str, val):
        """A detector fitted on one attack's validation mixed set, with RNGs of its own."""
        with isolated_rng(derive_seed(self.attack_seed(attack_name), "fit", det_name)):
            detector = make_detector(det_name, self.model, self.data, self.section, self.seed, self.vae, self.built)
            fit_detector(detector, val)
        return detector

    def held_out_detector(self, det_name: str):
        if det_name not in self.fitted:  # a resumed run: refit on the first attack's kept validation set
            self.fitted[det_name] = self.fitted_detector(det_name, self.first, self.mixed_sets(self.first)[0])
        return self.fitted[det_name]

    def scores(self, attack_name: str) -> tuple[dict, dict]:
        """Every detector fitted on the attack's validation set and scored on its evaluation set."""
        section, s = self.section, self.attack_seed(attack_name)
        val, test = self.mixed_sets(attack_name)
        metrics: dict[str, float] = {}
        truth = test.is_adversarial.numpy()
        predicted = self.model.predictive(test.images, section.samples, generator=make_generator(s)).predicted.numpy()
        arrays = {TRUTH(model=self.name, attack=attack_name): truth}
        for det_name in section.detectors:
            key = partial(DETECTOR, model=self.name, attack=attack_name, detector=det_name)
            detector = self.fitted_detector(det_name, attack_name, val)
            scores, flagged = detector.score_and_decide(test.images)
            for measure, value in detection_metrics(truth, scores, flagged, predicted, test.labels.numpy(),
                                                    resamples=section.bootstrap, seed=derive_seed(s, "bootstrap")).items():
                metrics[key(measure=measure)] = value
            arrays[SCORES(model=self.name, attack=attack_name, detector=det_name)] = scores
            if section.noisy_negatives:
                metrics[key(measure="roc_auc_noisy_negatives")] = auc_with_noisy_negatives(detector, test, scores, s)
            if isinstance(detector, KernelDensityUncertainty):
                metrics[key(measure="bandwidth")] = detector.bandwidth_
            if section.held_out and attack_name == self.first:
                self.fitted[det_name] = detector
            elif section.held_out:
                held = self.held_out_detector(det_name)
                metrics[key(measure="held_out_roc_auc")] = detection_metrics(
                    truth, *held.score_and_decide(test.images), predicted, test.labels.numpy(), resamples=0)["roc_auc"]
        return metrics, arrays


SUITES.add("detection", Suite(DetectionSection, run_detection, validate_detection, ("detection",),
                              (PAIR, DETECTOR),
                              (Headline("detection ROC-AUC", Key("detect/{model}/{attack}/{detector}/roc_auc")),),
                              order=40))
