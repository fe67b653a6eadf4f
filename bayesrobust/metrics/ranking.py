"""Ranking metrics (ROC-AUC, average precision, TPR at a fixed FPR) on a batch of score vectors at once.

scikit-learn computes these for one vector; a bootstrap needs them for a thousand resamples of the same
examples, and a Python loop over ``roc_auc_score`` costs seconds. Each function here takes ``(B, N)``
arrays — one row per resample — and returns ``(B,)``, with scikit-learn's definitions (ties handled as it
does), which the tests check row by row. "Positive" means higher score = more suspicious.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _rows(truth, scores) -> tuple[np.ndarray, np.ndarray]:
    truth = np.atleast_2d(np.asarray(truth, dtype=bool))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if truth.shape != scores.shape:
        raise ValueError(f"truth and scores differ in shape: {truth.shape} vs {scores.shape}")
    return truth, scores


def roc_auc(truth, scores) -> np.ndarray:
    """Area under the ROC curve per row: the Mann–Whitney U statistic with ties counted half (equal
    to ``sklearn.metrics.roc_auc_score``). NaN for a row without both classes."""
    truth, scores = _rows(truth, scores)
    ranks = rankdata(scores, axis=1)  # average ranks: ties count half
    pos = truth.sum(1)
    neg = truth.shape[1] - pos
    u = np.where(truth, ranks, 0.0).sum(1) - pos * (pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (neg > 0), u / (pos * neg), np.nan)


def _descending_curve(truth: np.ndarray, scores: np.ndarray):
    """Cumulative true and false positives per row at each distinct threshold, highest first, and the
    mask of positions that end a run of tied scores (the only places a threshold can sit)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, 1)
    t = np.take_along_axis(truth, order, 1)
    tp = np.cumsum(t, axis=1, dtype=np.float64)
    fp = np.cumsum(~t, axis=1, dtype=np.float64)
    ends = np.ones_like(t)
    ends[:, :-1] = s[:, :-1] != s[:, 1:]
    return tp, fp, ends


def average_precision(truth, scores) -> np.ndarray:
    """Average precision per row, Σ (Rₖ − Rₖ₋₁) Pₖ over distinct thresholds (equal to
    ``sklearn.metrics.average_precision_score``). NaN for a row without positives."""
    truth, scores = _rows(truth, scores)
    tp, fp, ends = _descending_curve(truth, scores)
    tp_at_ends = np.where(ends, tp, 0.0)
    previous = np.maximum.accumulate(tp_at_ends, axis=1)  # tp at the latest threshold so far
    previous = np.concatenate([np.zeros((len(tp), 1)), previous[:, :-1]], axis=1)
    precision = tp / (tp + fp)
    pos = truth.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(ends, (tp - previous) * precision, 0.0).sum(1) / pos
    return np.where(pos > 0, ap, np.nan)


def _rates(truth, scores):
    """Per row: TPR and FPR at every position of the descending curve, the threshold mask, and whether
    the row has both classes."""
    truth, scores = _rows(truth, scores)
    tp, fp, ends = _descending_curve(truth, scores)
    pos = truth.sum(1, keepdims=True).astype(np.float64)
    neg = truth.shape[1] - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / pos, fp / neg, ends, (pos[:, 0] > 0) & (neg[:, 0] > 0)


def tpr_at_fpr(truth, scores, fpr: float = 0.05) -> np.ndarray:
    """Per row, the highest true-positive rate at a threshold whose false-positive rate is at most
    ``fpr`` (as read off ``sklearn.metrics.roc_curve``). NaN for a row without both classes."""
    tprs, fprs, ends, valid = _rates(truth, scores)
    best = np.where(ends & (fprs <= fpr), tprs, 0.0).max(1)  # the threshold above every score gives TPR 0
    return np.where(valid, best, np.nan)


def fpr_at_tpr(truth, scores, tpr: float = 0.95) -> np.ndarray:
    """Per row, the lowest false-positive rate at a threshold whose true-positive rate is at least
    ``tpr`` (FPR@95 for out-of-distribution detection). NaN for a row without both classes."""
    tprs, fprs, ends, valid = _rates(truth, scores)
    best = np.where(ends & (tprs >= tpr), fprs, 1.0).min(1)  # the lowest threshold reaches TPR 1 at FPR 1
    return np.where(valid, best, np.nan)
