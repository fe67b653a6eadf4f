"""Kos, Fischer & Song (2017): source–target success matrices of the classifier, latent and VAE attacks
on a VAE, judged on the reconstruction of the adversarial input.

``per_class`` test images per class are each attacked towards the nine other classes (latent and VAE
attacks towards one target image per class, drawn from test images that are not sources). For every
loss and every λ of its sweep: AS_target (the reconstruction's class is the target) and AS_ignore-target
(it is not the source's) — by the VAE's reconstruction-feedback classifier, Kos et al.'s evaluation, and
by a separate ``judge`` model of the config when given (a classifier the attack does not target,
reading the reconstruction: a "successful" latent attack may simply yield a real digit of the target
class, which both judges agree on) — with the input distortion ‖x − x*‖₂ and the output distortion
‖x̂* − x_t‖₂ (reconstruction to target image): the distortion–distortion curve of the sweep.
"""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.analysis.papernot import source_target_pairs
from bayesrobust.attacks.base import run_batched
from bayesrobust.attacks.kos import KosAttack


def target_bank(x: torch.Tensor, y: torch.Tensor, exclude: torch.Tensor) -> torch.Tensor:
    """One target image per class ``(10, 1, 28, 28)``: the first image of each class not in ``exclude``."""
    free = torch.ones(len(y), dtype=torch.bool)
    free[exclude] = False
    picks = []
    for c in range(10):
        rows = torch.nonzero(free & (y == c)).flatten()
        if not rows.numel():
            raise ValueError(f"the Kos analysis needs a test image of class {c} besides the sources for its target bank")
        picks.append(rows[0])
    return x[torch.stack(picks)]


def pair_matrix(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per (source, target) class pair ``(10, 10)``; NaN where no pair (the diagonal)."""
    out = np.full((10, 10), np.nan)
    for s in range(10):
        for t in range(10):
            sel = (source == s) & (target == t)
            if s != t and sel.any():
                out[s, t] = values[sel].mean()
    return out


def kos_analysis(vae, x: torch.Tensor, y: torch.Tensor, section, *, name: str, judge=None, eval_samples: int,
                 eot_samples: int, batch_size: int, generator) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Run every configured loss over its λ sweep on the VAE called ``name``: metrics
    ``kos/<name>/<loss>/<λ>/{as_target,as_ignore_target,l2,output_l2,...}`` (plus ``judge_…`` rates),
    arrays ``kos/<loss>/<λ>/…`` (matrices) and ``kos/<loss>/examples`` (figure rows at the first λ)."""
    xs, ys, ts, sources = source_target_pairs(x, y, section.per_class)
    bank = target_bank(x, y, sources)
    feedback = vae.with_mode("feedback")
    s_np, t_np = ys.numpy(), ts.numpy()
    prefix = f"kos/{name}"
    with torch.no_grad():
        clean = feedback.predictive(x[sources], eval_samples, generator=generator)
    metrics = {f"{prefix}/clean_feedback_accuracy": clean.accuracy(y[sources]), f"{prefix}/examples": float(len(ys))}
    arrays: dict[str, np.ndarray] = {"kos/target_images": bank.numpy()}
    if judge is not None:
        with torch.no_grad():
            recon = vae.reconstruct(x[sources]).cpu()
        metrics[f"{prefix}/clean_judge_accuracy"] = judge.predictive(recon, eval_samples, generator=generator).accuracy(y[sources])
    for loss in section.losses:
        for k, lam in enumerate(section.lams_of(loss)):
            attack = KosAttack(loss, lam=lam, steps=section.steps, lr=section.lr, target_images=bank,
                               eval_samples=eval_samples, eot_samples=eot_samples)
            result = run_batched(attack, feedback, xs, ys, target=ts, batch_size=batch_size, generator=generator,
                                 progress=True, desc=f"kos {loss} λ={lam:g}")
            with torch.no_grad():
                recon = torch.cat([vae.reconstruct(result.x_adv[i: i + 1000]).cpu() for i in range(0, len(ys), 1000)])
            predicted = result.predictive.predicted.numpy()
            rates = {"as_target": predicted == t_np, "as_ignore_target": predicted != s_np}
            if judge is not None:
                judged = judge.predictive(recon, eval_samples, generator=generator).predicted.numpy()
                rates.update(judge_as_target=judged == t_np, judge_as_ignore_target=judged != s_np)
            output_l2 = (recon - bank[ts]).flatten(1).norm(dim=1).numpy()
            key = f"{prefix}/{loss}/{lam:g}"
            metrics.update({f"{key}/{r}": float(v.mean()) for r, v in rates.items()})
            metrics.update({f"{key}/l2": float(result.l2.mean()), f"{key}/output_l2": float(output_l2.mean()),
                            f"{key}/entropy": float(result.predictive.entropy.mean()),
                            f"{key}/mi": float(result.predictive.mutual_information.mean())})
            for r, v in rates.items():
                arrays[f"kos/{loss}/{lam:g}/{r}"] = pair_matrix(v.astype(float), s_np, t_np)
            arrays[f"kos/{loss}/{lam:g}/l2"] = pair_matrix(result.l2.numpy(), s_np, t_np)
            if k == 0:  # figure rows: the first source image of each class towards (s + 1) mod 10
                rows = np.array([np.flatnonzero((s_np == s) & (t_np == (s + 1) % 10))[0] for s in range(10)
                                 if ((s_np == s) & (t_np == (s + 1) % 10)).any()])
                arrays[f"kos/{loss}/examples"] = result.x_adv[rows].numpy()
                arrays[f"kos/{loss}/reconstructions"] = recon[rows].numpy()
                arrays[f"kos/{loss}/example_targets"] = t_np[rows]
                arrays[f"kos/{loss}/example_predicted"] = predicted[rows]
                arrays[f"kos/{loss}/example_entropy"] = result.predictive.entropy[rows].numpy()
    return metrics, arrays
