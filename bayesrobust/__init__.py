"""bayesrobust: Bayesian models of digits, their attacks, and uncertainty as a first-class output."""

__version__ = "0.1.0"

from bayesrobust.predictive import Predictive  # noqa: E402

__all__ = ["Predictive", "__version__"]
