"""Separability of two score populations (in-distribution vs shifted / adversarial)."""

from __future__ import annotations

import numpy as np


def auroc(negative_scores, positive_scores) -> float:
    """Area under the ROC curve for ``positive`` scoring higher than ``negative``.

    Computed as the Mann–Whitney U statistic with ties counted half, so it is exact and needs no
    threshold. Returns 0.5 when either side is empty of variation-free information (all ties)."""
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("auroc needs at least one score on each side")
    scores = np.concatenate([neg, pos])
    from scipy.stats import rankdata

    ranks = rankdata(scores)  # average ranks handle ties
    u = ranks[neg.size:].sum() - pos.size * (pos.size + 1) / 2
    return float(u / (neg.size * pos.size))
