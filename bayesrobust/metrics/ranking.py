"""Ranking metrics (ROC-AUC, average precision, TPR at a fixed FPR) on a batch of score vectors at once.

scikit-learn computes these for one vector; a bootstrap needs them for a thousand resamples of the same
examples, and a Python loop over ``roc_auc_score`` costs seconds. Each function here takes ``(B, N)``
arrays — one row per resample — and returns ``(B,)``, with scikit-learn's definitions (ties handled as it
does), which the tests check row by row. "Positive" means higher score = more suspicious.

Each also has a ``weighted(counts, truth, scores)`` form for the bootstrap (``metrics/bootstrap.py``):
one vector of examples and ``(B, N)`` counts of how often each is drawn in each resample. The scores are
sorted once; every resample is then a weighted cumulative sum along that order (a resample's tied
copies of an example share its score, so tie groups are the same for all resamples).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from bayesrobust.metrics.bootstrap import with_weighted


def _rows(truth, scores) -> tuple[np.ndarray, np.ndarray]:
    truth = np.atleast_2d(np.asarray(truth, dtype=bool))
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if truth.shape != scores.shape:
        raise ValueError(f"truth and scores differ in shape: {truth.shape} vs {scores.shape}")
    return truth, scores


def _sorted_once(truth, scores, counts):
    """Ascending order of the scores, the counts and truth in that order, and for every position the
    first and last position of its tie group."""
    truth = np.asarray(truth, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if truth.shape != scores.shape or counts.shape[1] != truth.size:
        raise ValueError(f"truth, scores and counts disagree: {truth.shape}, {scores.shape}, {counts.shape}")
    order = np.argsort(scores, kind="stable")
    s, t = scores[order], truth[order]
    new = np.r_[True, s[1:] != s[:-1]]  # a tie group starts here
    group = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], s.size] - 1
    return t, counts[:, order], starts[group], ends[group]


def _cumulative(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(B, N + 1)``: column i holds the weight of the masked examples before position i."""
    out = np.zeros((w.shape[0], w.shape[1] + 1))
    np.cumsum(np.where(mask, w, 0.0), axis=1, out=out[:, 1:])
    return out


def _weighted_roc_auc(counts, truth, scores) -> np.ndarray:
    t, w, first, last = _sorted_once(truth, scores, counts)
    neg = _cumulative(w, ~t)  # neg[:, i] = weight of negatives before position i
    positives = np.flatnonzero(t)
    below = neg[:, first[positives]]  # negatives strictly below each positive's tie group
    upto = neg[:, last[positives] + 1]  # ... and up to its end: ties count half
    u = (w[:, positives] * (below + upto) / 2).sum(1)
    pos, negatives = w[:, positives].sum(1), neg[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((pos > 0) & (negatives > 0), u / (pos * negatives), np.nan)


@with_weighted(_weighted_roc_auc)
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


def _weighted_curve(counts, truth, scores):
    """Per resample, the weighted true and false positives at every distinct threshold (scores ≥ a tie
    group's value, ``(B, G)``, groups ascending), the positives each threshold adds over the next
    higher one, and the positive and negative totals ``(B,)``."""
    t, w, first, last = _sorted_once(truth, scores, counts)
    pos_before, neg_before = _cumulative(w, t), _cumulative(w, ~t)
    pos, neg = pos_before[:, -1:], neg_before[:, -1:]
    starts = np.unique(first)
    if len(starts) == len(first):  # no ties: every position is a threshold (views, no gathers)
        starts_pos, starts_neg, ends_pos = pos_before[:, :-1], neg_before[:, :-1], pos_before[:, 1:]
    else:
        ends = last[starts] + 1
        starts_pos, starts_neg, ends_pos = pos_before[:, starts], neg_before[:, starts], pos_before[:, ends]
    return pos - starts_pos, neg - starts_neg, ends_pos - starts_pos, pos[:, 0], neg[:, 0]


def _weighted_average_precision(counts, truth, scores) -> np.ndarray:
    tp, fp, gained, pos, _ = _weighted_curve(counts, truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(gained > 0, tp / (tp + fp), 0.0)
        return np.where(pos > 0, (gained * precision).sum(1) / pos, np.nan)


@with_weighted(_weighted_average_precision)
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


def _weighted_rates(counts, truth, scores):
    tp, fp, _, pos, neg = _weighted_curve(counts, truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / pos[:, None], fp / neg[:, None], (pos > 0) & (neg > 0)


def tpr_at_fpr_statistic(fpr: float = 0.05):
    """:func:`tpr_at_fpr` at ``fpr`` as a bootstrap statistic (with its weighted form)."""
    def weighted(counts, truth, scores):
        tprs, fprs, valid = _weighted_rates(counts, truth, scores)
        return np.where(valid, np.where(fprs <= fpr, tprs, 0.0).max(1), np.nan)

    return with_weighted(weighted)(lambda truth, scores: tpr_at_fpr(truth, scores, fpr))


def fpr_at_tpr_statistic(tpr: float = 0.95):
    """:func:`fpr_at_tpr` at ``tpr`` as a bootstrap statistic (with its weighted form)."""
    def weighted(counts, truth, scores):
        tprs, fprs, valid = _weighted_rates(counts, truth, scores)
        return np.where(valid, np.where(tprs >= tpr, fprs, 1.0).min(1), np.nan)

    return with_weighted(weighted)(lambda truth, scores: fpr_at_tpr(truth, scores, tpr))


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
