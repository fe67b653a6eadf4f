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
from dataclasses import dataclass
from functools import partial

import numpy as np

from bayesrobust.analysis import ANALYSES, Analysis
from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.metrics.bootstrap import mean_bounds
from bayesrobust.report.figures import PALETTE, new_figure, note_coinciding
from bayesrobust.report.sections import Section, Table
from bayesrobust.seeding import derive_seed

NORMS = {"linf": "Linf", "l2": "L2"}  # config key → the attacks' ``norm``
ROBUSTNESS = Key("robustness/{model}/{norm}/{eps}/{measure}")  # robust_accuracy (+ _low, _high), attack_robust_accuracy
ROBUST = Key("robustness/{model}/{norm}/robust")  # arrays: grid × digits, the cumulative robust indicator


@dataclass(frozen=True)
class RobustnessCurveSection(AttackSpec):
    """``[attack.robustness_curve]``: robust accuracy against ε per norm for every model, with bootstrap
    intervals. ``attack`` and ``params`` as in a run (ε and the norm are set per point); an empty grid
    leaves that norm out."""

    attack: str = "apgd"
    linf: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # MNIST's usual L∞ range; 0 = the clean digits
    l2: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)  # pixels in [0, 1] on 28 × 28: ε 2 is RobustBench-scale
    limit: int = 500  # test digits (stratified, seeded; 0: the suite's limit)
    eot_samples: int = 10  # draws per gradient on stochastic models
    resamples: int = 1000  # bootstrap resamples of the digits


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
        values = {ROBUSTNESS(model=name, norm=norm, eps=eps_key(e), measure="robust_accuracy"): r.astype(float)
                  for e, r in zip(grid, rows)}
        metrics.update({key: float(v.mean()) for key, v in values.items()})
        metrics.update(mean_bounds(values, resamples=section.resamples, seed=seed))
        metrics.update({ROBUSTNESS(model=name, norm=norm, eps=e, measure="attack_robust_accuracy"): float(a.mean())
                        for e, a in single.items()})
        arrays[ROBUST(model=name, norm=norm)] = np.stack(rows)
    return metrics, arrays


def curve_of(metrics: dict, name: str, norm: str, grid) -> tuple[list, list, list]:
    """(robust accuracy, low, high) along ``grid`` from a run's metrics (None where absent)."""
    keys = [ROBUSTNESS(model=name, norm=norm, eps=eps_key(e), measure="robust_accuracy") for e in grid]
    return ([metrics.get(k) for k in keys], [metrics.get(f"{k}_low") for k in keys], [metrics.get(f"{k}_high") for k in keys])


def validate(config, curve: RobustnessCurveSection, where: str) -> None:
    for key in ("eps", "norm"):
        if key in curve.params:
            raise ConfigError(f"{where}.params.{key}: set by the grid (linf = [...], l2 = [...]); remove it")
    if curve.targets != "none":
        raise ConfigError(f"{where}.targets: robust accuracy is untargeted; remove targets")
    if not grids(curve):
        raise ConfigError(f"{where}: give at least one ε grid (linf or l2)")
    for norm, grid in grids(curve).items():
        if any(not e >= 0 for e in grid) or len(set(grid)) < len(grid):
            raise ConfigError(f"{where}.{norm}: ε values must be distinct and >= 0, got {list(grid)}")
        if norm == "linf" and max(grid) > 1:
            raise ConfigError(f"{where}.linf: an L∞ ε above 1 is no constraint on [0, 1] pixels, got {max(grid)}")
    curve.check(where)
    if "l2" in grids(curve) and not takes_norm(curve.attack):
        raise ConfigError(f"{where}: {curve.attack} is L∞ only; use apgd, pgd, square or autoattack for an l2 grid, or set l2 = []")
    for key in ("limit", "eot_samples", "resamples"):
        if getattr(curve, key) < (0 if key == "limit" else 1):
            raise ConfigError(f"{where}.{key} must be >= {0 if key == 'limit' else 1}")


def run(ctx, c: RobustnessCurveSection) -> dict:
    sub = ctx.subset(c.limit)
    s = ctx.section
    for name in ctx.models:
        ctx.keep(f"robustness/{name}", lambda name=name: robustness_curve(
            name, ctx.models[name], sub.images, sub.labels, c, eval_samples=s.eval_samples, batch_size=s.batch_size,
            generator=ctx.gen("robustness", name), seed=derive_seed(ctx.seed, "robustness", name)))
    return {**c.describe(), "grids": {k: list(v) for k, v in grids(c).items()}, "examples": len(sub),
            "eot_samples": c.eot_samples, "resamples": c.resamples}


def robustness_curves(curves: dict[str, dict[str, tuple[list, list, list, list]]]):
    """Robust accuracy against ε, one panel per norm and one line per model, with its bootstrap interval
    as a band: ``curves[norm][model] = (ε, robust accuracy, low, high)``."""
    fig, axes = new_figure(1, len(curves), width=3.2, height=2.6)
    for ax, (norm, models) in zip(axes[0], curves.items()):
        for i, (model, (eps, values, low, high)) in enumerate(models.items()):
            color = PALETTE[i % len(PALETTE)]
            ax.plot(eps, values, color=color, marker="o", markersize=2.5, label=model)
            if all(v is not None for v in (*low, *high)):
                ax.fill_between(eps, low, high, color=color, alpha=0.15, linewidth=0)
        ax.set(xlabel=f"{norm} ε", ylabel="robust accuracy", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        note_coinciding(ax, {model: values for model, (_, values, _, _) in models.items()})
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    return fig





def section(files, c: dict) -> Section | None:
    """Robust accuracy against ε per norm and model: a table with intervals and a figure with bands."""
    metrics = files.metrics
    params = ", ".join(f"{k}={v}" for k, v in c["params"].items())
    text = (f"Robust accuracy of every model against {c['attack']}{f' ({params})' if params else ''} over an ε grid per norm, "
            f"on {c['examples']} test digits, with {c['resamples']}-resample bootstrap intervals (95%). A digit is robust at ε "
            "when it is classified correctly and no attack at that ε or a smaller one of the grid broke it (ε = 0: the clean "
            f"digits). Stochastic models are attacked with EOT over {c['eot_samples']} draws and judged on the MC mean.")
    section = Section("Robust accuracy against ε", text)
    curves: dict[str, dict] = {}
    for norm in (n for n in NORMS if n in c["grids"]):  # L∞ first, whatever order the JSON keeps
        grid, rows = c["grids"][norm], []
        for name in files.meta.models:
            values, low, high = curve_of(metrics, name, norm, grid)
            if None in values:
                continue
            curves.setdefault(NORMS[norm], {})[name] = (grid, values, low, high)
            rows.append([name] + [f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(values, low, high)])
            point = partial(ROBUSTNESS.get, metrics, model=name, norm=norm)
            weaker = [e for e in grid if point(eps=eps_key(e), measure="attack_robust_accuracy", default=0)
                      > point(eps=eps_key(e), measure="robust_accuracy") + 0.01]
            if weaker:
                section.warnings.append(
                    f"{name}, {NORMS[norm]}: the attack at ε {', '.join(f'{e:g}' for e in weaker)} alone leaves more digits "
                    "robust than an attack at a smaller ε did — a weak attack or masked gradients at the larger budget.")
        if rows:
            section.tables.append(Table(f"{NORMS[norm]}: robust accuracy [95% interval]", ["model", *(f"ε {e:g}" for e in grid)], rows))
    if not curves:
        return None
    section.figures.append(("robustness_curve", robustness_curves(curves),
                            "Robust accuracy against ε per norm (bands: 95% bootstrap intervals over the digits)."))
    return section


ANALYSES.add("robustness_curve", Analysis(RobustnessCurveSection, run, section, metric_keys=(ROBUSTNESS,),
                                          validate=validate, order=20,
    tiny={"limit": "8", "linf": "[0.0, 0.1, 0.3]", "l2": "[1.0]", "eot_samples": "2", "resamples": "50",
          "params": "{ steps = 3 }"}))
