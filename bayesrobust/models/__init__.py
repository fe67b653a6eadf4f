"""Bayesian classifiers: every model returns a Predictive (see ``base.BayesianClassifier``)."""

from bayesrobust.models import nets  # noqa: F401  (register architectures)
from bayesrobust.models.base import MODELS, BayesianClassifier, Draws, build_model
from bayesrobust.models.dropout import DropoutClassifier
from bayesrobust.models.ensemble import DeepEnsemble
from bayesrobust.models.layers import MCDropout
from bayesrobust.models.wrapped import WrappedClassifier, wrap

MODELS.add_lazy("gpdnn", "bayesrobust.models.gpdnn:GPDNN")  # imports GPyTorch on first use
MODELS.add_lazy("vae", "bayesrobust.models.vae:VAEClassifier")  # imports Pyro on first use

__all__ = ["MODELS", "BayesianClassifier", "DeepEnsemble", "Draws", "DropoutClassifier", "MCDropout", "WrappedClassifier",
           "build_model", "wrap"]
