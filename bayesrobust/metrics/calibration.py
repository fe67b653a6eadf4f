"""Calibration metrics, batched like ``metrics.ranking``: ``(B, N)`` arrays (one row per bootstrap
resample; a 1-D array is one row) → ``(B,)``.

Definitions (they differ between libraries, so ours are stated and tested on hand-built cases):

- **Bins.** ``scheme="width"``: ``bins`` equal-width intervals of confidence, right-closed,
  ((b−1)/B, b/B], the first also holding 0. ``scheme="mass"``: the examples sorted by confidence and cut
  into ``bins`` groups of (nearly) equal size (ties broken by order).
- **ECE** = Σ_b (n_b / N) · |acc_b − conf_b| with conf_b the *mean confidence* of the examples in bin b
  (not the bin's centre) and acc_b their accuracy; empty bins weigh nothing. **MCE** = max_b over
  non-empty bins of |acc_b − conf_b|.
- **Classwise ECE** (Kull et al. 2019): the mean over classes k of the ECE of p_k against 1[y = k].
- **Brier** = mean over examples of Σ_k (p_k − 1[y = k])², in [0, 2]. Ovadia et al.'s code omits the
  constant +1 (Σ p_k² − 2 p_y, in [−1, 1]); ``brier_score(..., ovadia=True)`` gives theirs.

Intervals of ECE: the estimator is biased upward (sampling noise in each bin's gap only adds to |gap|),
and a bootstrap resample adds the same noise again, so the bootstrap distribution sits above the
estimate. On a perfectly calibrated synthetic model (10,000 examples, confidence U(0.9, 1)) the estimate
is 0.09–0.21% and the 95% percentile interval about [0.05, 0.6]%: it describes the estimator's spread,
and near zero it does not contain the true ECE of 0 — on a well-calibrated model it can even lie above
the estimate. The calibration suite therefore reports ECE twice: as estimated, with that percentile
interval, and bias-corrected (``Interval.bias_corrected``: minus the bootstrap's bias estimate, with the
basic interval clipped at 0).
The degenerate-resample problem of scikit-learn #30664 does not arise: every resample has a defined ECE
(empty bins weigh nothing; a bin that is all right or all wrong contributes its |1 − conf| or conf).
"""

from __future__ import annotations

import numpy as np


def _rows(*arrays) -> list[np.ndarray]:
    rows = [np.atleast_2d(np.asarray(a, dtype=np.float64)) for a in arrays]
    if any(r.shape != rows[0].shape for r in rows):
        raise ValueError(f"arrays differ in shape: {[r.shape for r in rows]}")
    return rows


def bin_index(confidence: np.ndarray, bins: int, scheme: str = "width") -> np.ndarray:
    """The bin (0 … bins − 1) of every confidence, row by row."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    (conf,) = _rows(confidence)
    if scheme == "width":
        return np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    if scheme == "mass":
        rank = np.argsort(np.argsort(conf, axis=1, kind="stable"), axis=1)
        return rank * bins // conf.shape[1]
    raise ValueError(f"scheme must be 'width' or 'mass', got {scheme!r}")


def reliability(confidence, correct, bins: int = 15, scheme: str = "width"):
    """Per row and bin: ``(count, mean confidence, accuracy)``, each ``(B, bins)``; NaN where a bin is
    empty. What a reliability diagram draws and what ECE / MCE summarise."""
    conf, hit = _rows(confidence, correct)
    index = bin_index(conf, bins, scheme) + bins * np.arange(len(conf))[:, None]
    shape = (len(conf), bins)
    count = np.bincount(index.ravel(), minlength=len(conf) * bins).reshape(shape).astype(np.float64)
    conf_sum = np.bincount(index.ravel(), weights=conf.ravel(), minlength=count.size).reshape(shape)
    hit_sum = np.bincount(index.ravel(), weights=hit.ravel(), minlength=count.size).reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, conf_sum / count, hit_sum / count


def _weighted_ece(counts, confidence, correct, bins: int = 15) -> np.ndarray:
    """ECE (equal-width bins) of every resample from its counts ``(B, N)``: each example's bin is fixed,
    so the per-bin sums are matrix products."""
    conf, hit = (np.asarray(a, dtype=np.float64).ravel() for a in (confidence, correct))
    onehot = np.zeros((conf.size, bins))
    onehot[np.arange(conf.size), bin_index(conf, bins)[0]] = 1.0
    gap = counts @ (onehot * (hit - conf)[:, None])  # Σ (correct − confidence) per bin
    return np.abs(gap).sum(1) / counts.sum(1)


def ece_statistic(bins: int = 15, scheme: str = "width"):
    """:func:`expected_calibration_error` with these bins as a bootstrap statistic (a weighted form
    for equal-width bins; equal-mass bins move with the resample, so they are resampled)."""
    statistic = lambda confidence, correct: expected_calibration_error(confidence, correct, bins, scheme)  # noqa: E731
    if scheme == "width":
        statistic.weighted = lambda counts, confidence, correct: _weighted_ece(counts, confidence, correct, bins)
    return statistic


def expected_calibration_error(confidence, correct, bins: int = 15, scheme: str = "width") -> np.ndarray:
    """ECE per row (see the module docstring for the definition)."""
    count, conf, acc = reliability(confidence, correct, bins, scheme)
    gap = np.where(count > 0, np.abs(acc - conf), 0.0)
    return (count * gap).sum(1) / count.sum(1)


def maximum_calibration_error(confidence, correct, bins: int = 15, scheme: str = "width") -> np.ndarray:
    """MCE per row: the largest gap of a non-empty bin."""
    count, conf, acc = reliability(confidence, correct, bins, scheme)
    return np.where(count > 0, np.abs(acc - conf), 0.0).max(1)


def classwise_ece(probs, labels, bins: int = 15, scheme: str = "width") -> np.ndarray:
    """Classwise ECE per row: ``probs`` ``(B, N, C)`` (or ``(N, C)``), ``labels`` ``(B, N)`` (or ``(N,)``)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs[None] if probs.ndim == 2 else probs
    labels = np.atleast_2d(np.asarray(labels))
    if probs.shape[:2] != labels.shape:
        raise ValueError(f"probabilities {probs.shape} do not match labels {labels.shape}")
    classes = probs.shape[2]
    per_class = [expected_calibration_error(probs[..., k], labels == k, bins, scheme) for k in range(classes)]
    return np.mean(per_class, axis=0)


def brier_terms(probs, labels) -> np.ndarray:
    """Each example's multiclass Brier term Σ_c (p_c − 1[y = c])², ``(B, N)`` (``probs`` ``(B, N, C)``
    or ``(N, C)``)."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs[None] if probs.ndim == 2 else probs
    labels = np.atleast_2d(np.asarray(labels)).astype(np.int64)
    onehot = np.zeros_like(probs)
    np.put_along_axis(onehot, labels[..., None], 1.0, axis=2)
    return ((probs - onehot) ** 2).sum(2)


def brier_score(probs, labels, *, ovadia: bool = False) -> np.ndarray:
    """Multiclass Brier score per row (the mean of :func:`brier_terms`); ``ovadia=True`` drops the
    constant +1 as Ovadia et al.'s code does."""
    score = brier_terms(probs, labels).mean(1)
    return score - 1.0 if ovadia else score


def risk_coverage(uncertainty, correct) -> tuple[np.ndarray, np.ndarray]:
    """Selective classification: keep the most certain examples first. Returns ``coverage`` ``(N,)``
    (1/N … 1) and ``risk`` ``(B, N)``, the error rate among the retained examples at each coverage (ties
    in uncertainty broken by order)."""
    u, hit = _rows(uncertainty, correct)
    order = np.argsort(u, axis=1, kind="stable")
    errors = np.cumsum(1.0 - np.take_along_axis(hit, order, 1), axis=1)
    kept = np.arange(1, u.shape[1] + 1)
    return kept / u.shape[1], errors / kept


def _wrong_positions(counts, uncertainty, correct) -> tuple[np.ndarray, np.ndarray]:
    """Per resample (a row of ``counts``) sorted by increasing uncertainty (ties by the examples' order):
    the positions ``(start, end]`` that each misclassified example's copies take, ``(B, wrong)`` each —
    all that risk–coverage depends on, without sorting every resample."""
    u, hit = (np.asarray(a, dtype=np.float64).ravel() for a in (uncertainty, correct))
    order = np.argsort(u, kind="stable")
    end = np.cumsum(counts[:, order], axis=1)
    wrong = np.flatnonzero(hit[order] == 0)
    end = end[:, wrong]
    return end - counts[:, order[wrong]], end


def _weighted_aurc(counts, uncertainty, correct) -> np.ndarray:
    """AURC of every resample from its counts ``(B, N)``. With n examples, a wrong example at position p
    adds 1/j to the risk at every position j ≥ p, H_n − H_{p−1} in all; summed over its copies'
    positions (a, b], c·H_n − Σ_{a ≤ k < b} H_k (c = b − a copies)."""
    start, end = _wrong_positions(counts, uncertainty, correct)
    n = int(round(counts[0].sum()))
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])  # H_0 … H_n
    below = np.concatenate([[0.0], np.cumsum(harmonic)])  # below[k] = Σ_{i < k} H_i
    total = ((end - start) * harmonic[n] - (below[end.astype(np.int64)] - below[start.astype(np.int64)])).sum(1)
    return total / n


def area_under_risk_coverage(uncertainty, correct) -> np.ndarray:
    """AURC per row: the mean of the risk over all coverages (lower is better; an oracle ordering gets
    the minimum for the model's error rate). As a bootstrap statistic it takes resampling counts
    (``weighted``: one sort instead of one per resample; ties in uncertainty are then broken by the
    examples' order rather than the resample's, the only difference)."""
    _, risk = risk_coverage(uncertainty, correct)
    return risk.mean(1)


area_under_risk_coverage.weighted = _weighted_aurc


def accuracy_at_coverage(coverage: float):
    """A statistic ``(uncertainty, correct) -> (B,)``: the accuracy on the ``coverage`` share of examples
    the model is most certain of (selective prediction: abstain on the rest), row by row."""
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")

    def statistic(uncertainty, correct) -> np.ndarray:
        _, risk = risk_coverage(uncertainty, correct)
        kept = max(1, int(np.ceil(coverage * risk.shape[1])))
        return 1.0 - risk[:, kept - 1]

    def weighted(counts, uncertainty, correct) -> np.ndarray:
        start, end = _wrong_positions(counts, uncertainty, correct)
        kept = max(1, int(np.ceil(coverage * round(counts[0].sum()))))
        errors = np.clip(kept - start, 0.0, end - start).sum(1)  # wrong copies among the first `kept`
        return 1.0 - errors / kept

    statistic.weighted = weighted
    return statistic
