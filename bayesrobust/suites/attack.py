"""The attack suite: configured attack runs on every model plus the paper analyses.

Metrics: ``adv/<run>/<model>/{success_rate,error_rate,confidence,entropy,mi,l0,l2,linf,...}`` beside
``adv/clean/<model>/{error_rate,confidence,entropy,mi}`` on the same attacked examples, and the
analyses' own groups (``lacok/``, ``papernot/``, ``sweep/``, ``transfer/``, ``choi/``). Arrays go to
``arrays/attack.npz``; the report draws every figure from them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bayesrobust.analysis import one_per_class
from bayesrobust.analysis.lacok import lacok_table
from bayesrobust.analysis.papernot import papernot_analysis
from bayesrobust.analysis.sweep import logit_sweep
from bayesrobust.analysis.transfer import transfer_matrix
from bayesrobust.analysis.triptych import triptych
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.seeding import derive_seed, make_generator


def choose_targets(mode: str, y: torch.Tensor, seed: int) -> torch.Tensor | None:
    if mode == "none":
        return None
    if mode == "next":
        return (y + 1) % 10
    shift = torch.randint(1, 10, y.shape, generator=make_generator(seed))
    return (y + shift) % 10


def run_attack_suite(run, models, data, section, seed: int) -> dict[str, float]:
    """Execute every configured attack run and analysis; write arrays/attack.npz + attack.json."""
    test = data.test.head(section.limit, seed=0)
    x, y = test.images, test.labels
    common = {"eval_samples": section.eval_samples, "eot_samples": section.eot_samples, "batch_size": section.batch_size}
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {"attacked/labels": y.numpy()}
    first = next(iter(models))

    def gen(*names: str) -> torch.Generator:
        return make_generator(derive_seed(seed, "attack", *names))

    for name, model in models.items():
        clean = model.predictive(x, section.eval_samples, generator=gen("clean", name), batch_size=section.batch_size)
        metrics.update({
            f"adv/clean/{name}/error_rate": 1.0 - clean.accuracy(y),
            f"adv/clean/{name}/confidence": float(clean.confidence.mean()),
            f"adv/clean/{name}/entropy": float(clean.entropy.mean()),
            f"adv/clean/{name}/mi": float(clean.mutual_information.mean()),
        })
        arrays[f"clean/{name}/entropy"] = clean.entropy.numpy()
        arrays[f"clean/{name}/mutual_information"] = clean.mutual_information.numpy()

    for run_name, spec in section.runs.items():
        attack = build_attack(spec.attack, eval_samples=section.eval_samples, eot_samples=section.eot_samples,
                              **dict(spec.params))
        subset = test.head(spec.limit, seed=0) if spec.limit else test
        xs, ys = subset.images, subset.labels
        target = choose_targets(spec.targets, ys, derive_seed(seed, "targets", run_name))
        for name in spec.models or tuple(models):
            start = time.perf_counter()
            result = run_batched(attack, models[name], xs, ys, target=target, batch_size=section.batch_size,
                                 generator=gen(run_name, name), progress=True, desc=f"{run_name} on {name}")
            seconds = time.perf_counter() - start
            prefix = f"adv/{run_name}/{name}"
            metrics.update({f"{prefix}/{k}": v for k, v in result.summary().items()})
            metrics[f"{prefix}/seconds"] = seconds
            metrics[f"{prefix}/examples"] = float(len(ys))
            arrays[f"adv/{run_name}/{name}/entropy"] = result.predictive.entropy.numpy()
            arrays[f"adv/{run_name}/{name}/mutual_information"] = result.predictive.mutual_information.numpy()
            picked = one_per_class(ys)
            arrays[f"adv/{run_name}/{name}/examples"] = result.x_adv[picked].numpy()
            arrays[f"adv/{run_name}/{name}/predicted"] = result.predictive.predicted[picked].numpy()
        arrays[f"adv/{run_name}/original"] = xs[one_per_class(ys)].numpy()
        arrays[f"adv/{run_name}/original_labels"] = ys[one_per_class(ys)].numpy()

    if section.lacok is not None:
        m, a = lacok_table(models, x, y, section.lacok, generator=gen("lacok"), **common)
        metrics.update(m)
        arrays.update(a)
    if section.papernot is not None:
        name = section.papernot.model or first
        m, a = papernot_analysis(models[name], x, y, section.papernot, generator=gen("papernot"), **common)
        metrics.update(m)
        arrays.update(a)
    if section.sweep is not None:
        name = section.sweep.model or first
        m, a = logit_sweep(models[name], x, y, section.sweep, eot_samples=section.eot_samples, generator=gen("sweep"))
        metrics.update(m)
        arrays.update(a)
    if section.transfer is not None and len(models) > 1:
        target = choose_targets(section.transfer.targets, y, derive_seed(seed, "targets", "transfer"))
        m, a = transfer_matrix(models, x, y, section.transfer, generator=gen("transfer"), target=target, **common)
        metrics.update(m)
        arrays.update(a)
    if section.triptych is not None:
        name = section.triptych.model or first
        m, a = triptych(models[name], x, y, section.triptych, eval_samples=section.eval_samples,
                        eot_samples=section.eot_samples, generator=gen("triptych"))
        metrics.update(m)
        arrays.update(a)

    run.save_arrays("arrays/attack.npz", **arrays)
    run.write_json("arrays/attack.json", {
        "models": list(models), "runs": {n: {"attack": r.attack, "params": dict(r.params), "targets": r.targets}
                                         for n, r in section.runs.items()},
        "examples": len(y), "eval_samples": section.eval_samples, "eot_samples": section.eot_samples,
        "modes": {n: m.mode for n, m in models.items()},
        "papernot_model": (section.papernot.model or first) if section.papernot else None,
        "papernot_space": section.papernot.space if section.papernot else None,
        "sweep_model": (section.sweep.model or first) if section.sweep else None,
        "triptych_model": (section.triptych.model or first) if section.triptych else None,
    })
    return metrics
