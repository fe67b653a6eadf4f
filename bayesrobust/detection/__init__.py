"""Adversarial-example detectors built on models' own uncertainty (``fit`` / ``score`` / ``decide``)."""

from bayesrobust.detection.base import Detector, NotFittedError, choose_threshold
from bayesrobust.detection.metrics import detection_metrics
from bayesrobust.detection.mixed import MixedSet, build_mixed_set
from bayesrobust.detection.uncertainty import SCORES, UncertaintyDetector, uncertainty_score

__all__ = ["SCORES", "Detector", "MixedSet", "NotFittedError", "UncertaintyDetector", "build_mixed_set",
           "choose_threshold", "detection_metrics", "uncertainty_score"]
