"""Paired differences between two models of one run on the same shifted digits (Ovadia et al.'s shift
protocol): is one model's NLL or Brier lower than the other's on rotated / translated copies, beyond the
resampling noise of the digits both saw?

Reads the per-example values the evaluation suite saves (``arrays/evaluation.npz``, keys
``ovadia/<copy>/<model>/per_example/<metric>``: ``OVADIA_EXAMPLES``) and resamples the digits with the same indices for both models
(``metrics.bootstrap.paired_bootstrap``), so the digits' own difficulty cancels.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bayesrobust.metrics.bootstrap import Interval, batched_mean, paired_bootstrap
from bayesrobust.suites.evaluation import OVADIA_EXAMPLES


def shift_copies(arrays: Mapping[str, np.ndarray], model: str, metric: str = "nll") -> list[str]:
    """The shifted copies (``rotate_45``, …) the arrays hold ``metric`` for ``model``, in file order."""
    return [fields["copy"] for _, fields in OVADIA_EXAMPLES.select(arrays, model=model, quantity=metric)]


def paired_shift_differences(arrays: Mapping[str, np.ndarray], first: str, second: str, *,
                             metrics: tuple[str, ...] = ("nll", "brier"), resamples: int = 1000,
                             seed: int = 0) -> dict[str, Interval]:
    """``{"<copy>/<metric>": Interval}`` of mean(first) − mean(second) on every shifted copy both models
    were scored on (negative: ``first`` is better on a lower-is-better metric)."""
    out = {}
    for copy in shift_copies(arrays, first, metrics[0]):
        for metric in metrics:
            a = OVADIA_EXAMPLES.get(arrays, copy=copy, model=first, quantity=metric)
            b = OVADIA_EXAMPLES.get(arrays, copy=copy, model=second, quantity=metric)
            if a is None or b is None:
                continue
            out[f"{copy}/{metric}"] = paired_bootstrap(batched_mean, (np.asarray(a, np.float64),),
                                                       (np.asarray(b, np.float64),), resamples=resamples, seed=seed)
    return out
