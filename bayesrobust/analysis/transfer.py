"""Cross-model transfer (Szegedy et al. 2014 Table 2; Bradshaw et al. 2017): adversarial examples
crafted on each model, classified by every model; plus Gaussian-noise control rows."""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched


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
            metrics[f"crossmodel/{row}/{dst}/log_likelihood"] = log_lik[i, j]
            metrics[f"crossmodel/{row}/{dst}/error"] = error[i, j]
            metrics[f"crossmodel/{row}/{dst}/entropy"] = entropy[i, j]
            metrics[f"crossmodel/{row}/{dst}/mi"] = mi[i, j]
    arrays = {"crossmodel/error": error, "crossmodel/entropy": entropy, "crossmodel/mi": mi, "crossmodel/log_likelihood": log_lik,
              "crossmodel/rows": np.array(rows), "crossmodel/columns": np.array(names),
              "crossmodel/attack": np.array(f"{section.attack} {dict(section.params)}")}
    return metrics, arrays
