"""Robust accuracy against ε, per norm and per model, with bootstrap intervals: the curve a robustness
claim is read from (Carlini et al. 2019, §5.3: report accuracy over a range of budgets, not at one ε).

At each ε of a norm's grid the configured attack (APGD-CE by default) attacks every test digit. A digit
counts as robust at ε when the model classifies it correctly and no attack at that ε *or any smaller ε
of the grid* broke it: an adversarial example inside the smaller ball is inside the larger one too, so
the curve never rises with ε. ``attack_robust_accuracy`` is the run at that ε alone; where it lies above
the curve, the attack at the larger budget found less than one at a smaller budget — a sign of a weak
attack or of gradient masking. On a stochastic model the attack averages ``eot_samples`` draws per
gradient and success is the judge's (``attacks/criterion.py``).
"""

from __future__ import annotations

import inspect

import numpy as np

from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.metrics.bootstrap import mean_bounds

NORMS = {"linf": "Linf", "l2": "L2"}  # config key → the attacks' ``norm``


def eps_key(eps: float) -> str:
    """ε as it appears in a metric key: ``0.1``, ``1.5``."""
    return f"{eps:g}"


def takes_norm(attack_name: str) -> bool:
    """Whether the attack has a ``norm`` argument (APGD, PGD, Square, AutoAttack), so it runs in L2 too."""
    return "norm" in inspect.signature(ATTACKS.get(attack_name).__init__).parameters


def grids(section) -> dict[str, tuple[float, ...]]:
    """The configured ε grid of each norm that has one, ascending."""
    return {norm: tuple(sorted(getattr(section, norm))) for norm in NORMS if getattr(section, norm)}


def robustness_curve(name: str, model, x, y, section, *, eval_samples: int, batch_size: int, generator,
                     seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """One model's curves. Metrics ``robustness/<model>/<norm>/<ε>/robust_accuracy`` (with ``_low`` and
    ``_high``, the bootstrap interval over the digits) and ``…/attack_robust_accuracy``; arrays
    ``robustness/<model>/<norm>/robust`` (grid × digits, the cumulative robust indicator)."""
    eot = {"eot_samples": section.eot_samples} if model.draws.random else {}
    clean = model.predictive(x, eval_samples, generator=generator, batch_size=batch_size)
    correct = (clean.predicted == y).numpy()
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    for norm, grid in grids(section).items():
        robust_so_far = correct.copy()
        rows, single = [], {}
        for eps in grid:
            if eps == 0:
                alone = correct
            else:
                params = {**dict(section.params), **eot, "eps": float(eps)}
                if takes_norm(section.attack):
                    params["norm"] = NORMS[norm]
                attack = build_attack(section.attack, eval_samples=eval_samples, **params)
                result = run_batched(attack, model, x, y, batch_size=batch_size, generator=generator, progress=True,
                                     desc=f"{section.attack} {NORMS[norm]} ε {eps:g} on {name}")
                alone = correct & ~result.success.numpy()
            robust_so_far = robust_so_far & alone
            rows.append(robust_so_far.copy())
            single[eps_key(eps)] = alone
        prefix = f"robustness/{name}/{norm}"
        values = {f"{prefix}/{eps_key(e)}/robust_accuracy": r.astype(float) for e, r in zip(grid, rows)}
        metrics.update({key: float(v.mean()) for key, v in values.items()})
        metrics.update(mean_bounds(values, resamples=section.resamples, seed=seed))
        metrics.update({f"{prefix}/{e}/attack_robust_accuracy": float(a.mean()) for e, a in single.items()})
        arrays[f"{prefix}/robust"] = np.stack(rows)
    return metrics, arrays


def curve_of(metrics: dict, name: str, norm: str, grid) -> tuple[list, list, list]:
    """(robust accuracy, low, high) along ``grid`` from a run's metrics (None where absent)."""
    keys = [f"robustness/{name}/{norm}/{eps_key(e)}/robust_accuracy" for e in grid]
    return ([metrics.get(k) for k in keys], [metrics.get(f"{k}_low") for k in keys], [metrics.get(f"{k}_high") for k in keys])
