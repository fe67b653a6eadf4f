"""The hybrid detector of Alshemali et al. (2019), as reproduced by Wang & Zhang (the seed's
Algorithm 1): MC-dropout uncertainty decides the clear cases, crop-and-resize re-classification the
uncertain middle.

    uncertainty > H                → adversarial
    uncertainty < L                → clean
    otherwise: the five overlapping crops (four corners and the centre), each resized back to 28×28,
    are re-classified; clean when at least ``agree`` of them keep the provisional label.

The seed's pseudo-code says "counter > C" with C = 5, which no image can satisfy, while its text says
C = 5 means "all 5 classifications ... need to be the same": we implement the text (≥). L and H start
from the threshold of maximal information gain on validation data and are then tuned, with ``agree``, by
a grid search on that validation data — never on the evaluation split.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bayesrobust.detection.base import DETECTORS, Detector, DetectorKind, images
from bayesrobust.detection.uncertainty import uncertainty_score
from bayesrobust.seeding import make_generator


def five_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """``(5, N, 1, 28, 28)``: top-left, bottom-left, top-right, bottom-right and centre crops of side
    ``size``, each resized back to the input's side by bilinear interpolation."""
    n, c, h, w = x.shape
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size must be in 1..{min(h, w)}, got {size}")
    top, left = (h - size) // 2, (w - size) // 2
    corners = [(0, 0), (h - size, 0), (0, w - size), (h - size, w - size), (top, left)]
    crops = [x[:, :, i: i + size, j: j + size] for i, j in corners]
    return torch.stack([F.interpolate(c_, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1) for c_ in crops])


def information_gain_threshold(clean: np.ndarray, adv: np.ndarray) -> float:
    """The threshold t on a score that maximises the information gain of the split (score > t) about
    the clean / adversarial label: H(label) − H(label | split)."""
    scores = np.concatenate([clean, adv])
    truth = np.concatenate([np.zeros(len(clean), bool), np.ones(len(adv), bool)])
    order = np.argsort(scores, kind="stable")
    s, t = scores[order], truth[order]
    n = len(s)

    def entropy(p):
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))

    adv_below = np.cumsum(t)[:-1]  # split after position k: below = s[:k+1]
    below = np.arange(1, n)
    above = n - below
    conditional = (below / n) * entropy(adv_below / below) + (above / n) * entropy((t.sum() - adv_below) / above)
    k = int(np.argmax(entropy(t.mean()) - conditional))
    return float((s[k] + s[k + 1]) / 2)


class HybridDetector(Detector):
    """Algorithm 1 of the seed on any model with a stochastic predictive (the MC-dropout LeNet in the
    paper). ``score`` is the uncertainty itself (for ROC curves); ``decide`` is the full rule."""

    name = "hybrid"

    def __init__(self, model, *, uncertainty: str = "variance", samples: int = 50, crop: int = 24, seed: int = 0,
                 grid: int = 12, crop_samples: int | None = None) -> None:
        self.model, self.uncertainty, self.samples, self.crop, self.seed, self.grid = model, uncertainty, samples, crop, seed, grid
        self.crop_samples = samples if crop_samples is None else crop_samples  # draws classifying each crop
        self.low_, self.high_, self.agree_ = None, None, None
        self.threshold_ = None  # the information-gain threshold, where the search starts

    def _predict(self, x: torch.Tensor, samples: int | None = None):
        return self.model.predictive(x, samples or self.samples, generator=make_generator(self.seed))

    def _parts(self, x: torch.Tensor, band: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the uncertainty and how many of the five crops keep the provisional label. With
        ``band = (L, H)`` only images whose uncertainty lies in it are cropped (the rule never looks at
        the others' crops; their count is reported as 5)."""
        x = images(x, self.model)
        pred = self._predict(x)
        u = uncertainty_score(pred, self.uncertainty)
        agree = np.full(len(x), 5, dtype=np.int64)
        todo = np.ones(len(x), bool) if band is None else (u >= band[0]) & (u <= band[1])
        if todo.any():
            rows = torch.from_numpy(np.flatnonzero(todo))
            crops = five_crops(x[rows], self.crop).flatten(0, 1)  # all crops in one predictive call
            labels = self._predict(crops, self.crop_samples).predicted.view(5, len(rows))
            agree[todo] = (labels == pred.predicted[rows]).sum(0).numpy()
        return u, agree

    @staticmethod
    def _rule(u: np.ndarray, agree: np.ndarray, low: float, high: float, count: int) -> np.ndarray:
        return (u > high) | ((u >= low) & (u <= high) & (agree < count))

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None) -> HybridDetector:
        if adv_val is None or len(adv_val) == 0:
            raise ValueError("the hybrid detector chooses L, H and C on validation data with adversarial examples")
        u_clean, a_clean = self._parts(clean_val)
        u_adv, a_adv = self._parts(adv_val)
        self.threshold_ = information_gain_threshold(u_clean, u_adv)
        u = np.concatenate([u_clean, u_adv])
        agree = np.concatenate([a_clean, a_adv])
        truth = np.concatenate([np.zeros(len(u_clean), bool), np.ones(len(u_adv), bool)])
        qs = np.quantile(u, np.linspace(0.0, 1.0, 2 * self.grid + 1))
        lows = np.unique(np.append(qs[qs <= self.threshold_], self.threshold_))
        highs = np.unique(np.append(qs[qs >= self.threshold_], self.threshold_))
        best = (-1.0, self.threshold_, self.threshold_, 5)
        for low in lows:
            for high in highs:
                for count in range(1, 6):
                    accuracy = float(np.mean(self._rule(u, agree, low, high, count) == truth))
                    if accuracy > best[0] + 1e-12:
                        best = (accuracy, float(low), float(high), count)
        _, self.low_, self.high_, self.agree_ = best
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        return uncertainty_score(self._predict(images(x, self.model)), self.uncertainty)

    def score_and_decide(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        low, high, count = self._fitted("low_"), self._fitted("high_"), self._fitted("agree_")
        u, agree = self._parts(x, band=(low, high))
        return u, self._rule(u, agree, low, high, count)


DETECTORS.add("hybrid", DetectorKind(lambda model, data, section, seed, vae, built: HybridDetector(
    model, samples=section.samples, crop=section.crop, seed=seed, crop_samples=section.crop_samples or None)))
