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

import torch

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched

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
        prefix = f"masking/{name}"
        metrics.update({f"{prefix}/{k}_success": v for k, v in rates.items()})
        tolerance, margin = section.tolerance + ROUNDING, section.square_margin + ROUNDING
        checks = {"a": white >= rates["fgsm"] - tolerance,
                  "b": rates["square"] <= white + margin,
                  "c": rates["unbounded"] >= 1.0 - ROUNDING,
                  "e": all(rates[f"apgd_{b}"] >= rates[f"apgd_{a}"] - tolerance for a, b in zip(steps, steps[1:]))}
        if name != reference:
            pred = model.predictive(transferred, eval_samples, generator=generator, batch_size=batch_size)
            rates["transfer"] = float((pred.predicted != y).float().mean())
            metrics[f"{prefix}/transfer_success"] = rates["transfer"]
            checks["d"] = white >= rates["transfer"] - tolerance
        metrics.update({f"{prefix}/check_{k}": float(v) for k, v in checks.items()})
        metrics[f"{prefix}/suspected"] = float(not all(checks.values()))
    return metrics, {}
