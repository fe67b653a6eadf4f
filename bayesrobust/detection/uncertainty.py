"""Uncertainty scores as detectors: any model's own predictive uncertainty, thresholded on validation
data (Feinman et al.'s Bayesian uncertainty; Smith & Gal 2018 argue for mutual information)."""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.detection.base import DETECTORS, Detector, DetectorKind, check_max_fpr, choose_threshold, images
from bayesrobust.errors import ConfigError
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import make_generator

SCORES = {
    # the Alshemali / Feinman variance: mean over classes of the std across MC passes
    "variance": lambda p: p.variance,
    "entropy": lambda p: p.entropy,
    "mi": lambda p: p.mutual_information,
    "variation_ratio": lambda p: p.variation_ratio,
    "max_probability": lambda p: 1.0 - p.confidence,  # higher = less confident = more suspicious
}


def uncertainty_score(pred: Predictive, kind: str) -> np.ndarray:
    """One of :data:`SCORES` per example, as a NumPy array."""
    if kind not in SCORES:
        raise ConfigError(f"unknown uncertainty score {kind!r}; known: {', '.join(SCORES)}")
    return SCORES[kind](pred).double().numpy()


class UncertaintyDetector(Detector):
    """Flags inputs whose ``kind`` of predictive uncertainty exceeds a threshold fitted on validation
    data (see :func:`choose_threshold`): with adversarial validation examples the most accurate threshold
    (flagging at most ``max_fpr`` of the clean ones when given), without them the one flagging ``max_fpr``
    (default 5%) of the clean ones. The predictive uses ``samples`` draws from a generator seeded
    with ``seed`` at every call, so a score is a function of the input alone."""

    def __init__(self, model, kind: str = "mi", *, samples: int = 50, seed: int = 0, max_fpr: float | None = None) -> None:
        if kind not in SCORES:
            raise ConfigError(f"unknown uncertainty score {kind!r}; known: {', '.join(SCORES)}")
        self.model, self.kind, self.samples, self.seed, self.max_fpr = model, kind, samples, seed, check_max_fpr(max_fpr)
        self.name = f"uncertainty:{kind}"
        self.threshold_ = None

    def predictive(self, x: torch.Tensor) -> Predictive:
        return self.model.predictive(images(x, self.model), self.samples, generator=make_generator(self.seed))

    def score(self, x: torch.Tensor) -> np.ndarray:
        return uncertainty_score(self.predictive(x), self.kind)

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None) -> UncertaintyDetector:
        adv = None if adv_val is None or len(adv_val) == 0 else self.score(adv_val)
        self.threshold_ = choose_threshold(self.score(clean_val), adv, max_fpr=self.max_fpr)
        return self


def _uncertainty(kind: str) -> DetectorKind:
    """The model's own predictive uncertainty as a detector (Feinman's BU; Smith & Gal's MI)."""
    return DetectorKind(lambda model, data, section, seed, vae, built: UncertaintyDetector(model, kind, samples=section.samples,
                                                                                           seed=seed))


DETECTORS.add("variance", _uncertainty("variance"))
DETECTORS.add("entropy", _uncertainty("entropy"))
DETECTORS.add("mi", _uncertainty("mi"))
DETECTORS.add("variation_ratio", _uncertainty("variation_ratio"))
DETECTORS.add("max_probability", _uncertainty("max_probability"))
