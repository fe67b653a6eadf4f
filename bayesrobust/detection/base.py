"""The detector protocol, scikit-learn style: ``fit(clean_val, adv_val=None) -> self``, ``score(x)``
(higher = more suspicious), ``decide(x)`` (True = flagged adversarial), and ``score_and_decide(x)``, both
from one pass. Fitted state lives in
attributes with a trailing underscore; using a detector before ``fit`` is a clear error."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch

from bayesrobust.errors import BayesRobustError


class NotFittedError(BayesRobustError):
    """A detector was used before ``fit``."""


class Detector(ABC):
    """Base class: subclasses implement :meth:`fit` and :meth:`score`; ``threshold_`` decides."""

    name: str = "detector"

    @abstractmethod
    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None) -> Detector:
        """Fit on validation data only: clean images and, where the detector uses them, adversarial ones."""

    @abstractmethod
    def score(self, x: torch.Tensor) -> np.ndarray:
        """Per-image suspicion ``(N,)``, higher = more likely adversarial."""

    def decide(self, x: torch.Tensor) -> np.ndarray:
        """Boolean mask ``(N,)``: True where ``x`` is flagged adversarial."""
        return self.score_and_decide(x)[1]

    def score_and_decide(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(score(x), decide(x))`` from one pass over ``x``: what an evaluation needs, at the cost of one
        predictive instead of two."""
        scores = self.score(x)
        return scores, scores > self._fitted("threshold_")

    def _fitted(self, attribute: str):
        value = getattr(self, attribute, None)
        if value is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(clean_val, adv_val) first")
        return value


def choose_threshold(clean_scores: np.ndarray, adv_scores: np.ndarray | None, *, max_fpr: float = 0.05) -> float:
    """A decision threshold from validation scores alone: with adversarial examples, the threshold of
    highest detection accuracy on the (balanced) validation set; without, the (1 − ``max_fpr``) quantile
    of the clean scores, so that about ``max_fpr`` of clean inputs are flagged."""
    clean = np.asarray(clean_scores, dtype=np.float64)
    if adv_scores is None or len(adv_scores) == 0:
        return float(np.quantile(clean, 1.0 - max_fpr))
    adv = np.asarray(adv_scores, dtype=np.float64)
    candidates = np.unique(np.concatenate([clean, adv]))
    # accuracy(t) = (#clean <= t + #adv > t) / total, each side weighted to balance the classes
    clean_le = np.searchsorted(np.sort(clean), candidates, side="right") / len(clean)
    adv_gt = 1.0 - np.searchsorted(np.sort(adv), candidates, side="right") / len(adv)
    return float(candidates[np.argmax(clean_le + adv_gt)])


def images(x, model) -> torch.Tensor:
    """Validated float32 images of ``model``'s input shape (the detectors' input boundary)."""
    return model.check_inputs(torch.as_tensor(x))
