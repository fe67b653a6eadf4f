"""Separability of two score populations (in-distribution vs shifted / adversarial)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def auroc(negative_scores, positive_scores) -> float:
    """Area under the ROC curve for ``positive`` scoring higher than ``negative`` (scikit-learn's
    ``roc_auc_score``; ties count half, so all-equal scores give 0.5)."""
    neg = np.asarray(negative_scores, dtype=np.float64).ravel()
    pos = np.asarray(positive_scores, dtype=np.float64).ravel()
    if neg.size == 0 or pos.size == 0:
        raise ValueError("auroc needs at least one score on each side")
    truth = np.concatenate([np.zeros(neg.size, bool), np.ones(pos.size, bool)])
    return float(roc_auc_score(truth, np.concatenate([neg, pos])))
