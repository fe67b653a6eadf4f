"""Papernot et al. (2016) JSMA analyses: source-target success and distortion matrices, the
hardness matrix H(s, t) and the adversarial distance A(X, t)."""

from __future__ import annotations

import math

import numpy as np
import torch

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched

PIXELS = 784


def source_target_pairs(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``per_class`` images of each class, each repeated for the 9 other targets: (x, y, target)."""
    xs, ys, ts = [], [], []
    for cls in range(10):
        idx = torch.nonzero(y == cls).flatten()[:per_class]
        for t in range(10):
            if t != cls and idx.numel():
                xs.append(x[idx])
                ys.append(y[idx])
                ts.append(torch.full_like(y[idx], t))
    return torch.cat(xs), torch.cat(ys), torch.cat(ts)


def hardness(success_at: np.ndarray, distortion_at: np.ndarray) -> np.ndarray:
    """H(s, t) ≈ Σ_k (τ_{k+1} − τ_k)·(ε_{k+1} + ε_k)/2 over increasing maximum distortions Υ_k,
    with τ the success rate and ε the mean distortion of successful samples (arrays (K, 10, 10))."""
    tau = np.nan_to_num(success_at)
    eps = np.nan_to_num(distortion_at)
    return ((tau[1:] - tau[:-1]) * (eps[1:] + eps[:-1]) / 2).sum(0)


def adversarial_distance(model, x: torch.Tensor, y: torch.Tensor, *, eot_samples: int, generator) -> np.ndarray:
    """A(X, t): fraction of pixels whose single-pixel saliency S(X, t) is zero at the first iteration
    (θ = +1), averaged per (source, target) pair → (10, 10), NaN on the diagonal. Near 1 = hard."""
    x = x.detach().clone().requires_grad_(True)
    logits = model.sample_logits(x, eot_samples, generator=generator).mean(0)
    jac = torch.stack([torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < 9)[0].flatten(1) for c in range(10)], 1)
    total = jac.sum(1)
    out = np.full((10, 10), np.nan)
    sums, counts = np.zeros((10, 10)), np.zeros((10, 10))
    for t in range(10):
        alpha, beta = jac[:, t], total - jac[:, t]
        zero_fraction = 1.0 - ((alpha > 0) & (beta < 0)).float().mean(1)
        for s in range(10):
            mask = (y == s) & (y != t)
            if mask.any():
                sums[s, t] += float(zero_fraction[mask].sum())
                counts[s, t] += int(mask.sum())
    np.divide(sums, counts, out=out, where=counts > 0)
    np.fill_diagonal(out, np.nan)
    return out


def papernot_analysis(model, x, y, section, *, eval_samples: int, eot_samples: int, batch_size: int, generator):
    """Run JSMA (θ, γ) from ``per_class`` images per class to every other class."""
    xs, ys, ts = source_target_pairs(x, y, section.per_class)
    attack = build_attack("jsma", theta=section.theta, gamma=section.gamma, candidates=section.candidates, space=section.space,
                          eval_samples=eval_samples, eot_samples=eot_samples)
    result = run_batched(attack, model, xs, ys, target=ts, batch_size=batch_size, generator=generator, desc="jsma matrix")
    frac = result.l0.numpy() / PIXELS
    ok = result.success.numpy()
    s_np, t_np = ys.numpy(), ts.numpy()
    success = np.full((10, 10), np.nan)
    distortion = np.full((10, 10), np.nan)
    gammas = sorted(g for g in section.hardness_gammas if g <= section.gamma)
    success_k = np.zeros((len(gammas), 10, 10))
    distortion_k = np.zeros((len(gammas), 10, 10))
    for s in range(10):
        for t in range(10):
            sel = (s_np == s) & (t_np == t)
            if s == t or not sel.any():
                continue
            success[s, t] = ok[sel].mean()
            distortion[s, t] = frac[sel & ok].mean() if (sel & ok).any() else np.nan
            for k, g in enumerate(gammas):
                # JSMA is greedy and deterministic: a smaller budget truncates the same trajectory,
                # so success under Υ_k is success with at most ⌊784·Υ_k⌋ changed pixels.
                ok_k = ok[sel] & (result.l0.numpy()[sel] <= math.floor(PIXELS * g))
                success_k[k, s, t] = ok_k.mean()
                distortion_k[k, s, t] = frac[sel][ok_k].mean() if ok_k.any() else 0.0
    summary = result.summary()
    clean = model.predictive(xs[::9], eval_samples, generator=generator)  # each source image once
    metrics = {
        "papernot/success_rate": summary["success_rate"],
        "papernot/distortion_all": summary["l0_fraction"],
        "papernot/distortion_success": summary["l0_fraction_success"],
        "papernot/entropy": summary["entropy"],
        "papernot/mi": summary["mi"],
        "papernot/clean_entropy": float(clean.entropy.mean()),
        "papernot/clean_mi": float(clean.mutual_information.mean()),
        "papernot/examples": float(len(ys)),
        "papernot/mean_iterations": float(result.iterations.float().mean()),
    }
    arrays = {
        "papernot/success": success,
        "papernot/distortion": distortion,
        "papernot/hardness": hardness(success_k, distortion_k),
        "papernot/hardness_gammas": np.array(gammas),
        "papernot/adversarial_distance": adversarial_distance(model, x, y, eot_samples=eot_samples, generator=generator),
        "papernot/examples": result.x_adv[:: max(1, len(ys) // 10)][:10].numpy(),
    }
    metrics["papernot/adversarial_distance_min"] = float(np.nanmin(arrays["papernot/adversarial_distance"]))
    return metrics, arrays
