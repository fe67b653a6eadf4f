"""Seeded, vectorised bootstrap intervals, so a table says whether a difference is real.

``bootstrap`` resamples the examples with replacement ``resamples`` times and evaluates a statistic on
all resamples at once: the statistic takes arrays with a leading resample axis, ``(B, N, ...)``, and
returns ``(B,)`` (``batched_mean`` and the functions of ``metrics.ranking`` are such statistics). The
interval is the percentile interval of the resampled values; the estimate is the statistic on the
examples as given. ``paired_bootstrap`` resamples two models' outputs on the same examples with the same
indices, for the interval of a difference.

Fast path: a resample is a multiset of the examples, so a statistic that can take per-example weights
needs no resampled copies — a statistic with a ``weighted(counts, *arrays)`` attribute (counts ``(B, N)``:
how often each example is drawn; arrays ``(N, ...)`` as given) is evaluated on the counts of the same
index draws, with the same numbers. Means become one matrix product, and the ranking metrics sort the
scores once instead of once per resample (``metrics.ranking``). Statistics without it are resampled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    level: float
    bias: float = float("nan")  # mean of the resampled values minus the estimate: the bootstrap's bias estimate

    def as_dict(self, name: str) -> dict[str, float]:
        """``{name: estimate, name_low: low, name_high: high}`` for a metrics file."""
        return {name: self.estimate, f"{name}_low": self.low, f"{name}_high": self.high}

    def bias_corrected(self, floor: float | None = None) -> Interval:
        """The estimate minus the bootstrap's bias estimate, with the basic (reverse-percentile) interval
        [2θ̂ − q_high, 2θ̂ − q_low], clipped at ``floor``. For a plug-in statistic biased away from its
        true value — binned ECE is never below zero and sampling noise only adds to it, so resampled ECEs
        lie above the estimate and the percentile interval can miss it — this is the interval that
        corrects for the bias (Efron & Tibshirani 1993, ch. 10 and 13)."""
        values = (self.estimate - self.bias, 2 * self.estimate - self.high, 2 * self.estimate - self.low)
        if floor is not None:
            values = tuple(max(v, floor) for v in values)
        return Interval(*values, level=self.level, bias=0.0)


def with_weighted(weighted: Callable[..., np.ndarray]):
    """Decorator: attach ``weighted`` (the same statistic from resampling counts) to a batched statistic."""
    def attach(statistic):
        statistic.weighted = weighted
        return statistic
    return attach


def _weighted_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    return counts @ np.asarray(values, dtype=np.float64) / counts.sum(1)


@with_weighted(_weighted_mean)
def batched_mean(values: np.ndarray) -> np.ndarray:
    """The mean over examples of each resample: ``(B, N)`` → ``(B,)``."""
    return np.asarray(values, dtype=np.float64).mean(axis=1)


def _weighted_ratio(counts: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.asarray(numerator, dtype=np.float64)) / (counts @ np.asarray(denominator, dtype=np.float64))


@with_weighted(_weighted_ratio)
def batched_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Σ numerator / Σ denominator over the examples of each resample ``(B,)`` (NaN where Σ denominator
    = 0): e.g. the accuracy on the images a detector passes, with ``correct & passed`` over ``passed``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(numerator, dtype=np.float64).sum(1) / np.asarray(denominator, dtype=np.float64).sum(1)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` example indices drawn with replacement from a generator seeded with ``seed``."""
    if n < 1:
        raise ValueError("the bootstrap needs at least one example")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def resample_counts(indices: np.ndarray) -> np.ndarray:
    """How often each example appears in each resample: ``(B, N)`` indices → ``(B, N)`` float counts."""
    b, n = indices.shape
    flat = (indices + n * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)


def _interval(estimate: float, values: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1 - level) / 2 * 100
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(float(estimate), float("nan"), float("nan"), level)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(float(estimate), float(low), float(high), level, bias=float(finite.mean() - estimate))


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
    return bootstrap_all({"value": (statistic, arrays)}, resamples=resamples, level=level, seed=seed, chunk=chunk)["value"]


def bootstrap_all(statistics, *, resamples: int = 1000, level: float = 0.95, seed: int = 0,
                  chunk: int = 100) -> dict[str, Interval]:
    """Several statistics on the same resamples of the same examples, ``{name: (statistic, arrays)}``
    → ``{name: Interval}``: one index draw and one count per chunk shared by all (what a table of rates
    with intervals needs, at a fraction of the cost of separate calls; each interval equals what
    :func:`bootstrap` gives with the same seed)."""
    prepared = {name: (statistic, _arrays(arrays)) for name, (statistic, arrays) in statistics.items()}
    sizes = {len(arrays[0]) for _, arrays in prepared.values()}
    if len(sizes) != 1:
        raise ValueError(f"bootstrap_all needs the same examples for every statistic, got sizes {sorted(sizes)}")
    indices = resample_indices(sizes.pop(), resamples, seed)

    def one_chunk(rows: np.ndarray) -> dict[str, np.ndarray]:
        counts = None
        out = {}
        for name, (statistic, arrays) in prepared.items():
            weighted = getattr(statistic, "weighted", None)
            if weighted is not None:
                counts = resample_counts(rows) if counts is None else counts
                out[name] = weighted(counts, *arrays)
            else:
                out[name] = statistic(*(a[rows] for a in arrays))
        return out

    parts = _in_threads(one_chunk, np.array_split(indices, max(1, -(-len(indices) // chunk))))
    return {name: _interval(float(statistic(*(a[None] for a in arrays))[0]), np.concatenate([p[name] for p in parts]), level)
            for name, (statistic, arrays) in prepared.items()}


def _in_threads(work, chunks: list) -> list:
    """``work`` on every chunk, in order, on a thread per core: NumPy releases the GIL in the large
    array operations a chunk consists of, so chunks run in parallel; results do not depend on it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(len(chunks), cores)
    if workers <= 1:
        return [work(c) for c in chunks]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(work, chunks))


def paired_bootstrap(statistic: Statistic, first, second, *, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0, chunk: int = 100) -> Interval:
    """Interval of ``statistic(*first) − statistic(*second)`` where ``first`` and ``second`` are two
    models' arrays on the same examples, resampled with the same indices."""
    first, second = _arrays(first), _arrays(second)
    if len(first[0]) != len(second[0]):
        raise ValueError("a paired bootstrap needs the same examples on both sides")

    def difference(*parts):
        return statistic(*parts[: len(first)]) - statistic(*parts[len(first):])

    if getattr(statistic, "weighted", None) is not None:
        difference.weighted = lambda counts, *parts: (statistic.weighted(counts, *parts[: len(first)])
                                                      - statistic.weighted(counts, *parts[len(first):]))

    return bootstrap(difference, *(first + second), resamples=resamples, level=level, seed=seed, chunk=chunk)


def mean_bounds(values: dict[str, np.ndarray], *, resamples: int, seed: int) -> dict[str, float]:
    """``{name_low, name_high}``: the bootstrap interval of each per-example array's mean, all on the
    same resamples."""
    intervals = bootstrap_all({name: (batched_mean, (v,)) for name, v in values.items()}, resamples=resamples, seed=seed)
    return {k: v for name, interval in intervals.items() for k, v in interval.as_dict(name).items() if k != name}


def with_interval(metrics: dict, key: str, digits: int = 3) -> str:
    """A metric as text: ``value [low, high]`` when the run wrote its interval (:meth:`Interval.as_metrics`),
    else the value alone; "–" when absent or not a number (NaN is written as null)."""
    if key not in metrics or metrics[key] is None:
        return "–"
    text = f"{metrics[key]:.{digits}f}"
    low, high = f"{key}_low", f"{key}_high"  # `in` first: the report-key test records every key read
    if low in metrics and high in metrics and metrics[low] is not None and metrics[high] is not None:
        text += f" [{metrics[low]:.{digits}f}, {metrics[high]:.{digits}f}]"
    return text
