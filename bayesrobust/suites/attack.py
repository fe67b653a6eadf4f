"""The attack suite: configured attack runs on every model plus the paper analyses.

Metrics: ``adv/<run>/<model>/{success_rate,success_rate_fresh,error_rate,confidence,entropy,mi,l0,l2,
linf,...}`` beside ``adv/clean/<model>/{error_rate,confidence,entropy,mi}`` on the same attacked
examples; on stochastic models also ``adv/<run>@adaptive/<model>/…`` (the adaptive form: EOT and a
confidence margin); ``adv/worst_case/<model>/{success_rate,robust_accuracy}`` (an example counts as
broken when any run broke it, as AutoAttack reports robust accuracy); ``hclu/<model>/…`` (the
uncertainty-aware goal of Grosse et al.); and the analyses' own groups, each carrying the model
(``lacok/<model>/``, ``papernot/<model>/``, ``sweep/``, ``crossmodel/<crafted on>/<evaluated by>/``,
``choi/<model>/``, ``kos/<vae>/``, ``masking/<model>/``: the gradient-masking checks of ``analysis/masking.py``,
``robustness/<model>/<norm>/<ε>/``: robust accuracy against ε of ``analysis/robustness_curve.py``).
Arrays go to ``arrays/attack.npz``; the report draws every
figure from them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bayesrobust.analysis import one_per_class
from bayesrobust.analysis.kos import kos_analysis
from bayesrobust.analysis.lacok import lacok_table
from bayesrobust.analysis.masking import masking_checks, masking_reference
from bayesrobust.analysis.papernot import papernot_analysis
from bayesrobust.analysis.robustness_curve import grids, robustness_curve
from bayesrobust.analysis.sweep import logit_sweep
from bayesrobust.analysis.transfer import transfer_matrix
from bayesrobust.analysis.triptych import triptych
from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.attacks.base import choose_targets, run_batched
from bayesrobust.models.base import Reconstructs
from bayesrobust.schema import to_plain
from bayesrobust.seeding import derive_seed, make_generator
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


def uncertainty_caps(models, data, section, gen) -> dict[str, float]:
    """Each model's cap for the uncertainty-aware goal: the configured quantile of its mutual
    information (or entropy) on clean validation digits — never the test split."""
    u = section.uncertainty_aware
    reference = data.val if data.val is not None else data.train
    caps = {}
    for name, model in models.items():
        pred = model.predictive(reference.images, section.eval_samples, generator=gen("uncertainty-cap", name),
                                batch_size=section.batch_size)
        values = pred.mutual_information if u.uncertainty == "mi" else pred.entropy
        caps[name] = float(torch.quantile(values.double(), u.quantile))
    return caps


def run_attack_suite(run, models, data, section, seed: int) -> dict[str, float]:
    """Execute every configured attack run (configured and, on stochastic models, adaptive form), the
    uncertainty-aware goal and the analyses; write arrays/attack.npz + attack.json. Each attack run on one
    model, each model's clean pass and each analysis is a unit (``units.py``): kept as it ends, read back
    by a resumed run."""
    test = data.test.head(section.limit, seed=0)
    x, y = test.images, test.labels
    common = {"eval_samples": section.eval_samples, "eot_samples": section.eot_samples, "batch_size": section.batch_size}
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {"attacked/labels": y.numpy()}
    first = next(iter(models))
    outcomes: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in models}  # for the worst case
    clean_wrong = {}
    units = Units(run, "attack", seed)

    def gen(*names: str) -> torch.Generator:
        return make_generator(derive_seed(seed, "attack", *names))

    def keep(key: str, compute) -> tuple[dict, dict]:
        m, a = units(key, compute)
        metrics.update(m)
        arrays.update(a)
        return m, a

    def attacked(prefix: str, attack, name: str, xs, ys, target, generator_name: str, desc: str) -> dict:
        def compute():
            start = time.perf_counter()
            result = run_batched(attack, models[name], xs, ys, target=target, batch_size=section.batch_size,
                                 generator=gen(generator_name, name), progress=True, desc=desc)
            picked = one_per_class(result.labels)
            m = {f"{prefix}/{k}": v for k, v in result.summary().items()}
            m.update({f"{prefix}/seconds": time.perf_counter() - start, f"{prefix}/examples": float(len(ys))})
            return m, {f"{prefix}/entropy": result.predictive.entropy.numpy(),
                       f"{prefix}/mutual_information": result.predictive.mutual_information.numpy(),
                       f"{prefix}/success": result.success.numpy(),
                       f"{prefix}/examples": result.x_adv[picked].numpy(),
                       f"{prefix}/predicted": result.predictive.predicted[picked].numpy()}
        return keep(prefix, compute)[1]

    def attack_all(run_name: str, attack, name: str, xs, ys, target, index) -> None:
        prefix = f"adv/{run_name}/{name}"
        result = attacked(prefix, attack, name, xs, ys, target, run_name, f"{run_name} on {name}")
        outcomes[name].append((index, torch.from_numpy(result[f"{prefix}/success"])))

    def clean_pass(name: str):
        clean = models[name].predictive(x, section.eval_samples, generator=gen("clean", name), batch_size=section.batch_size)
        return ({f"adv/clean/{name}/error_rate": 1.0 - clean.accuracy(y),
                 f"adv/clean/{name}/confidence": float(clean.confidence.mean()),
                 f"adv/clean/{name}/entropy": float(clean.entropy.mean()),
                 f"adv/clean/{name}/mi": float(clean.mutual_information.mean())},
                {f"clean/{name}/entropy": clean.entropy.numpy(),
                 f"clean/{name}/mutual_information": clean.mutual_information.numpy(),
                 f"clean/{name}/wrong": (clean.predicted != y).numpy()})

    for name in models:
        clean_wrong[name] = torch.from_numpy(keep(f"clean/{name}", lambda name=name: clean_pass(name))[1][f"clean/{name}/wrong"])

    adaptive_runs: dict[str, dict] = {}
    for run_name, spec in section.runs.items():
        attack = build_attack(spec.attack, {"eval_samples": section.eval_samples, "eot_samples": section.eot_samples},
                              **dict(spec.params))
        index = torch.from_numpy(test.head_index(spec.limit, seed=0)) if spec.limit else torch.arange(len(y))
        xs, ys = x[index], y[index]
        target = choose_targets(spec.targets, ys, derive_seed(seed, "targets", run_name))
        form = adaptive_form(spec.attack, spec.params, section) if section.adaptive else None
        for name in spec.models or tuple(models):
            attack_all(run_name, attack, name, xs, ys, target, index)
            if form is not None and models[name].draws.random:
                adaptive = build_attack(spec.attack, {"eval_samples": section.eval_samples}, **form)
                attack_all(f"{run_name}@adaptive", adaptive, name, xs, ys, target, index)
                adaptive_runs[f"{run_name}@adaptive"] = {"of": run_name, "params": form}
        arrays[f"adv/{run_name}/original"] = xs[one_per_class(ys)].numpy()
        arrays[f"adv/{run_name}/original_labels"] = ys[one_per_class(ys)].numpy()

    for name in models:
        if outcomes[name]:
            metrics.update({f"adv/worst_case/{name}/{k}": v for k, v in worst_case(outcomes[name], clean_wrong[name]).items()})

    hclu_meta = None
    if section.uncertainty_aware is not None:
        u = section.uncertainty_aware
        caps, _ = units("hclu/caps", lambda: (uncertainty_caps(models, data, section, gen), {}))
        subset = test.head(u.limit, seed=0) if u.limit else test
        target = choose_targets(u.targets, subset.labels, derive_seed(seed, "targets", "uncertainty_aware"))
        for name in models:
            attack = build_attack(u.attack, **{**dict(u.params), "eval_samples": section.eval_samples,
                                               "eot_samples": u.eot_samples, "min_confidence": u.confidence,
                                               "max_uncertainty": caps[name], "uncertainty": u.uncertainty,
                                               "uncertainty_weight": u.uncertainty_weight})
            attacked(f"hclu/{name}", attack, name, subset.images, subset.labels, target, "uncertainty_aware",
                     f"uncertainty-aware on {name}")
            metrics[f"hclu/{name}/cap"] = caps[name]
        hclu_meta = {"attack": u.attack, "params": dict(u.params), "confidence": u.confidence, "quantile": u.quantile,
                     "uncertainty": u.uncertainty, "eot_samples": u.eot_samples,
                     "reference": "validation" if data.val is not None else "train"}

    if section.lacok is not None:
        keep("lacok", lambda: lacok_table(models, x, y, section.lacok, generator=gen("lacok"), **common))
    if section.papernot is not None:
        name = section.papernot.model or first
        keep("papernot", lambda: papernot_analysis(models[name], x, y, section.papernot, name=name, generator=gen("papernot"),
                                                   **common))
    if section.sweep is not None:
        name = section.sweep.model or first
        keep("sweep", lambda: logit_sweep(models[name], x, y, section.sweep, eot_samples=section.eot_samples,
                                          generator=gen("sweep")))
    if section.transfer is not None and len(models) > 1:
        target = choose_targets(section.transfer.targets, y, derive_seed(seed, "targets", "transfer"))
        keep("transfer", lambda: transfer_matrix(models, x, y, section.transfer, generator=gen("transfer"), target=target,
                                                 **common))
    if section.triptych is not None:
        name = section.triptych.model or first
        keep("triptych", lambda: triptych(models[name], x, y, section.triptych, name=name, eval_samples=section.eval_samples,
                                          eot_samples=section.eot_samples, generator=gen("triptych")))
    kos_model = None
    if section.kos is not None:
        kos_model = section.kos.model or next(n for n, m in models.items() if isinstance(m, Reconstructs))
        judge = models[section.kos.judge] if section.kos.judge else None
        keep("kos", lambda: kos_analysis(models[kos_model], x, y, section.kos, name=kos_model, judge=judge, generator=gen("kos"),
                                         **common))

    masking_meta = None
    if section.masking is not None:
        m = section.masking
        sub = test.head(m.limit, seed=0) if m.limit else test
        keep("masking", lambda: masking_checks(models, sub.images, sub.labels, m, eval_samples=section.eval_samples,
                                               batch_size=section.batch_size, generator=gen("masking")))
        masking_meta = {**to_plain(m), "reference": masking_reference(models, m), "examples": len(sub)}

    curve_meta = None
    if section.robustness_curve is not None:
        c = section.robustness_curve
        sub = test.head(c.limit, seed=0) if c.limit else test
        for name in models:
            keep(f"robustness/{name}", lambda name=name: robustness_curve(
                name, models[name], sub.images, sub.labels, c, eval_samples=section.eval_samples, batch_size=section.batch_size,
                generator=gen("robustness", name), seed=derive_seed(seed, "robustness", name)))
        curve_meta = {**c.describe(), "grids": {k: list(v) for k, v in grids(c).items()}, "examples": len(sub),
                      "eot_samples": c.eot_samples, "resamples": c.resamples}

    run.save_arrays("arrays/attack.npz", **arrays)
    run.write_json("arrays/attack.json", {
        "models": list(models), "runs": {n: r.describe() for n, r in section.runs.items()},
        "adaptive": adaptive_runs, "uncertainty_aware": hclu_meta,
        "examples": len(y), "eval_samples": section.eval_samples, "eot_samples": section.eot_samples,
        "modes": {n: m.mode for n, m in models.items()},
        "draws": {n: m.draws.value for n, m in models.items()},
        "papernot_model": (section.papernot.model or first) if section.papernot else None,
        "papernot_space": section.papernot.space if section.papernot else None,
        "sweep_model": (section.sweep.model or first) if section.sweep else None,
        "triptych_model": (section.triptych.model or first) if section.triptych else None,
        "kos": None if section.kos is None else {"model": kos_model, "judge": section.kos.judge, "losses": list(section.kos.losses),
                                                 "lams": {k: list(section.kos.lams_of(k)) for k in section.kos.losses}},
        "masking": masking_meta,
        "robustness_curve": curve_meta,
    })
    return metrics
