"""Adversarial-example detectors built on models' own uncertainty (``fit`` / ``score`` / ``decide``)."""

from bayesrobust.detection.base import Detector, NotFittedError, choose_threshold
from bayesrobust.detection.density import KernelDensityUncertainty, log_kernel_density
from bayesrobust.detection.generative import GENERATIVE_SCORES, GenerativeDetector
from bayesrobust.detection.hybrid import HybridDetector
from bayesrobust.detection.metrics import detection_metrics
from bayesrobust.detection.mixed import MixedSet, build_mixed_set
from bayesrobust.detection.ocsvm import OneClassSVMDetector
from bayesrobust.detection.uncertainty import SCORES, UncertaintyDetector, uncertainty_score

__all__ = ["GENERATIVE_SCORES", "SCORES", "Detector", "GenerativeDetector", "HybridDetector", "KernelDensityUncertainty", "MixedSet", "NotFittedError",
           "OneClassSVMDetector", "UncertaintyDetector", "build_mixed_set", "choose_threshold", "detection_metrics",
           "log_kernel_density", "uncertainty_score"]
