"""Bayesian classifiers: every model returns a Predictive (see ``base.BayesianClassifier``)."""

from bayesrobust.models import nets  # noqa: F401  (register architectures)
from bayesrobust.models.base import MODELS, BayesianClassifier, build_model
from bayesrobust.models.layers import MCDropout

__all__ = ["MODELS", "BayesianClassifier", "MCDropout", "build_model"]
