"""Choi's analysis: original / perturbation / adversarial for digits of one class pushed to a target,
with label and confidence, and what MC dropout says about the adversarial image."""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.attacks import build_attack


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
        f"choi/{name}/success_rate": float(result.success.float().mean()),
        f"choi/{name}/only_correct_sources": float(only_correct),
        f"choi/{name}/adv_confidence": float(adv.confidence.mean()),
        f"choi/{name}/l2": float(result.l2.mean()),
        f"choi/{name}/clean_entropy": float(orig.entropy.mean()),
        f"choi/{name}/adv_entropy": float(adv.entropy.mean()),
        f"choi/{name}/mc_clean_mi": float(mc_orig.mutual_information.mean()),
        f"choi/{name}/mc_adv_mi": float(mc_adv.mutual_information.mean()),
        f"choi/{name}/mc_clean_source_vote_share": float((mc_orig.probs.argmax(-1) == section.source).float().mean()),
        f"choi/{name}/mc_target_vote_share": float(votes.mean()),
    }
    arrays = {
        "choi/original": xs.numpy(), "choi/delta": delta.numpy(), "choi/adversarial": result.x_adv.numpy(),
        "choi/orig_label": orig.predicted.numpy(), "choi/orig_conf": orig.confidence.numpy(),
        "choi/delta_label": dpred.predicted.numpy(), "choi/delta_conf": dpred.confidence.numpy(),
        "choi/adv_label": adv.predicted.numpy(), "choi/adv_conf": adv.confidence.numpy(),
        "choi/target_votes": votes.numpy(), "choi/adv_mi": mc_adv.mutual_information.numpy(),
        "choi/orig_mi": mc_orig.mutual_information.numpy(),
        "choi/source_target": np.array([section.source, section.target]),
    }
    return metrics, arrays

