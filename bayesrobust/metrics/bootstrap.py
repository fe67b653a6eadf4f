"""Seeded, vectorised bootstrap intervals, so a table says whether a difference is real.

``bootstrap`` resamples the examples with replacement ``resamples`` times and evaluates a statistic on
all resamples at once: the statistic takes arrays with a leading resample axis, ``(B, N, ...)``, and
returns ``(B,)`` (``batched_mean`` and the functions of ``metrics.ranking`` are such statistics). The
interval is the percentile interval of the resampled values; the estimate is the statistic on the
examples as given. ``paired_bootstrap`` resamples two models' outputs on the same examples with the same
indices, for the interval of a difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float

    def as_dict(self, name: str) -> dict[str, float]:
        """``{name: estimate, name_low: low, name_high: high}`` for a metrics file."""
        return {name: self.estimate, f"{name}_low": self.low, f"{name}_high": self.high}


def batched_mean(values: np.ndarray) -> np.ndarray:
    """The mean over examples of each resample: ``(B, N)`` → ``(B,)``."""
    return np.asarray(values, dtype=np.float64).mean(axis=1)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` example indices drawn with replacement from a generator seeded with ``seed``."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one example")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _resampled(statistic: Statistic, arrays: list[np.ndarray], indices: np.ndarray, chunk: int) -> np.ndarray:
    """The statistic on every resample, ``chunk`` resamples at a time (memory stays ``chunk × N``)."""
    values = [statistic(*(a[rows] for a in arrays)) for rows in np.array_split(indices, max(1, -(-len(indices) // chunk)))]
    return np.concatenate(values)


def _interval(estimate: float, values: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"), level)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level)


def _arrays(arrays) -> list[np.ndarray]:
    arrays = [np.asarray(a) for a in arrays]
    if not arrays:
        raise ValueError("the bootstrap needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays differ in length: {[len(a) for a in arrays]}")
    return arrays


def bootstrap(statistic: Statistic, *arrays, resamples: int = 1000, level: float = 0.95, seed: int = 0,
              chunk: int = 100) -> Interval:
    """The statistic on ``arrays`` (examples along the first axis) with its percentile interval."""
    arrays = _arrays(arrays)
    indices = resample_indices(len(arrays[0]), resamples, seed)
    estimate = float(statistic(*(a[None] for a in arrays))[0])
    return _interval(estimate, _resampled(statistic, arrays, indices, chunk), level)


def paired_bootstrap(statistic: Statistic, first, second, *, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0, chunk: int = 100) -> Interval:
    """Interval of ``statistic(*first) − statistic(*second)`` where ``first`` and ``second`` are two
    models' arrays on the same examples, resampled with the same indices."""
    first, second = _arrays(first), _arrays(second)
    if len(first[0]) != len(second[0]):
        raise ValueError("a paired bootstrap needs the same examples on both sides")

    def difference(*parts):
        return statistic(*parts[: len(first)]) - statistic(*parts[len(first):])

    both = first + second
    indices = resample_indices(len(first[0]), resamples, seed)
    estimate = float(difference(*(a[None] for a in both))[0])
    return _interval(estimate, _resampled(difference, both, indices, chunk), level)
