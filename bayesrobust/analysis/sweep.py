"""Goodfellow et al. (2015) Figure 4: the logits along one fast-gradient-sign direction."""

from __future__ import annotations

import numpy as np
import torch


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
    return {"sweep/label": float(y0[0])}, {"sweep/eps": eps, "sweep/logits": logits, "sweep/images": batch.numpy(),
                                           "sweep/label": np.array(int(y0[0]))}
