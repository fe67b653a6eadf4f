"""Choi's analysis: original / perturbation / adversarial for digits of one class pushed to a target,
with label and confidence, and what MC dropout says about the adversarial image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis, check_model_name
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.report.figures import PanelGrid
from bayesrobust.report.sections import Section, Table, fmt

CHOI = Key("choi/{model}/{measure}")
PANEL = Key("choi/{quantity}")  # arrays: original, delta, adversarial, orig_label, …


@dataclass(frozen=True)
class TriptychSection(AttackSpec):
    """Choi: original / perturbation / adversarial for `count` digits of class `source` → `target` (the
    targets are those; ``targets`` stays "none")."""

    attack: str = "targeted_l2"
    model: str = ""
    source: int = 2
    target: int = 6
    count: int = 10


def triptych(model, x, y, section, *, name: str, eval_samples: int, eot_samples: int, generator):
    """Attack the first ``count`` correctly classified test digits of class ``source`` towards
    ``target``. The perturbation itself is classified after scaling |δ| to [0, 1] (the paper shows and
    classifies the delta image). Choi's appendix then keeps dropout on at test time: the votes and mutual
    information come from the same weights with MC dropout (the model itself when it is stochastic).
    Metrics ``choi/<name>/…``, arrays ``choi/…``."""
    clean = model.predictive(x, eval_samples, generator=generator)
    idx = torch.nonzero((y == section.source) & (clean.predicted == y)).flatten()[: section.count]
    only_correct = idx.numel() > 0
    if not only_correct:  # a weak model: fall back to any digits of the source class
        idx = torch.nonzero(y == section.source).flatten()[: section.count]
    if idx.numel() == 0:
        return {}, {}
    xs, ys = x[idx], y[idx]
    target = torch.full_like(ys, section.target)
    attack = build_attack(section.attack, {"eval_samples": eval_samples, "eot_samples": eot_samples}, **dict(section.params))
    result = attack(model, xs, ys, target=target, generator=generator)
    delta = result.x_adv - xs
    magnitude = delta.abs()
    delta_image = magnitude / magnitude.flatten(1).amax(1).clamp_min(1e-12)[:, None, None, None]
    orig, adv = clean[idx], result.predictive
    dpred = model.predictive(delta_image, eval_samples, generator=generator)
    mc = (model if model.draws.random else model.mc_dropout_twin()) or model
    mc_orig = mc.predictive(xs, eval_samples, generator=generator)
    mc_adv = mc.predictive(result.x_adv, eval_samples, generator=generator)
    votes = (mc_adv.probs.argmax(-1) == section.target).float().mean(0)
    metrics = {
        "success_rate": float(result.success.float().mean()),
        "only_correct_sources": float(only_correct),
        "adv_confidence": float(adv.confidence.mean()),
        "l2": float(result.l2.mean()),
        "clean_entropy": float(orig.entropy.mean()),
        "adv_entropy": float(adv.entropy.mean()),
        "mc_clean_mi": float(mc_orig.mutual_information.mean()),
        "mc_adv_mi": float(mc_adv.mutual_information.mean()),
        "mc_clean_source_vote_share": float((mc_orig.probs.argmax(-1) == section.source).float().mean()),
        "mc_target_vote_share": float(votes.mean()),
    }
    arrays = {
        "original": xs.numpy(), "delta": delta.numpy(), "adversarial": result.x_adv.numpy(),
        "orig_label": orig.predicted.numpy(), "orig_conf": orig.confidence.numpy(),
        "delta_label": dpred.predicted.numpy(), "delta_conf": dpred.confidence.numpy(),
        "adv_label": adv.predicted.numpy(), "adv_conf": adv.confidence.numpy(),
        "target_votes": votes.numpy(), "adv_mi": mc_adv.mutual_information.numpy(),
        "orig_mi": mc_orig.mutual_information.numpy(),
        "source_target": np.array([section.source, section.target]),
    }
    return {CHOI(model=name, measure=k): v for k, v in metrics.items()}, {PANEL(quantity=k): v for k, v in arrays.items()}


def validate(config, cfg: TriptychSection, where: str) -> None:
    if cfg.targets != "none":
        raise ConfigError(f"{where}.targets: the triptych's target is its `target` class; remove targets")
    cfg.check(where, targeted=True)
    check_model_name(config, cfg, "model", where)
    if cfg.source == cfg.target:
        raise ConfigError(f"{where}: source and target must differ")


def run(ctx, cfg: TriptychSection) -> dict | None:
    name = ctx.model_name(cfg.model)
    m, _ = ctx.keep("triptych", lambda: triptych(ctx.models[name], ctx.x, ctx.y, cfg, name=name, eval_samples=ctx.section.eval_samples,
                                                 eot_samples=ctx.section.eot_samples, generator=ctx.gen("triptych")))
    return {"model": name} if m else None  # no digit of the source class: nothing to show


def triptych_figure(original, delta, adversarial, labels: dict[str, tuple[np.ndarray, np.ndarray]], rows: int = 10):
    """Choi's layout: original / perturbation / adversarial, each titled with label and confidence."""
    n = min(rows, len(original))
    grid = PanelGrid(n, 3, cell=1.15, top=0.18)
    for j, (key, images) in enumerate((("original", original), ("delta", delta), ("adversarial", adversarial))):
        grid.column_label(j, key)
        lab, conf = labels[key]
        for i in range(n):
            colours = {}
            if key == "delta":  # the perturbation, diverging around zero
                bound = max(float(np.abs(images[i]).max()), 1e-6)
                colours = {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}
            grid.image(i, j, images[i], title=f"label {lab[i]}  conf {conf[i]:.3f}", **colours)
    return grid.fig


def section(files, meta: dict) -> Section:
    a = {k: files.arrays[PANEL(quantity=k)] for k in ("original", "delta", "adversarial", "orig_label", "orig_conf", "delta_label",
                                                      "delta_conf", "adv_label", "adv_conf", "target_votes", "orig_mi", "adv_mi",
                                                      "source_target")}
    s, t = (int(v) for v in a["source_target"])
    rows = [[str(i), f"{a['orig_label'][i]} ({a['orig_conf'][i]:.3f})", f"{a['delta_label'][i]} ({a['delta_conf'][i]:.3f})",
             f"{a['adv_label'][i]} ({a['adv_conf'][i]:.3f})", f"{a['target_votes'][i]:.2f}", f"{a['orig_mi'][i]:.4f}", f"{a['adv_mi'][i]:.4f}"]
            for i in range(len(a["original"]))]
    table = Table(f"{s} → {t}: label (confidence) of original, perturbation and adversarial image",
                  ["#", "original", "perturbation", "adversarial", "MC-dropout votes for target", "MC MI original", "MC MI adversarial"], rows)
    fig = triptych_figure(a["original"], a["delta"], a["adversarial"], {
        "original": (a["orig_label"], a["orig_conf"]), "delta": (a["delta_label"], a["delta_conf"]),
        "adversarial": (a["adv_label"], a["adv_conf"])})
    model = meta["model"]
    value = {m: fmt(CHOI.get(files.metrics, model=model, measure=m), 3) for m in ("success_rate", "adv_confidence", "l2")}
    text = (f"Model {model}. Success {value['success_rate']}, mean adversarial confidence {value['adv_confidence']}, mean L2 "
            f"{value['l2']}. The perturbation is classified after scaling |δ| to [0, 1]. MC-dropout columns keep the same weights' "
            "dropout on at test time (Choi's appendix): the fraction of dropout samples that predict the target, and the mutual "
            "information.")
    return Section("Choi: original / perturbation / adversarial", text, [table], [("choi_triptych", fig, f"Choi's triptych, {s} → {t}.")])


ANALYSES.add("triptych", Analysis(TriptychSection, run, section, metric_keys=(CHOI,), validate=validate, order=80,
    tiny={"count": "2"}))

