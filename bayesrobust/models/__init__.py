"""Bayesian classifiers: every model returns a Predictive (see ``base.BayesianClassifier``)."""

from bayesrobust.models import nets  # noqa: F401  (register architectures)
from bayesrobust.models.base import MODELS, BayesianClassifier, build_model
from bayesrobust.models.dropout import DropoutClassifier
from bayesrobust.models.layers import MCDropout

MODELS.add_lazy("gpdnn", "bayesrobust.models.gpdnn:GPDNN")  # imports GPyTorch on first use
MODELS.add_lazy("vae", "bayesrobust.models.vae:VAEClassifier")  # imports Pyro on first use

__all__ = ["MODELS", "BayesianClassifier", "DropoutClassifier", "MCDropout", "build_model"]
