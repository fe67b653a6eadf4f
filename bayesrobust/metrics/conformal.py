"""Split conformal prediction sets for classifiers (Vovk et al. 2005; Angelopoulos & Bates 2021).

A conformity score ``s(x, k)`` for every candidate class; the threshold ``q̂`` is the
⌈(n + 1)(1 − α)⌉-th smallest score of the true classes on ``n`` calibration examples; the set of ``x`` is
``{k : s(x, k) ≤ q̂}``. For exchangeable calibration and test examples the true class is in the set with
probability at least 1 − α (and, with continuous scores, at most 1 − α + 1/(n + 1)). Empty sets are
possible and count as misses. The scores:

- ``lac`` (least ambiguous, also THR; Sadinle et al. 2019): ``1 − p_k``.
- ``aps`` (adaptive prediction sets; Romano et al. 2020): the probability mass of the classes more
  probable than ``k`` plus ``u · p_k``, with ``u`` uniform on [0, 1] per example (``u = 1``: the
  deterministic form, ``k`` counted whole). The randomisation matters for confident networks: without
  it the true class's score of a digit classified at p = 0.9999 is ≈ 1 for nearly every digit, q̂
  saturates at 1 and the sets fill with every class whose cumulative mass rounds to 1.
- ``raps`` (regularised APS; Angelopoulos et al. 2021): APS + ``lam`` · max(0, rank(k) − ``k_reg``), rank 1
  for the most probable class: large sets pay for every class beyond the ``k_reg``-th.
"""

from __future__ import annotations

import numpy as np

METHODS = ("lac", "aps", "raps")


def class_scores(probs: np.ndarray, method: str, *, lam: float = 0.01, k_reg: int = 5,
                 u: np.ndarray | None = None) -> np.ndarray:
    """``(N, C)``: the conformity score of every candidate class (lower = more conforming); ``u`` ``(N,)``
    in [0, 1] randomises APS and RAPS (None: 1, the deterministic form)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be (N, C), got shape {p.shape}")
    if method == "lac":
        return 1.0 - p
    if method not in METHODS:
        raise ValueError(f"unknown conformal method {method!r}; known: {', '.join(METHODS)}")
    order = np.argsort(-p, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(p, order, 1), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(p.shape[1])[None].repeat(len(p), 0), 1)  # 0 for the most probable
    scores = np.take_along_axis(cumulative, rank, 1)
    if u is not None:  # only a share u of the candidate's own mass
        scores = scores - (1.0 - np.asarray(u, dtype=np.float64))[:, None] * p
    if method == "raps":
        scores = scores + lam * np.maximum(0, rank + 1 - k_reg)
    return scores


def conformal_threshold(true_scores: np.ndarray, alpha: float) -> float:
    """``q̂``: the ⌈(n + 1)(1 − α)⌉-th smallest of the ``n`` calibration scores (∞ when that exceeds n:
    too few examples for 1 − α, every class is in every set)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    s = np.sort(np.asarray(true_scores, dtype=np.float64))
    k = int(np.ceil((len(s) + 1) * (1.0 - alpha)))
    return float("inf") if k > len(s) else float(s[k - 1])


def uniforms(n: int, seed: int) -> np.ndarray:
    """The seeded ``u`` of :func:`class_scores` for ``n`` examples."""
    return np.random.default_rng(seed).random(n)


def calibrate(probs: np.ndarray, labels: np.ndarray, method: str, alpha: float, **params) -> float:
    """``q̂`` of ``method`` from calibration probabilities ``(N, C)`` and their labels."""
    scores = class_scores(probs, method, **params)
    return conformal_threshold(scores[np.arange(len(scores)), np.asarray(labels)], alpha)


def prediction_sets(probs: np.ndarray, threshold: float, method: str, **params) -> np.ndarray:
    """``(N, C)`` boolean: class ``k`` is in example ``i``'s set."""
    return class_scores(probs, method, **params) <= threshold


def covered(sets: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)``: whether each example's set holds its label."""
    return sets[np.arange(len(sets)), np.asarray(labels)]
