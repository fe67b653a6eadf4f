"""Cross-model transfer (Szegedy et al. 2014 Table 2; Bradshaw et al. 2017): adversarial examples
crafted on each model, classified by every model; plus Gaussian-noise control rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import choose_targets, run_batched
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.keys import Key
from bayesrobust.report.figures import heatmap
from bayesrobust.report.sections import Section, Table, fmt
from bayesrobust.seeding import derive_seed

CROSSMODEL = Key("crossmodel/{crafted_on}/{evaluated_by}/{measure}")
MATRIX = Key("crossmodel/{matrix}")  # arrays: error, entropy, mi, log_likelihood, rows, columns, attack


@dataclass(frozen=True)
class CrossModelSection(AttackSpec):
    """Cross-model transfer (Szegedy Table 2 / Bradshaw): crafted on row model, error of column model.
    Its table is ``[attack.crossmodel]`` (``[attack.transfer]`` before "transfer" was kept for transfer testing)."""

    noise_std: tuple[float, ...] = (0.1, 0.3)  # Gaussian-noise control rows


def transfer_matrix(models, x, y, section, *, eval_samples: int, eot_samples: int, batch_size: int, generator, target=None):
    """``target``: target classes for targeted attacks (None: untargeted). Metrics
    ``crossmodel/<crafted on>/<evaluated by>/…`` (``transfer/`` belongs to the transfer-testing suite)."""
    names = list(models)
    attack = build_attack(section.attack, {"eval_samples": eval_samples, "eot_samples": eot_samples}, **dict(section.params))
    crafted = {src: run_batched(attack, models[src], x, y, target=target, batch_size=batch_size, generator=generator,
                                   desc=f"transfer {src}").x_adv
               for src in names}
    noisy = {}
    for std in section.noise_std:
        noise = torch.randn(x.shape, generator=generator) * std
        noisy[f"gaussian std={std:g}"] = (x + noise).clamp(0, 1)
    rows = [*names, *noisy]
    error = np.zeros((len(rows), len(names)))
    entropy = np.zeros_like(error)
    mi = np.zeros_like(error)
    log_lik = np.zeros_like(error)
    metrics = {}
    for i, row in enumerate(rows):
        images = crafted[row] if row in crafted else noisy[row]
        for j, dst in enumerate(names):
            pred = models[dst].predictive(images, eval_samples, generator=generator, batch_size=batch_size)
            error[i, j] = 1.0 - pred.accuracy(y)
            entropy[i, j] = float(pred.entropy.mean())
            mi[i, j] = float(pred.mutual_information.mean())
            log_lik[i, j] = -pred.nll(y)  # of the true label (Bradshaw et al.'s second number)
            for measure, matrix in (("log_likelihood", log_lik), ("error", error), ("entropy", entropy), ("mi", mi)):
                metrics[CROSSMODEL(crafted_on=row, evaluated_by=dst, measure=measure)] = matrix[i, j]
    arrays = {"error": error, "entropy": entropy, "mi": mi, "log_likelihood": log_lik, "rows": np.array(rows),
              "columns": np.array(names), "attack": np.array(f"{section.attack} {dict(section.params)}")}
    return metrics, {MATRIX(matrix=k): v for k, v in arrays.items()}


def validate(config, cfg: CrossModelSection, where: str) -> None:
    cfg.check(where)


def run(ctx, cfg: CrossModelSection) -> dict | None:
    if len(ctx.models) < 2:
        return None
    # "transfer": the seeds the analysis had under its old name, so its numbers stay the same
    target = choose_targets(cfg.targets, ctx.y, derive_seed(ctx.seed, "targets", "transfer"))
    ctx.keep("transfer", lambda: transfer_matrix(ctx.models, ctx.x, ctx.y, cfg, generator=ctx.gen("transfer"), target=target,
                                                 **ctx.common))
    return {"attack": cfg.attack}


def section(files, meta: dict) -> Section:
    arrays = files.arrays
    rows, cols = [str(r) for r in arrays[MATRIX(matrix="rows")]], [str(c) for c in arrays[MATRIX(matrix="columns")]]

    def table(matrix: str, caption: str) -> Table:
        values = arrays[MATRIX(matrix=matrix)]
        return Table(caption, ["crafted on \\ evaluated by", *cols], [[r] + [fmt(v) for v in values[i]] for i, r in enumerate(rows)])

    tables = [table("error", f"Error of each column model on examples crafted on each row model ({arrays[MATRIX(matrix='attack')]})"),
              table("log_likelihood", "Mean log-likelihood of the true label under the evaluating model (log 0.1 = −2.30: 'don't know')"),
              table("mi", "Mean mutual information of the evaluating model")]
    fig = heatmap(arrays[MATRIX(matrix="error")], rows=rows, columns=cols, title="transfer error", xlabel="evaluated by",
                  ylabel="crafted on")
    return Section("Cross-model transfer", "Szegedy et al. Table 2 / Bradshaw et al. layout, with Gaussian-noise control rows.",
                   tables, [("transfer_error", fig, "Transfer error matrix.")])


ANALYSES.add("crossmodel", Analysis(CrossModelSection, run, section, metric_keys=(CROSSMODEL,),
                                    validate=validate, order=70, renamed_from="transfer"))
