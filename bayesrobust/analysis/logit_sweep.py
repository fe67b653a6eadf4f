"""Goodfellow et al. (2015) Figure 4: the logits along one fast-gradient-sign direction. Its table is
``[attack.logit_sweep]`` (``[attack.sweep]`` until the hyper-parameter sweeps took that word)."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.patches
import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis, check_model_name
from bayesrobust.keys import Key
from bayesrobust.report.figures import new_figure
from bayesrobust.report.sections import Section

LOGIT_SWEEP = Key("logit_sweep/{measure}")  # metrics: label; arrays: eps, logits, images, label


@dataclass(frozen=True)
class LogitSweepSection:
    """Goodfellow et al. Figure 4: logits along x + ε·sign(∇ₓ CE) for ε in [−eps_max, eps_max]."""

    model: str = ""
    index: int = 0  # which attacked test example
    eps_max: float = 1.0
    steps: int = 41
    clip: bool = False  # the paper's inputs leave [0, 1] (rubbish-class regime)


def logit_sweep(model, x: torch.Tensor, y: torch.Tensor, section, *, eot_samples: int, generator):
    """Logits of all classes at x + ε·sign(∇ₓ CE(x, y)) for ε on a grid in [−eps_max, eps_max].

    The direction is computed once at x (as in the paper). Unless ``clip`` is set the inputs leave
    [0, 1] as in the paper's rubbish-class regime; the model is then evaluated through :meth:`raw_logits`, outside the validated public entry points."""
    x0, y0 = x[section.index: section.index + 1], y[section.index: section.index + 1]
    xg = x0.clone().requires_grad_(True)
    loss = -model.log_prob(xg, eot_samples, generator=generator)[0, y0[0]]
    (grad,) = torch.autograd.grad(loss, xg)
    eps = np.linspace(-section.eps_max, section.eps_max, section.steps)
    batch = x0 + torch.as_tensor(eps, dtype=x0.dtype)[:, None, None, None] * grad.sign()
    if section.clip:
        batch = batch.clamp(0, 1)
    with torch.no_grad():
        logits = model.raw_logits(batch.to(model.device)).cpu().numpy()
    key = LOGIT_SWEEP.format
    return {key(measure="label"): float(y0[0])}, {key(measure="eps"): eps, key(measure="logits"): logits,
                                                  key(measure="images"): batch.numpy(), key(measure="label"): np.array(int(y0[0]))}


def validate(config, cfg: LogitSweepSection, where: str) -> None:
    check_model_name(config, cfg, "model", where)


def run(ctx, cfg: LogitSweepSection) -> dict:
    name = ctx.model_name(cfg.model)
    ctx.keep("sweep", lambda: logit_sweep(ctx.models[name], ctx.x, ctx.y, cfg, eot_samples=ctx.section.eot_samples,
                                          generator=ctx.gen("sweep")))  # "sweep": the seed it always had
    return {"model": name}


def logit_sweep_figure(eps: np.ndarray, logits: np.ndarray, images: np.ndarray, label: int):
    """Goodfellow et al. Figure 4 layout: logits per class versus ε, and the inputs along the path."""
    fig, axes = new_figure(1, 2, width=3.6, height=3.0)
    ax = axes[0][0]
    for c in range(logits.shape[1]):
        ax.plot(eps, logits[:, c], color=f"C{c}", linewidth=2.0 if c == label else 1.0,
                label=f"{c}{' (true)' if c == label else ''}")
    ax.axvline(0, color="0.6", linewidth=0.5)
    ax.set_xlabel("ε")
    ax.set_ylabel("logit (argument of the softmax)")
    ax.legend(ncol=2, fontsize=6)
    strip = axes[0][1]
    pick = np.linspace(0, len(eps) - 1, 16).round().astype(int)
    tiles = [images[i].reshape(28, 28) for i in pick]
    grid = np.vstack([np.hstack(tiles[r * 4:(r + 1) * 4]) for r in range(4)])
    strip.imshow(grid, cmap="gray_r", vmin=min(0, grid.min()), vmax=max(1, grid.max()))
    predicted = logits.argmax(1)
    for k, i in enumerate(pick):
        r, c = divmod(k, 4)
        if predicted[i] == label:
            strip.add_patch(matplotlib.patches.Rectangle((c * 28, r * 28), 27, 27, fill=False, edgecolor="#e6b800", linewidth=1.5))
    strip.set_title("inputs, ε from −max (top left) to +max; boxed = correct")
    strip.axis("off")
    fig.tight_layout()
    return fig


def section(files, meta: dict) -> Section:
    a = files.arrays
    fig = logit_sweep_figure(a[LOGIT_SWEEP(measure="eps")], a[LOGIT_SWEEP(measure="logits")], a[LOGIT_SWEEP(measure="images")],
                             int(a[LOGIT_SWEEP(measure="label")]))
    return Section("Goodfellow et al. (2015) Figure 4 layout", f"Model {meta['model']}: logits along one fast-gradient-sign direction.",
                   figures=[("logit_sweep", fig, "Logits of all classes along x + ε·sign(∇ₓ CE); the inputs beside.")])


ANALYSES.add("logit_sweep", Analysis(LogitSweepSection, run, section, metric_keys=(LOGIT_SWEEP,),
                                     validate=validate, order=60, renamed_from="sweep",
    tiny={"steps": "9"}))
