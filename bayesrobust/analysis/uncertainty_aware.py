"""Grosse et al. (2018)'s question, on every model: within the attack's budget, is there an adversarial
example that is misclassified, confident and no more uncertain than most clean digits? The cap is a
quantile of the model's mutual information (or entropy) on clean *validation* digits, never the test split."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from bayesrobust.analysis import ANALYSES, Analysis
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import choose_targets
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.report.sections import Section, Table, fmt
from bayesrobust.seeding import derive_seed

HCLU = Key("hclu/{model}/{measure}")  # the attack's summary, and "cap"
PER_EXAMPLE = Key("hclu/{model}/per_example/{quantity}")  # arrays


@dataclass(frozen=True)
class UncertaintyAwareSection(AttackSpec):
    """Grosse et al.'s question: is there, within the budget, an adversarial example that is
    misclassified, confident (≥ ``confidence``) and no more uncertain than ``quantile`` of the
    model's clean validation digits? Run on every model."""

    attack: str = "bim"
    confidence: float = 0.9  # τ on the MC-mean confidence of the adversarial class
    quantile: float = 0.95  # the uncertainty cap: this quantile of the model's clean validation values
    uncertainty: str = "mi"  # mi | entropy
    eot_samples: int = 10  # masks per gradient (the uncertainty penalty needs several)
    uncertainty_weight: float = 10.0
    limit: int = 0  # 0: the suite's limit


def validate(config, u: UncertaintyAwareSection, where: str) -> None:
    if not 0.0 < u.confidence <= 1.0 or not 0.0 < u.quantile <= 1.0:
        raise ConfigError(f"{where}: confidence and quantile must be in (0, 1]")
    if u.uncertainty not in ("mi", "entropy"):
        raise ConfigError(f"{where}.uncertainty must be mi or entropy, got {u.uncertainty!r}")
    if u.eot_samples < 1:
        raise ConfigError(f"{where}.eot_samples must be >= 1")
    u.check(where)


def uncertainty_caps(models, reference, u: UncertaintyAwareSection, *, eval_samples: int, batch_size: int, gen) -> dict[str, float]:
    """Each model's cap: the configured quantile of its mutual information (or entropy) on ``reference``."""
    caps = {}
    for name, model in models.items():
        pred = model.predictive(reference.images, eval_samples, generator=gen("uncertainty-cap", name), batch_size=batch_size)
        values = pred.mutual_information if u.uncertainty == "mi" else pred.entropy
        caps[name] = float(torch.quantile(values.double(), u.quantile))
    return caps


def run(ctx, u: UncertaintyAwareSection) -> dict:
    s = ctx.section
    reference = ctx.data.val if ctx.data.val is not None else ctx.data.train
    caps, _ = ctx.units("hclu/caps", lambda: (uncertainty_caps(ctx.models, reference, u, eval_samples=s.eval_samples,
                                                               batch_size=s.batch_size, gen=ctx.gen), {}))
    subset = ctx.subset(u.limit)
    target = choose_targets(u.targets, subset.labels, derive_seed(ctx.seed, "targets", "uncertainty_aware"))
    for name in ctx.models:
        attack = build_attack(u.attack, **{**dict(u.params), "eval_samples": s.eval_samples, "eot_samples": u.eot_samples,
                                           "min_confidence": u.confidence, "max_uncertainty": caps[name],
                                           "uncertainty": u.uncertainty, "uncertainty_weight": u.uncertainty_weight})
        ctx.attacked(f"hclu/{name}", attack, name, subset.images, subset.labels, target, "uncertainty_aware",
                     f"uncertainty-aware on {name}", metric=partial(HCLU, model=name),
                     per_example=partial(PER_EXAMPLE, model=name))
        ctx.metrics[HCLU(model=name, measure="cap")] = caps[name]
    return {"attack": u.attack, "params": dict(u.params), "confidence": u.confidence, "quantile": u.quantile,
            "uncertainty": u.uncertainty, "eot_samples": u.eot_samples,
            "reference": "validation" if ctx.data.val is not None else "train"}


def section(files, u: dict) -> Section | None:
    metrics = files.metrics
    measure = "mutual information" if u["uncertainty"] == "mi" else "predictive entropy"
    text = (f"Does uncertainty detect attacks? For each digit, {u['attack']} ({', '.join(f'{k}={v}' for k, v in u['params'].items())}; "
            f"{u['eot_samples']} masks per gradient) searches for an example that is misclassified, has MC-mean confidence ≥ "
            f"{u['confidence']} and {measure} no higher than the {u['quantile']:.0%} quantile of the model's values on clean "
            f"{u['reference']} digits (the cap), with a penalty on the excess {measure} in its objective (Grosse et al. 2018). "
            "'success' is the fraction of digits for which such an example was found within the budget: an uncertainty "
            "threshold at the cap would miss every one of them while flagging 5% of clean digits.")
    columns = (("cap", 4), ("success_rate", 4), ("success_rate_fresh", 4), ("confidence", 4), ("mi", 4), ("entropy", 4),
               ("l2_success", 4), ("linf_success", 4), ("seconds", 1))
    rows = [[name] + [fmt(HCLU.get(metrics, model=name, measure=c), digits) for c, digits in columns]
            for name in files.meta.models if HCLU(model=name, measure="success_rate") in metrics]
    return Section("High-confidence, low-uncertainty adversarial examples", text,
                   [Table(f"Uncertainty-aware goal (cap on {measure}, nats)",
                          ["model", "cap", "success", "success (fresh draws)", "confidence", "mi", "entropy",
                           "L2 (successful)", "L∞ (successful)", "seconds"], rows)])


ANALYSES.add("uncertainty_aware", Analysis(UncertaintyAwareSection, run, section, metric_keys=(HCLU,),
                                           validate=validate, order=30,
    tiny={"limit": "10", "eot_samples": "2"}))
