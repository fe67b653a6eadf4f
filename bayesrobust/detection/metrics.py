"""Detection metrics on a mixed set: confusion counts, accuracy, ROC-AUC, AUPR, TPR at 5% FPR, and the
classification accuracy on what the detector lets through (the seed reproduction's Tables 1–3), with
seeded bootstrap intervals (``<key>_low`` / ``<key>_high``) on the rates."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from bayesrobust.metrics import ranking
from bayesrobust.metrics.bootstrap import batched_mean, batched_ratio, bootstrap_all


def _intervals(truth, scores, flag, correct, resamples: int, seed: int, level: float) -> dict[str, float]:
    """Percentile bootstrap intervals of the rates, every metric on the same resampled examples."""
    statistics = {
        "detection_accuracy": (batched_mean, (truth == flag,)),
        "roc_auc": (ranking.roc_auc, (truth, scores)),
        "aupr": (ranking.average_precision, (truth, scores)),
        "tpr_at_5_fpr": (ranking.tpr_at_fpr_statistic(0.05), (truth, scores)),
        "accuracy_passed": (batched_ratio, (correct & ~flag, ~flag)),
    }
    out = {}
    for key, interval in bootstrap_all(statistics, resamples=resamples, seed=seed, level=level).items():
        out[f"{key}_low"], out[f"{key}_high"] = interval.low, interval.high
    return out


def detection_metrics(is_adversarial, scores, flagged, predicted, labels, *, resamples: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float]:
    """``is_adversarial`` (truth), ``scores`` (higher = more suspicious), ``flagged`` (the detector's
    decisions), ``predicted`` / ``labels`` (the classifier's prediction and the true class) — all ``(N,)``.

    Confusion counts treat "adversarial" as the positive class. ``accuracy_passed`` is the classifier's
    accuracy on the images flagged clean; ``clean_passed_correct`` etc. split them as the seed's tables
    do. ``resamples`` bootstrap resamples (0: none) give ``level`` intervals of detection accuracy,
    ROC-AUC, AUPR, TPR at 5% FPR and accuracy passed."""
    truth = np.asarray(is_adversarial, dtype=bool)
    flag = np.asarray(flagged, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(predicted) == np.asarray(labels)
    passed = ~flag
    out = {
        "tp": int(np.sum(truth & flag)), "fp": int(np.sum(~truth & flag)),
        "tn": int(np.sum(~truth & ~flag)), "fn": int(np.sum(truth & ~flag)),
        "detection_accuracy": float(np.mean(truth == flag)),
        "roc_auc": float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else float("nan"),
        "aupr": float(average_precision_score(truth, scores)) if truth.any() else float("nan"),
        "tpr_at_5_fpr": float(ranking.tpr_at_fpr(truth, scores, 0.05)[0]),  # NaN without both classes
        "undefended_accuracy": float(np.mean(correct)),
        "accuracy_passed": float(np.mean(correct[passed])) if passed.any() else float("nan"),
        "clean_passed_correct": int(np.sum(~truth & passed & correct)),
        "clean_passed_incorrect": int(np.sum(~truth & passed & ~correct)),
        "adversarial_passed_correct": int(np.sum(truth & passed & correct)),
        "adversarial_passed_incorrect": int(np.sum(truth & passed & ~correct)),
    }
    if resamples:
        out.update(_intervals(truth, scores, flag, correct, resamples, seed, level))
    return out
