"""Lacok (2016) Table 1 layout: error rate and mean confidence on clean, FGSM and sign-noise sets."""

from __future__ import annotations

import numpy as np

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched


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
            prefix = f"lacok/{name}/{row}"
            metrics[f"{prefix}/error"] = 1.0 - pred.accuracy(y)
            metrics[f"{prefix}/confidence"] = float(pred.confidence.mean())
            metrics[f"{prefix}/entropy"] = float(pred.entropy.mean())
            metrics[f"{prefix}/mi"] = float(pred.mutual_information.mean())
            if m_index == 0:
                arrays[f"lacok/images/{row}"] = images[:8].numpy()
                arrays[f"lacok/predicted/{row}"] = pred.predicted[:8].numpy()
    arrays["lacok/rows"] = np.array([r[0] for r in rows])
    arrays["lacok/models"] = np.array(list(models))
    return metrics, arrays
