"""bayesrobust: Bayesian models of digits, their attacks, and uncertainty as a first-class output."""

__version__ = "0.1.0"

from bayesrobust.models import BayesianClassifier, Draws, wrap  # noqa: E402
from bayesrobust.predictive import Predictive  # noqa: E402

__all__ = ["BayesianClassifier", "Draws", "Predictive", "__version__", "wrap"]
