"""Papernot et al. (2016) JSMA analyses: source-target success and distortion matrices, the
hardness matrix H(s, t) and the adversarial distance A(X, t)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis, check_model_name
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.keys import Key
from bayesrobust.report.figures import heatmap
from bayesrobust.report.sections import Section, Table, fmt

PIXELS = 784
PAPERNOT = Key("papernot/{model}/{measure}")
MATRIX = Key("papernot/{matrix}")  # arrays: success, distortion, hardness, adversarial_distance, …


@dataclass(frozen=True)
class PapernotSection:
    """Papernot et al. (2016): JSMA source-target matrices, hardness and adversarial distance."""

    model: str = ""  # default: the first model
    per_class: int = 10  # source images per class; each is attacked towards the 9 other classes
    theta: float = 1.0
    gamma: float = 0.145
    hardness_gammas: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.145)
    candidates: int = 64
    space: str = "logits"  # logits (JSMA-Z, the paper) | probs (JSMA-F)


def source_target_pairs(x: torch.Tensor, y: torch.Tensor, per_class: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``per_class`` images of each class, each repeated for the 9 other targets: (x, y, target), and
    the row indices of the source images in ``x``, each once."""
    xs, ys, ts, sources = [], [], [], []
    for cls in range(10):
        idx = torch.nonzero(y == cls).flatten()[:per_class]
        sources.append(idx)
        for t in range(10):
            if t != cls and idx.numel():
                xs.append(x[idx])
                ys.append(y[idx])
                ts.append(torch.full_like(y[idx], t))
    return torch.cat(xs), torch.cat(ys), torch.cat(ts), torch.cat(sources)


def hardness(success_at: np.ndarray, distortion_at: np.ndarray, first_distortion: np.ndarray) -> np.ndarray:
    """H(s, t) = ∫ ε(s, t, τ) dτ by the trapezoid rule over the (τ_k, ε_k) of increasing maximum
    distortions Υ_k (Papernot et al. 2016), arrays (K, 10, 10): τ the success rate, ε the mean
    distortion of the successful samples.

    Where τ_k = 0, ε_k is undefined (no successful sample), and setting it to 0 biases H down. The
    integral starts at τ = 0, where ε(s, t, τ → 0) is the distortion of the first sample to succeed as
    the budget grows — the smallest distortion among the pair's successes, ``first_distortion`` (10, 10).
    So the curve is the point (0, first_distortion) followed by the points with τ_k > 0. A pair that
    never succeeds has no curve: NaN."""
    K = success_at.shape[0]
    out = np.full(success_at.shape[1:], np.nan)
    for s, t in np.ndindex(*out.shape):
        if not np.isfinite(first_distortion[s, t]):
            continue
        keep = [k for k in range(K) if success_at[k, s, t] > 0]
        tau = np.concatenate([[0.0], success_at[keep, s, t]])
        eps = np.concatenate([[first_distortion[s, t]], distortion_at[keep, s, t]])
        out[s, t] = float(((tau[1:] - tau[:-1]) * (eps[1:] + eps[:-1]) / 2).sum())
    return out


def adversarial_distance(model, x: torch.Tensor, y: torch.Tensor, *, eot_samples: int, generator) -> tuple[np.ndarray, np.ndarray]:
    """A(X, t): the fraction of pixels whose saliency S(X, t) is zero at the first iteration (θ = +1;
    a pixel is salient when ∂Z_t/∂x_i > 0 and Σ_{j≠t} ∂Z_j/∂x_i < 0). Near 1 = hard.

    Returns (per-example values (N, 10) with NaN where t = y, their means per (source, target) class
    pair (10, 10) with NaN on the diagonal). Papernot's robustness R(F) is the minimum over individual
    (X, t) pairs — of the first array, not of the class-pair means."""
    x = x.detach().clone().requires_grad_(True)
    logits = model.sample_logits(x, eot_samples, generator=generator).mean(0)
    jac = torch.stack([torch.autograd.grad(logits[:, c].sum(), x, retain_graph=c < 9)[0].flatten(1) for c in range(10)], 1)
    total = jac.sum(1)
    per_example = np.full((x.shape[0], 10), np.nan)
    for t in range(10):
        alpha, beta = jac[:, t], total - jac[:, t]
        per_example[:, t] = (1.0 - ((alpha > 0) & (beta < 0)).float().mean(1)).cpu().numpy()
    labels = y.cpu().numpy()
    per_example[np.arange(len(labels)), labels] = np.nan
    means = np.full((10, 10), np.nan)
    for s in range(10):
        rows = per_example[labels == s]
        if len(rows):
            means[s] = rows.mean(0)  # the column t = s is NaN, as the diagonal should be
    return per_example, means


def papernot_analysis(model, x, y, section, *, name: str, eval_samples: int, eot_samples: int, batch_size: int, generator):
    """Run JSMA (θ, γ) from ``per_class`` images per class to every other class on the model called
    ``name``: metrics ``papernot/<name>/…``, arrays ``papernot/…``."""
    xs, ys, ts, sources = source_target_pairs(x, y, section.per_class)
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
    distortion_k = np.full((len(gammas), 10, 10), np.nan)
    first = np.full((10, 10), np.nan)
    for s in range(10):
        for t in range(10):
            sel = (s_np == s) & (t_np == t)
            if s == t or not sel.any():
                continue
            success[s, t] = ok[sel].mean()
            distortion[s, t] = frac[sel & ok].mean() if (sel & ok).any() else np.nan
            first[s, t] = frac[sel & ok].min() if (sel & ok).any() else np.nan
            for k, g in enumerate(gammas):
                # JSMA is greedy and deterministic: a smaller budget truncates the same trajectory,
                # so success under Υ_k is success with at most ⌊784·Υ_k⌋ changed pixels.
                ok_k = ok[sel] & (result.l0.numpy()[sel] <= math.floor(PIXELS * g))
                success_k[k, s, t] = ok_k.mean()
                distortion_k[k, s, t] = frac[sel][ok_k].mean() if ok_k.any() else np.nan
    summary = result.summary()
    clean = model.predictive(x[sources], eval_samples, generator=generator)  # each source image once
    per_pair, distance = adversarial_distance(model, x, y, eot_samples=eot_samples, generator=generator)
    values = {
        "success_rate": summary["success_rate"],
        "distortion_all": summary["l0_fraction"],
        "distortion_success": summary["l0_fraction_success"],
        "entropy": summary["entropy"],
        "mi": summary["mi"],
        "clean_entropy": float(clean.entropy.mean()),
        "clean_mi": float(clean.mutual_information.mean()),
        "examples": float(len(ys)),
        "mean_iterations": float(result.iterations.float().mean()),
        "robustness": float(np.nanmin(per_pair)),  # R(F): the minimum over (X, t) pairs
        "adversarial_distance_min_class_pair": float(np.nanmin(distance)),
    }
    arrays = {
        "success": success,
        "distortion": distortion,
        "hardness": hardness(success_k, distortion_k, first),
        "hardness_gammas": np.array(gammas),
        "adversarial_distance": distance,
        "examples": result.x_adv[:: max(1, len(ys) // 10)][:10].numpy(),
    }
    return ({PAPERNOT(model=name, measure=k): v for k, v in values.items()},
            {MATRIX(matrix=k): v for k, v in arrays.items()})


def validate(config, cfg: PapernotSection, where: str) -> None:
    check_model_name(config, cfg, "model", where)


def run(ctx, cfg: PapernotSection) -> dict:
    name = ctx.model_name(cfg.model)
    ctx.keep("papernot", lambda: papernot_analysis(ctx.models[name], ctx.x, ctx.y, cfg, name=name,
                                                   generator=ctx.gen("papernot"), **ctx.common))
    return {"model": name, "space": cfg.space}


def section(files, meta: dict) -> Section:
    arrays, metrics = files.arrays, files.metrics
    value = partial(PAPERNOT.get, metrics, model=meta["model"])
    section = Section("Papernot et al. (2016): JSMA source-target analysis",
                      f"Model {meta['model']}; saliency on the {meta['space']}; "
                      f"{int(value(measure='examples'))} source-target attacks. Distortion = fraction of the 784 pixels changed.")
    section.tables.append(Table("JSMA summary; R(F) = min over (X, t) of A(X, t)",
                                ["success rate", "distortion (all)", "distortion (successful)", "entropy adv", "entropy clean",
                                 "mi adv", "mi clean", "R(F)"],
                                [[fmt(value(measure=m)) for m in ("success_rate", "distortion_all", "distortion_success", "entropy",
                                                                  "clean_entropy", "mi", "clean_mi", "robustness")]]))
    digits = list(range(10))
    for key, title, f in (("success", "success rate", "{:.2f}"), ("distortion", "mean distortion of successful samples", "{:.3f}"),
                          ("hardness", "hardness H(s, t)", "{:.3f}"), ("adversarial_distance", "adversarial distance A(X, t)", "{:.2f}")):
        matrix = arrays[MATRIX(matrix=key)].astype(float)
        if key == "hardness":
            matrix = matrix.copy()
            np.fill_diagonal(matrix, np.nan)
        section.figures.append((f"papernot_{key}", heatmap(matrix, rows=digits, columns=digits, title=title,
                                                           fmt=f, xlabel="target class", ylabel="source class"),
                                f"JSMA {title} per source (rows) and target (columns) class."))
    return section


ANALYSES.add("papernot", Analysis(PapernotSection, run, section, metric_keys=(PAPERNOT,), validate=validate, order=50,
    tiny={"per_class": "1", "gamma": "0.03", "hardness_gammas": "[0.01, 0.03]"}))
