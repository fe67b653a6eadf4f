"""bayesrobust: Bayesian models of digits, their attacks, and uncertainty as a first-class output.

The names below are loaded on first use (PEP 562), so importing a light module such as
``bayesrobust.errors`` or ``bayesrobust.schema`` does not import torch and the model stack."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {"BayesianClassifier": "bayesrobust.models", "Draws": "bayesrobust.models", "wrap": "bayesrobust.models",
         "Predictive": "bayesrobust.predictive", "run_suite": "bayesrobust.in_memory", "load_dataset": "bayesrobust.data",
         "build_model": "bayesrobust.models"}

__all__ = ["BayesianClassifier", "Draws", "Predictive", "__version__", "build_model", "load_dataset", "run_suite", "wrap"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'bayesrobust' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
