"""Lacok (2016) Table 1 layout: error rate and mean confidence on clean, FGSM and sign-noise sets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis, one_per_class
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.keys import Key
from bayesrobust.predictive import Predictive
from bayesrobust.report.figures import image_rows
from bayesrobust.report.sections import Section, Table, fmt

LACOK = Key("lacok/{model}/{row}/{quantity}")  # quantity: error, confidence, entropy, mi
QUANTITIES = ("error", "confidence", "entropy", "mi")


@dataclass(frozen=True)
class LacokSection:
    """Lacok (2016) Table 1: error and confidence on clean / FGSM ε / sign noise ε."""

    fgsm_eps: tuple[float, ...] = (0.10, 0.25)
    noise_eps: tuple[float, ...] = (0.25,)
    unclipped: bool = False  # also Lacok's own protocol: perturbed images are not clipped to [0, 1]


def row_metrics(name: str, row: str, pred: Predictive, y: torch.Tensor) -> dict[str, float]:
    """One row of the table for one model."""
    values = (1.0 - pred.accuracy(y), float(pred.confidence.mean()), float(pred.entropy.mean()),
              float(pred.mutual_information.mean()))
    return {LACOK(model=name, row=row, quantity=q): v for q, v in zip(QUANTITIES, values)}


def lacok_table(models, x, y, section, *, eval_samples: int, eot_samples: int, batch_size: int, generator):
    """Rows ``clean``, ``fgsm eps=…``, ``noise eps=…`` per model: error, confidence, entropy, MI.

    Returns (metrics, arrays): metrics keyed ``lacok/<model>/<row>/<quantity>``; arrays hold one example
    image per row (the Figure 1 strip) for the first model."""
    metrics, arrays = {}, {}
    rows = [("clean", None, {})] + [(f"fgsm eps={e:g}", "fgsm", {"eps": e}) for e in section.fgsm_eps] \
        + [(f"noise eps={e:g}", "sign_noise", {"eps": e}) for e in section.noise_eps]
    for m_index, (name, model) in enumerate(models.items()):
        for row, attack_name, params in rows:
            if attack_name is None:
                pred, images = model.predictive(x, eval_samples, generator=generator, batch_size=batch_size), x
            else:
                attack = build_attack(attack_name, eval_samples=eval_samples, eot_samples=eot_samples, **params)
                result = run_batched(attack, model, x, y, batch_size=batch_size, generator=generator)
                pred, images = result.predictive, result.x_adv
            metrics.update(row_metrics(name, row, pred, y))
            if m_index == 0:
                shown = one_per_class(y)
                arrays[f"lacok/images/{row}"] = images[shown].numpy()
                arrays[f"lacok/predicted/{row}"] = pred.predicted[shown].numpy()
    if section.unclipped:
        for name, model in models.items():
            metrics.update(unclipped_rows(name, model, x, y, section, eval_samples=eval_samples, eot_samples=eot_samples,
                                         generator=generator))
        rows += [(f"{r} unclipped", None, {}) for r, a, _ in rows if a is not None]
    arrays["lacok/rows"] = np.array([r[0] for r in rows])
    arrays["lacok/models"] = np.array(list(models))
    return metrics, arrays


def unclipped_rows(name, model, x, y, section, *, eval_samples: int, eot_samples: int, generator) -> dict[str, float]:
    """Lacok's own protocol: x + ε·sign(∇) and x + ε·r without clipping to [0, 1].

    The images leave the model's validated input domain, so the model is run through
    :meth:`raw_sample_logits`, outside the checked entry points. Every
    dropout mask — of the gradient (``eot_samples``) and of the evaluation — comes from ``generator``."""
    xg = x.clone().requires_grad_(True)
    logp = model.log_prob(xg, eot_samples, generator=generator)
    loss = -logp.gather(1, y.to(logp.device)[:, None]).sum()
    (grad,) = torch.autograd.grad(loss, xg)
    noise = torch.randint(0, 2, x.shape, generator=generator).to(x.dtype) * 2 - 1
    sets = {f"fgsm eps={e:g} unclipped": x + e * grad.sign() for e in section.fgsm_eps}
    sets.update({f"noise eps={e:g} unclipped": x + e * noise for e in section.noise_eps})
    samples = model.draw_count(eval_samples)
    metrics = {}
    for row, images in sets.items():
        with torch.no_grad():
            pred = Predictive.from_logits(model.raw_sample_logits(images.to(model.device), samples, generator).cpu())
        metrics.update(row_metrics(name, row, pred, y))
    return metrics


def run(ctx, cfg: LacokSection) -> dict:
    ctx.keep("lacok", lambda: lacok_table(ctx.models, ctx.x, ctx.y, cfg, generator=ctx.gen("lacok"), **ctx.common))
    return {"rows": [str(r) for r in ctx.arrays["lacok/rows"]], "models": list(ctx.models)}


def section(files, meta: dict) -> Section:
    arrays, metrics = files.arrays, files.metrics
    section = Section("Lacok (2016) Table 1 layout",
                      "Error rate and mean confidence of each model on the original test examples, FGSM adversarial "
                      "examples and random sign noise of the same size (clipped to [0, 1]; 'unclipped' rows follow Lacok's code, "
                      "which leaves the images unclipped), with the model's predictive entropy and mutual information.")
    for model in meta["models"]:
        rows = [[r] + [fmt(LACOK.get(metrics, model=model, row=r, quantity=q)) for q in QUANTITIES] for r in meta["rows"]]
        section.tables.append(Table(model, ["test set", "error rate", "confidence", "entropy", "mi"], rows))
    images = {r: arrays[f"lacok/images/{r}"] for r in meta["rows"] if f"lacok/images/{r}" in arrays}
    predicted = {r: arrays[f"lacok/predicted/{r}"] for r in images}
    section.figures.append(("lacok_figure1", image_rows(images, predicted), "Lacok Figure 1 layout: one row per test set, predicted labels above."))
    return section


ANALYSES.add("lacok", Analysis(LacokSection, run, section, metric_keys=(LACOK,), order=40))
