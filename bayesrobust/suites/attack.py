"""The attack suite: configured attack runs on every model plus the paper analyses.

Metrics (key families in ``suites/attack_results.py``): ``adv/<run>/<model>/{success_rate,
success_rate_fresh,error_rate,confidence,entropy,mi,l0,l2,linf,...}`` beside ``adv/clean/<model>/{error_rate,
confidence,entropy,mi}`` on the same attacked examples; on stochastic models also ``adv/<run>@adaptive/<model>/…``
(the adaptive form: EOT and a confidence margin); ``adv/worst_case/<model>/{success_rate,robust_accuracy}`` (an
example counts as broken when any run broke it, as AutoAttack reports robust accuracy). Then every configured
analysis (``analysis/``: each declares its own keys). Arrays go to ``arrays/attack.npz`` and the report's
metadata to ``arrays/attack.json`` (``AttackMeta``); the report draws every figure from them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from bayesrobust.analysis import analyses, one_per_class
from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.attacks.base import choose_targets, run_batched
from bayesrobust.keys import Key
from bayesrobust.seeding import derive_seed, make_generator
from bayesrobust.suites.attack_config import AttackSection, validate_attack
from bayesrobust.suites.attack_results import (
    CLEAN,
    LABELS,
    METRIC_KEYS,
    ORIGINAL,
    PER_EXAMPLE,
    RUN,
    SHOWN,
    WORST_CASE,
    AttackMeta,
)
from bayesrobust.suites.registry import SUITES, Headline, Suite
from bayesrobust.units import Units


def adaptive_form(attack_name: str, params, section) -> dict | None:
    """The adaptive form of a configured attack on a stochastic model: EOT over at least
    ``adaptive_eot_samples`` masks per gradient and, for attacks with a margin, at least
    ``adaptive_kappa`` (C&W, logits) or ``adaptive_margin`` (BIM-A's and JSMA's stop, nats of log-probability) so
    the examples land past the MC mean's boundary, not on it. None when nothing would change (an attack
    without gradients, or one already configured that way)."""
    cls = ATTACKS.get(attack_name)
    if not cls.uses_gradients:
        return None
    params = dict(params)
    form = {**params, "eot_samples": max(int(params.get("eot_samples", section.eot_samples)), section.adaptive_eot_samples)}
    if cls.kappa_unit is not None:
        floor = section.adaptive_kappa if cls.kappa_unit == "logits" else section.adaptive_margin
        form["kappa"] = max(float(params.get("kappa", 0.0)), floor)
    unchanged = form["eot_samples"] == params.get("eot_samples", section.eot_samples) and form.get("kappa") == params.get("kappa")
    return None if unchanged else form


def worst_case(outcomes: list[tuple[torch.Tensor, torch.Tensor]], clean_wrong: torch.Tensor) -> dict[str, float]:
    """The ensemble of every run on one model, as AutoAttack reports it: an example is broken when
    any run that attacked it succeeded. ``outcomes`` holds (row indices into the attacked set, success)
    per run; ``clean_wrong`` marks examples the model already gets wrong. Rates are over the examples
    attacked by at least one run; ``examples_all_runs`` counts those every run attacked."""
    broken = torch.zeros_like(clean_wrong, dtype=torch.bool)
    count = torch.zeros(clean_wrong.shape, dtype=torch.long)
    for index, success in outcomes:
        broken[index] |= success
        count[index] += 1
    hit = count > 0
    return {"success_rate": float(broken[hit].float().mean()),
            "robust_accuracy": float((~(broken | clean_wrong))[hit].float().mean()),
            "examples": float(hit.sum()), "examples_all_runs": float((count == len(outcomes)).sum())}


@dataclass
class AttackContext:
    """What an analysis's ``run`` gets: the models, the data, the suite's settings and the attacked test
    digits, with the suite's seeded generators and resumable units (``units.py``)."""

    run: object  # the RunDir
    models: dict
    data: object
    section: object  # the AttackSection
    seed: int
    units: Units
    test: object  # the attacked test digits (a Dataset)
    metrics: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def x(self) -> torch.Tensor:
        return self.test.images

    @property
    def y(self) -> torch.Tensor:
        return self.test.labels

    @property
    def common(self) -> dict:
        """The suite's judge and batching, as the analyses' functions take them."""
        s = self.section
        return {"eval_samples": s.eval_samples, "eot_samples": s.eot_samples, "batch_size": s.batch_size}

    def gen(self, *names: str) -> torch.Generator:
        return make_generator(derive_seed(self.seed, "attack", *names))

    def model_name(self, configured: str) -> str:
        """The configured model, or the config's first one."""
        return configured or next(iter(self.models))

    def subset(self, limit: int):
        """``limit`` of the attacked digits (stratified, seeded), or all of them for 0."""
        return self.test.head(limit, seed=0) if limit else self.test

    def keep(self, key: str, compute: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
        """Run ``compute`` as the unit ``key`` (or read it back on a resumed run) and keep its results."""
        m, a = self.units(key, compute)
        self.metrics.update(m)
        self.arrays.update(a)
        return m, a

    def attacked(self, unit: str, attack, name: str, xs, ys, target, generator_name: str, desc: str, *,
                 metric: Callable[..., str], per_example: Callable[..., str], shown: Callable[..., str] | None = None) -> dict:
        """One attack on model ``name`` as a unit: its summary under ``metric(measure=…)`` with the time
        taken and the number of digits, per-example uncertainty and success under
        ``per_example(quantity=…)`` and one adversarial digit per class under ``shown(quantity=…)``."""
        def compute():
            start = time.perf_counter()
            result = run_batched(attack, self.models[name], xs, ys, target=target, batch_size=self.section.batch_size,
                                 generator=self.gen(generator_name, name), progress=True, desc=desc)
            m = {metric(measure=k): v for k, v in result.summary().items()}
            m.update({metric(measure="seconds"): time.perf_counter() - start, metric(measure="examples"): float(len(ys))})
            a = {per_example(quantity="entropy"): result.predictive.entropy.numpy(),
                 per_example(quantity="mutual_information"): result.predictive.mutual_information.numpy(),
                 per_example(quantity="success"): result.success.numpy()}
            if shown is not None:
                picked = one_per_class(result.labels)
                a.update({shown(quantity="images"): result.x_adv[picked].numpy(),
                          shown(quantity="predicted"): result.predictive.predicted[picked].numpy()})
            return m, a
        return self.keep(unit, compute)[1]


def run_attack_suite(run, models, data, section, seed: int) -> dict[str, float]:
    """Execute every configured attack run (configured and, on stochastic models, adaptive form) and the
    configured analyses; write arrays/attack.npz + attack.json. Each attack run on one model, each model's
    clean pass and each analysis is a unit (``units.py``): kept as it ends, read back by a resumed run."""
    ctx = AttackContext(run, models, data, section, seed, Units(run, "attack", seed), data.test.head(section.limit, seed=0))
    x, y = ctx.x, ctx.y
    ctx.arrays[LABELS] = y.numpy()
    outcomes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in models}  # for the worst case
    clean_wrong = {}

    def attack_all(run_name: str, attack, name: str, xs, ys, target, index) -> None:
        result = ctx.attacked(f"adv/{run_name}/{name}", attack, name, xs, ys, target, run_name, f"{run_name} on {name}",
                              metric=partial(RUN, run=run_name, model=name),
                              per_example=partial(PER_EXAMPLE, run=run_name, model=name),
                              shown=partial(SHOWN, run=run_name, model=name))
        outcomes[name].append((index, torch.from_numpy(result[PER_EXAMPLE(run=run_name, model=name, quantity="success")])))

    def clean_pass(name: str):
        clean = models[name].predictive(x, section.eval_samples, generator=ctx.gen("clean", name), batch_size=section.batch_size)
        row = partial(PER_EXAMPLE, run="clean", model=name)
        return ({CLEAN(model=name, measure="error_rate"): 1.0 - clean.accuracy(y),
                 CLEAN(model=name, measure="confidence"): float(clean.confidence.mean()),
                 CLEAN(model=name, measure="entropy"): float(clean.entropy.mean()),
                 CLEAN(model=name, measure="mi"): float(clean.mutual_information.mean())},
                {row(quantity="entropy"): clean.entropy.numpy(),
                 row(quantity="mutual_information"): clean.mutual_information.numpy(),
                 row(quantity="wrong"): (clean.predicted != y).numpy()})

    for name in models:
        wrong = ctx.keep(f"clean/{name}", partial(clean_pass, name))[1][PER_EXAMPLE(run="clean", model=name, quantity="wrong")]
        clean_wrong[name] = torch.from_numpy(wrong)

    adaptive_runs: dict[str, dict] = {}
    for run_name, spec in section.runs.items():
        attack = build_attack(spec.attack, {"eval_samples": section.eval_samples, "eot_samples": section.eot_samples},
                              **dict(spec.params))
        index = torch.from_numpy(ctx.test.head_index(spec.limit, seed=0)) if spec.limit else torch.arange(len(y))
        xs, ys = x[index], y[index]
        target = choose_targets(spec.targets, ys, derive_seed(seed, "targets", run_name))
        form = adaptive_form(spec.attack, spec.params, section) if section.adaptive else None
        for name in spec.models or tuple(models):
            attack_all(run_name, attack, name, xs, ys, target, index)
            if form is not None and models[name].draws.random:
                adaptive = build_attack(spec.attack, {"eval_samples": section.eval_samples}, **form)
                attack_all(f"{run_name}@adaptive", adaptive, name, xs, ys, target, index)
                adaptive_runs[f"{run_name}@adaptive"] = {"of": run_name, "params": form}
        ctx.arrays[ORIGINAL(run=run_name, quantity="images")] = xs[one_per_class(ys)].numpy()
        ctx.arrays[ORIGINAL(run=run_name, quantity="labels")] = ys[one_per_class(ys)].numpy()

    for name in models:
        if outcomes[name]:
            ctx.metrics.update({WORST_CASE(model=name, measure=k): v for k, v in worst_case(outcomes[name], clean_wrong[name]).items()})

    reported = {}
    for name, analysis in analyses().items():
        configured = getattr(section, name)
        if configured is not None:
            meta = analysis.run(ctx, configured)
            if meta is not None:
                reported[name] = meta

    run.save_arrays("arrays/attack.npz", **ctx.arrays)
    AttackMeta(models=list(models), runs={n: r.describe() for n, r in section.runs.items()}, adaptive=adaptive_runs,
               examples=len(y), eval_samples=section.eval_samples, eot_samples=section.eot_samples,
               modes={n: m.mode for n, m in models.items()}, draws={n: m.draws.value for n, m in models.items()},
               analyses=reported).write(run)
    return ctx.metrics


SUITES.add("attack", Suite(AttackSection, run_attack_suite, validate_attack, ("attacks", "analyses"),
                           (*METRIC_KEYS, *(k for a in analyses().values() for k in a.metric_keys)),
                           (Headline("robust accuracy (worst attack)", Key("adv/worst_case/{model}/robust_accuracy")),),
                           order=30))
