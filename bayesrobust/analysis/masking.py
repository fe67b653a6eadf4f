"""Gradient-masking checks per model (Carlini et al. 2019, "On evaluating adversarial robustness",
arXiv:1902.06705; Athalye et al. 2018): a model that looks robust to gradient attacks only because its
gradients are useless fails at least one of them.

- (a) the iterative attack (APGD-CE) is at least as strong as the single-step one (FGSM);
- (b) the gradient-free Square is not stronger than the white-box APGD by more than ``square_margin``;
- (c) an unbounded attack (ε = 1: any image) reaches 100% success;
- (d) the white-box attack is at least as strong as transferring the ``reference`` model's APGD examples;
- (e) success does not fall as the steps grow (APGD at each of ``steps``).

(a), (d) and (e) allow ``tolerance`` (sampling noise on ``limit`` digits). On a stochastic model every
gradient attack is the adaptive one (EOT over ``eot_samples`` draws) and every success the judge's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from bayesrobust.analysis import ANALYSES, Analysis, check_model_name
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.report.sections import Section, Table, fmt
from bayesrobust.schema import to_plain

MASKING = Key("masking/{model}/{measure}")  # <attack>_success, check_<a…e>, suspected


@dataclass(frozen=True)
class MaskingSection:
    """``[attack.masking]``: the five gradient-masking checks on ``limit`` test digits at L∞ ``eps``."""

    eps: float = 0.3
    limit: int = 200  # test digits (stratified, seeded; 0: the suite's limit)
    steps: tuple[int, ...] = (10, 100)  # APGD-CE's steps, check (e); the most is the white-box attack of (a), (b), (d)
    queries: int = 1000  # Square's budget, check (b)
    square_margin: float = 0.05
    tolerance: float = 0.01
    eot_samples: int = 10  # draws per gradient on stochastic models
    reference: str = ""  # whose APGD examples are transferred, check (d) (default: the first deterministic model)

ROUNDING = 1e-9  # rates are counts over digits: 0.90 must pass "≥ 0.91 − 0.01", which floats make 0.9000000000000001

CHECKS = {"a": "iterative ≥ single-step", "b": "Square ≤ APGD + margin", "c": "ε = 1 reaches 100%",
          "d": "white-box ≥ transfer", "e": "more steps never weaker"}


def _success(attack_name: str, model, x, y, params: dict, *, eval_samples, batch_size, generator) -> tuple[float, torch.Tensor]:
    attack = build_attack(attack_name, eval_samples=eval_samples, **params)
    result = run_batched(attack, model, x, y, batch_size=batch_size, generator=generator)
    return float(result.success.float().mean()), result.x_adv


def masking_reference(models, section) -> str:
    """Whose examples check (d) transfers: the configured model, else the first deterministic one."""
    return section.reference or next((n for n, m in models.items() if not m.draws.random), next(iter(models)))


def masking_checks(models, x, y, section, *, eval_samples: int, batch_size: int, generator):
    """``masking/<model>/<attack>_success``, ``masking/<model>/check_<a…e>`` (1 passed, 0 failed, absent
    where it does not apply) and ``masking/<model>/suspected`` (1 if any check failed)."""
    metrics: dict[str, float] = {}
    reference = masking_reference(models, section)
    common = {"eval_samples": eval_samples, "batch_size": batch_size, "generator": generator}
    steps = sorted(section.steps)
    transferred = None
    order = [reference, *(n for n in models if n != reference)]  # the reference first: its examples are transferred
    for name in order:
        model = models[name]
        eot = {"eot_samples": section.eot_samples} if model.draws.random else {}
        rates = {"fgsm": _success("fgsm", model, x, y, {"eps": section.eps, **eot}, **common)[0]}
        for s in steps:
            rate, adv = _success("apgd", model, x, y, {"eps": section.eps, "steps": s, **eot}, **common)
            rates[f"apgd_{s}"] = rate
        if name == reference:
            transferred = adv
        white = rates[f"apgd_{steps[-1]}"]
        rates["square"] = _success("square", model, x, y, {"eps": section.eps, "queries": section.queries}, **common)[0]
        rates["unbounded"] = _success("apgd", model, x, y, {"eps": 1.0, "steps": steps[-1], **eot}, **common)[0]
        key = partial(MASKING, model=name)
        metrics.update({key(measure=f"{k}_success"): v for k, v in rates.items()})
        tolerance, margin = section.tolerance + ROUNDING, section.square_margin + ROUNDING
        checks = {"a": white >= rates["fgsm"] - tolerance,
                  "b": rates["square"] <= white + margin,
                  "c": rates["unbounded"] >= 1.0 - ROUNDING,
                  "e": all(rates[f"apgd_{b}"] >= rates[f"apgd_{a}"] - tolerance for a, b in zip(steps, steps[1:]))}
        if name != reference:
            pred = model.predictive(transferred, eval_samples, generator=generator, batch_size=batch_size)
            rates["transfer"] = float((pred.predicted != y).float().mean())
            metrics[key(measure="transfer_success")] = rates["transfer"]
            checks["d"] = white >= rates["transfer"] - tolerance
        metrics.update({key(measure=f"check_{k}"): float(v) for k, v in checks.items()})
        metrics[key(measure="suspected")] = float(not all(checks.values()))
    return metrics, {}


def validate(config, m: MaskingSection, where: str) -> None:
    if not m.steps or any(int(s) < 1 for s in m.steps) or m.queries < 1 or m.eot_samples < 1 or m.limit < 0:
        raise ConfigError(f"{where}: steps (one or more), queries and eot_samples must be >= 1, limit >= 0")
    if not 0 < m.eps <= 1 or m.square_margin < 0 or m.tolerance < 0:
        raise ConfigError(f"{where}: eps must be in (0, 1], square_margin and tolerance >= 0")
    check_model_name(config, m, "reference", where)


def run(ctx, m: MaskingSection) -> dict:
    sub = ctx.subset(m.limit)
    ctx.keep("masking", lambda: masking_checks(ctx.models, sub.images, sub.labels, m, eval_samples=ctx.section.eval_samples,
                                               batch_size=ctx.section.batch_size, generator=ctx.gen("masking")))
    return {**to_plain(m), "reference": masking_reference(ctx.models, m), "examples": len(sub)}





def section(files, m: dict) -> Section:
    """The gradient-masking checks per model: each attack's success, each check passed or failed, and
    a flag where any failed."""
    metrics = files.metrics
    steps = sorted(m["steps"])
    columns = ["fgsm", *(f"apgd_{s}" for s in steps), "square", "unbounded", "transfer"]
    rows, flagged = [], []
    for name in files.meta.models:
        value = partial(MASKING.get, metrics, model=name)
        checks = ["–" if c == "d" and name == m["reference"] else "✓" if value(measure=f"check_{c}") else "✗" for c in CHECKS]
        suspected = bool(value(measure="suspected"))
        if suspected:
            flagged.append(name)
        applies = [c for c in columns if not (c == "transfer" and name == m["reference"])]  # (d) is not the reference's
        rows.append([name] + [fmt(value(measure=f"{c}_success"), 3) if c in applies else "–" for c in columns] + checks
                    + ["masking suspected" if suspected else "no"])
    text = (f"Carlini et al. (2019)'s sanity checks at L∞ ε {m['eps']:g} on {m['examples']} test digits (success rates): "
            f"(a) APGD-CE at {steps[-1]} steps at least FGSM's, (b) Square ({m['queries']} queries, gradient-free) not above "
            f"APGD by more than {m['square_margin']:g}, (c) ε = 1 breaks every digit, (d) APGD at least the transfer of "
            f"{m['reference']}'s APGD examples, (e) APGD never weaker with more steps ({', '.join(map(str, steps))}); "
            f"(a), (d), (e) within {m['tolerance']:g}. Stochastic models are attacked with EOT over {m['eot_samples']} draws.")
    section = Section("Gradient-masking checks", text, [Table(
        "Success per attack and checks per model", ["model", "FGSM", *(f"APGD {s}" for s in steps), "Square", "ε = 1",
                                                    "transfer", *(f"({c}) {d}" for c, d in CHECKS.items()), "flag"], rows)])
    section.warnings.extend(f"Masking suspected for {n}: its robustness to gradient attacks is not evidence of robustness."
                            for n in flagged)
    return section


ANALYSES.add("masking", Analysis(MaskingSection, run, section, metric_keys=(MASKING,), validate=validate, order=10,
    tiny={"limit": "8", "steps": "[2, 3]", "queries": "10", "eot_samples": "2"}))
