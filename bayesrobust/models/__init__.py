"""Bayesian classifiers: every model returns a Predictive (see ``base.BayesianClassifier``)."""

from bayesrobust.models.base import MODELS, BayesianClassifier, Draws, build_model
from bayesrobust.models.dropout import DropoutClassifier
from bayesrobust.models.ensemble import DeepEnsemble
from bayesrobust.models.layers import MCDropout
from bayesrobust.models.wrapped import WrappedClassifier, wrap

__all__ = ["MODELS", "BayesianClassifier", "DeepEnsemble", "Draws", "DropoutClassifier", "MCDropout", "WrappedClassifier",
           "build_model", "wrap"]
