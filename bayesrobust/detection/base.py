"""The detector protocol, scikit-learn style: ``fit(clean_val, adv_val=None) -> self``, ``score(x)``
(higher = more suspicious), ``decide(x)`` (True = flagged adversarial), and ``score_and_decide(x)``, both
from one pass. Fitted state lives in
attributes with a trailing underscore; using a detector before ``fit`` is a clear error."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bayesrobust.errors import BayesRobustError
from bayesrobust.registry import Registry


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


DEFAULT_FPR = 0.05  # the share of clean inputs flagged when only clean validation data are given


def check_max_fpr(max_fpr: float | None) -> float | None:
    if max_fpr is not None and not 0.0 < max_fpr < 1.0:
        raise ValueError(f"max_fpr is the share of clean inputs a detector may flag, in (0, 1); got {max_fpr!r}")
    return max_fpr


def choose_threshold(clean_scores: np.ndarray, adv_scores: np.ndarray | None, *, max_fpr: float | None = None) -> float:
    """A decision threshold from validation scores alone. With adversarial examples: the threshold of
    highest detection accuracy on the (balanced) validation set — among those that flag at most
    ``max_fpr`` of the clean inputs when ``max_fpr`` is given. Without: the (1 − ``max_fpr``) quantile of
    the clean scores (``max_fpr`` default 0.05), so that about that share of clean inputs is flagged."""
    check_max_fpr(max_fpr)
    clean = np.asarray(clean_scores, dtype=np.float64)
    if adv_scores is None or len(adv_scores) == 0:
        return float(np.quantile(clean, 1.0 - (DEFAULT_FPR if max_fpr is None else max_fpr)))
    adv = np.asarray(adv_scores, dtype=np.float64)
    candidates = np.unique(np.concatenate([clean, adv]))
    # accuracy(t) = (#clean <= t + #adv > t) / total, each side weighted to balance the classes
    clean_le = np.searchsorted(np.sort(clean), candidates, side="right") / len(clean)
    adv_gt = 1.0 - np.searchsorted(np.sort(adv), candidates, side="right") / len(adv)
    accuracy = clean_le + adv_gt
    if max_fpr is not None:  # flags (score > t) at most max_fpr of the clean scores; t = max(clean) flags none
        accuracy = np.where(1.0 - clean_le <= max_fpr + 1e-12, accuracy, -np.inf)
    return float(candidates[np.argmax(accuracy)])


def images(x, model) -> torch.Tensor:
    """Validated float32 images of ``model``'s input shape (the detectors' input boundary)."""
    return model.check_inputs(torch.as_tensor(x))


@dataclass(frozen=True)
class DetectorKind:
    """How the detection suite builds one kind of detector, unfitted, and whether it scores with a VAE."""

    build: Callable[..., Any]  # (model, data, section, seed, vae, built) -> an unfitted detector
    needs_vae: bool = False


DETECTORS: Registry[DetectorKind] = Registry("detector", package="bayesrobust.detection")  # each kind in its module
