"""Detection metrics on a mixed set: confusion counts, accuracy, ROC-AUC, AUPR, TPR at 5% FPR, and the
classification accuracy on what the detector lets through (the seed reproduction's Tables 1–3)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def tpr_at_fpr(is_adversarial: np.ndarray, scores: np.ndarray, fpr: float = 0.05) -> float:
    """True-positive rate at the largest threshold whose false-positive rate is at most ``fpr``."""
    fprs, tprs, _ = roc_curve(is_adversarial, scores)
    return float(tprs[fprs <= fpr].max()) if np.any(fprs <= fpr) else 0.0


def detection_metrics(is_adversarial, scores, flagged, predicted, labels) -> dict[str, float]:
    """``is_adversarial`` (truth), ``scores`` (higher = more suspicious), ``flagged`` (the detector's
    decisions), ``predicted`` / ``labels`` (the classifier's prediction and the true class) — all ``(N,)``.

    Confusion counts treat "adversarial" as the positive class. ``accuracy_passed`` is the classifier's
    accuracy on the images flagged clean; ``clean_passed_correct`` etc. split them as the seed's tables do."""
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
        "tpr_at_5_fpr": tpr_at_fpr(truth, scores) if 0 < truth.sum() < len(truth) else float("nan"),
        "undefended_accuracy": float(np.mean(correct)),
        "accuracy_passed": float(np.mean(correct[passed])) if passed.any() else float("nan"),
        "clean_passed_correct": int(np.sum(~truth & passed & correct)),
        "clean_passed_incorrect": int(np.sum(~truth & passed & ~correct)),
        "adversarial_passed_correct": int(np.sum(truth & passed & correct)),
        "adversarial_passed_incorrect": int(np.sum(truth & passed & ~correct)),
    }
    return out
