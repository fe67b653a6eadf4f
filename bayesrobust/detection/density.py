"""Kernel density + Bayesian uncertainty (Feinman et al. 2017).

KD: a Gaussian kernel density of the input's last-hidden-layer features among the *training* features
of the class it is predicted as (low density = suspicious); BU: the MC-dropout variance of the softmax
outputs, mean over classes of E[p²] − E[p]² over ``samples`` passes. Both are z-scored and combined by a
logistic regression fitted on validation data: clean and Gaussian-noisy digits (L2-matched to the
adversarial ones, as Feinman did) as negatives, adversarial digits as positives. The bandwidth (1.20 in
Feinman's code, tied to his network) is a parameter; ``bandwidth="auto"`` chooses it on the clean
validation digits: the h of a log-spaced grid that maximises their held-out log-likelihood under the
(normalised) KDE of their predicted class — no adversarial example is involved.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from bayesrobust.detection.base import DETECTORS, Detector, DetectorKind, choose_threshold, images
from bayesrobust.seeding import derive_seed, isolated_rng, make_generator


def log_kernel_density(queries: torch.Tensor, points: torch.Tensor, bandwidth, chunk: int = 1024) -> torch.Tensor:
    """log of (1/n) Σⱼ exp(−‖q − pⱼ‖² / (2h²)) for every query (the Gaussian KDE up to its normalising
    constant, the same for every query of one dimension), by chunks of queries: ``(N,)`` for one
    bandwidth, ``(H, N)`` for a sequence of H (the distances computed once for all of them)."""
    h = torch.as_tensor(bandwidth, dtype=torch.float64)
    widths = h.reshape(-1, 1, 1)
    step = max(1, chunk // len(widths))
    out = []
    for start in range(0, len(queries), step):
        d2 = torch.cdist(queries[start: start + step].double(), points.double()).pow(2)
        out.append(torch.logsumexp(-d2 / (2 * widths**2), 2) - math.log(len(points)))
    result = torch.cat(out, 1) if out else torch.zeros(len(widths), 0, dtype=torch.float64)
    return result if h.dim() else result[0]


class KernelDensityUncertainty(Detector):
    """Feinman et al.'s KD + BU detector on any model with ``features`` and a stochastic predictive."""

    name = "kd_bu"

    def __init__(self, model, train_images: torch.Tensor, train_labels: torch.Tensor, *, bandwidth: float | str = 1.20,
                 samples: int = 50, seed: int = 0, batch_size: int = 1000) -> None:
        if bandwidth != "auto" and not (isinstance(bandwidth, (int, float)) and bandwidth > 0):
            raise ValueError(f"bandwidth must be > 0 or 'auto', got {bandwidth!r}")
        self.model, self.bandwidth, self.samples, self.seed, self.batch_size = model, bandwidth, samples, seed, batch_size
        missing = sorted(set(range(model.num_classes)) - {int(c) for c in torch.unique(train_labels)})
        if missing:
            raise ValueError(f"KD needs training digits of every class the model can predict; none of class {missing}")
        feats = self._features(images(train_images, self.model))
        self.class_features_ = {c: feats[train_labels == c] for c in range(model.num_classes)}
        self.bandwidth_ = None if bandwidth == "auto" else float(bandwidth)
        self.mean_ = self.scale_ = self.weights_ = self.bias_ = self.threshold_ = None

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model.features(x[i: i + self.batch_size]).cpu() for i in range(0, len(x), self.batch_size)])

    def raw_scores(self, x: torch.Tensor) -> np.ndarray:
        """``(N, 2)``: [−log KD under the predicted class, BU]; both higher = more suspicious."""
        bandwidth = self._fitted("bandwidth_")
        pred, feats = self._predict_and_features(x)
        kd = self._class_log_density(feats, pred.predicted, bandwidth)
        bu = (pred.probs.pow(2).mean(0) - pred.probs.mean(0).pow(2)).mean(-1).double()
        return torch.stack([-kd, bu], 1).numpy()

    def _predict_and_features(self, x: torch.Tensor):
        x = images(x, self.model)
        pred = self.model.predictive(x, self.samples, generator=make_generator(self.seed), batch_size=self.batch_size)
        return pred, self._features(x)

    def _class_log_density(self, feats: torch.Tensor, predicted: torch.Tensor, bandwidth) -> torch.Tensor:
        """log KD of each feature row under its class: ``(N,)``, or ``(H, N)`` for a sequence of bandwidths."""
        kd = torch.empty(*np.shape(bandwidth), len(feats), dtype=torch.float64)
        for c, points in self.class_features_.items():
            rows = predicted == c
            if rows.any():
                kd[..., rows] = log_kernel_density(feats[rows], points, bandwidth)
        return kd

    def density_score(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable −log KD ``(N,)`` (float64, CPU) of ``x``'s features under ``classes`` (default: the
        class the model's deterministic logits predict): what Carlini & Wagner's KDE attack keeps under a
        cap, scored under the class it aims at."""
        bandwidth = self._fitted("bandwidth_")
        feats = self.model.features(x).cpu()
        if classes is None:
            with torch.no_grad():
                classes = self.model.logits(x).argmax(1)
        classes = classes.cpu()
        score = torch.zeros(len(feats), dtype=torch.float64)
        for c in classes.unique().tolist():
            rows = classes == c
            score = score.index_put((rows,), -log_kernel_density(feats[rows], self.class_features_[c], bandwidth))
        return score

    def density_cap(self, clean_val: torch.Tensor, max_fpr: float = 0.05) -> float:
        """The threshold of a KD-only detector that flags ``max_fpr`` of ``clean_val``: the (1 − ``max_fpr``)
        quantile of their −log KD (choosing the bandwidth on them first when it is "auto")."""
        clean_val = images(clean_val, self.model)
        if self.bandwidth_ is None:
            self.bandwidth_ = self.choose_bandwidth(clean_val)
        with torch.no_grad():
            scores = torch.cat([self.density_score(clean_val[i: i + self.batch_size])
                                for i in range(0, len(clean_val), self.batch_size)])
        return choose_threshold(scores.numpy(), None, max_fpr=max_fpr)

    def choose_bandwidth(self, clean_val: torch.Tensor, grid: int = 13) -> float:
        """The bandwidth that maximises the mean held-out log-likelihood of ``clean_val``'s features under
        the normalised KDE of their predicted class, over a log-spaced grid from 1/64 to 4 times the
        median distance between training features."""
        pred, feats = self._predict_and_features(clean_val)
        sample = torch.cat(list(self.class_features_.values()))[:2000]
        scale = float(torch.pdist(sample.double()).median())
        d = feats.shape[1]
        candidates = scale * np.logspace(-6, 2, grid, base=2.0)
        log_density = self._class_log_density(feats, pred.predicted, candidates.tolist())  # (grid, N)
        fit = log_density.mean(1) - torch.as_tensor(d * np.log(candidates) + d / 2 * math.log(2 * math.pi))
        return float(candidates[int(fit.argmax())])

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None, *, noise_l2: float | None = None
            ) -> KernelDensityUncertainty:
        """Logistic regression on z-scored [−log KD, BU]: negatives are ``clean_val`` and, when
        ``noise_l2`` is given (the adversarial examples' mean L2 distortion), the same digits plus
        Gaussian noise of that norm; positives ``adv_val``. The decision threshold is the one of best
        validation accuracy."""
        from sklearn.linear_model import LogisticRegression

        if adv_val is None or len(adv_val) == 0:
            raise ValueError("KD+BU fits its logistic regression on validation adversarial examples")
        clean_val, adv_val = images(clean_val, self.model), images(adv_val, self.model)
        if self.bandwidth == "auto":
            self.bandwidth_ = self.choose_bandwidth(clean_val)
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


def kernel_density(model, data, section, seed: int, built: dict | None = None) -> KernelDensityUncertainty:
    """Feinman's KD + BU detector, unfitted. Building it passes every training digit through the model, so
    with ``built`` that is done once per model and each caller gets a shallow copy: the training features
    are shared (read only), the bandwidth and the fitted regression are the copy's own."""
    built = {} if built is None else built
    if "kd_bu" not in built:
        with isolated_rng(derive_seed(seed, "kd_bu")):  # the same features whichever unit builds them first
            built["kd_bu"] = KernelDensityUncertainty(model, data.train.images, data.train.labels, samples=section.samples,
                                                      bandwidth=section.kd_bandwidth or "auto", seed=seed)
    return copy.copy(built["kd_bu"])


DETECTORS.add("kd_bu", DetectorKind(lambda model, data, section, seed, vae, built: kernel_density(model, data, section, seed, built)))
