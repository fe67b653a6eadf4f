"""Kernel density + Bayesian uncertainty (Feinman et al. 2017).

KD: a Gaussian kernel density of the input's last-hidden-layer features among the *training* features
of the class it is predicted as (low density = suspicious); BU: the MC-dropout variance of the softmax
outputs, mean over classes of E[p²] − E[p]² over ``samples`` passes. Both are z-scored and combined by a
logistic regression fitted on validation data: clean and Gaussian-noisy digits (L2-matched to the
adversarial ones, as Feinman did) as negatives, adversarial digits as positives. The bandwidth (1.20 in
Feinman's code, tied to his network) is a parameter: choose it on validation data for another model.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bayesrobust.detection.base import Detector, choose_threshold, images
from bayesrobust.seeding import make_generator


def log_kernel_density(queries: torch.Tensor, points: torch.Tensor, bandwidth: float, chunk: int = 1024) -> torch.Tensor:
    """log of (1/n) Σⱼ exp(−‖q − pⱼ‖² / (2h²)) for every query (the Gaussian KDE up to its normalising
    constant, the same for every query of one dimension), by chunks of queries."""
    out = []
    for start in range(0, len(queries), chunk):
        d2 = torch.cdist(queries[start: start + chunk].double(), points.double()).pow(2)
        out.append(torch.logsumexp(-d2 / (2 * bandwidth**2), 1) - math.log(len(points)))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


class KernelDensityUncertainty(Detector):
    """Feinman et al.'s KD + BU detector on any model with ``features`` and a stochastic predictive."""

    name = "kd_bu"

    def __init__(self, model, train_images: torch.Tensor, train_labels: torch.Tensor, *, bandwidth: float = 1.20,
                 samples: int = 50, seed: int = 0, batch_size: int = 1000) -> None:
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        self.model, self.bandwidth, self.samples, self.seed, self.batch_size = model, bandwidth, samples, seed, batch_size
        feats = self._features(images(train_images))
        self.class_features_ = {int(c): feats[train_labels == c] for c in torch.unique(train_labels)}
        self.mean_ = self.scale_ = self.weights_ = self.bias_ = self.threshold_ = None

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.features(x[i: i + self.batch_size]).cpu() for i in range(0, len(x), self.batch_size)])

    def raw_scores(self, x: torch.Tensor) -> np.ndarray:
        """``(N, 2)``: [−log KD under the predicted class, BU]; both higher = more suspicious."""
        x = images(x)
        pred = self.model.predictive(x, self.samples, generator=make_generator(self.seed), batch_size=self.batch_size)
        feats = self._features(x)
        kd = torch.empty(len(x), dtype=torch.float64)
        for c, points in self.class_features_.items():
            rows = pred.predicted == c
            if rows.any():
                kd[rows] = log_kernel_density(feats[rows], points, self.bandwidth)
        bu = (pred.probs.pow(2).mean(0) - pred.probs.mean(0).pow(2)).mean(-1).double()
        return torch.stack([-kd, bu], 1).numpy()

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None, *, noise_l2: float | None = None
            ) -> KernelDensityUncertainty:
        """Logistic regression on z-scored [−log KD, BU]: negatives are ``clean_val`` and, when
        ``noise_l2`` is given (the adversarial examples' mean L2 distortion), the same digits plus
        Gaussian noise of that norm; positives ``adv_val``. The decision threshold is the one of best
        validation accuracy."""
        from sklearn.linear_model import LogisticRegression

        if adv_val is None or len(adv_val) == 0:
            raise ValueError("KD+BU fits its logistic regression on validation adversarial examples")
        clean_val, adv_val = images(clean_val), images(adv_val)
        negatives = self.raw_scores(clean_val)
        if noise_l2:
            negatives = np.concatenate([negatives, self.raw_scores(gaussian_noise_like(clean_val, noise_l2, self.seed))])
        positives = self.raw_scores(adv_val)
        both = np.concatenate([negatives, positives])
        self.mean_, self.scale_ = both.mean(0), both.std(0) + 1e-12
        z = (both - self.mean_) / self.scale_
        truth = np.concatenate([np.zeros(len(negatives)), np.ones(len(positives))])
        model = LogisticRegression().fit(z, truth)
        self.weights_, self.bias_ = model.coef_[0], float(model.intercept_[0])
        scores = z @ self.weights_ + self.bias_
        self.threshold_ = choose_threshold(scores[: len(negatives)], scores[len(negatives):])
        return self

    def score(self, x: torch.Tensor) -> np.ndarray:
        """The logistic regression's log-odds of "adversarial"."""
        z = (self.raw_scores(x) - self._fitted("mean_")) / self.scale_
        return z @ self._fitted("weights_") + self.bias_


def gaussian_noise_like(clean: torch.Tensor, l2: float, seed: int) -> torch.Tensor:
    """The clean digits plus Gaussian noise of L2 norm ``l2`` per image (Feinman's noisy negatives,
    matched to the adversarial examples' mean L2), clipped to [0, 1]."""
    noise = torch.randn(clean.shape, generator=make_generator(seed))
    noise = noise / noise.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (clean.dim() - 1)) * l2
    return (clean + noise).clamp(0, 1)
