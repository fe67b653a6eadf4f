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

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from bayesrobust.analysis import ANALYSES, Analysis, check_model_name
from bayesrobust.analysis.papernot import source_target_pairs
from bayesrobust.attacks.base import run_batched
from bayesrobust.attacks.kos import LOSSES, KosAttack
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key
from bayesrobust.models.base import Reconstructs
from bayesrobust.models.families import reconstructing_models
from bayesrobust.report.figures import PALETTE, heatmap, image_rows, new_figure, note_coinciding
from bayesrobust.report.sections import Section, Table, fmt

KOS = Key("kos/{model}/{measure}")  # examples, clean_feedback_accuracy, clean_judge_accuracy
KOS_SWEEP = Key("kos/{model}/{loss}/{lam}/{measure}")  # as_target, as_ignore_target, judge_…, l2, output_l2, entropy, mi
MATRIX = Key("kos/{loss}/{lam}/{measure}")  # arrays: source × target matrices
FIGURE_ROWS = Key("kos/{loss}/{quantity}")  # arrays: examples, reconstructions, example_targets, example_predicted, …
TARGET_IMAGES = "kos/target_images"
KOS_PUBLISHED = {(1, 0): (0.9920, 0.7760), (8, 6): (1.0, 0.5795)}  # seed slides, MNIST classifier attack: (AS_ignore, AS_target)


def _kos_lams() -> Mapping[str, tuple[float, ...]]:
    return {"classifier": (0.1, 0.3, 1.0), "latent": (0.3, 1.0, 3.0), "vae": (1.0, 3.0, 10.0)}


@dataclass(frozen=True)
class KosSection:
    """Kos et al. (2017): the classifier, latent and VAE attacks on a VAE, source–target success
    matrices judged on the reconstruction, each loss over a sweep of λ (the first λ is the headline)."""

    model: str = ""  # a VAE of the config (default: the first one)
    judge: str = ""  # another model of the config that also classifies the reconstructions ("" = none)
    per_class: int = 10  # source images per class; each is attacked towards the 9 other classes
    losses: tuple[str, ...] = ("classifier", "latent", "vae")
    lams: Mapping[str, tuple[float, ...]] = field(default_factory=_kos_lams)  # per loss: weights of ‖x − x*‖₂
    steps: int = 200
    lr: float = 0.01

    def lams_of(self, loss: str) -> tuple[float, ...]:
        """The λ sweep of ``loss``: as configured, else the default sweep."""
        return tuple(self.lams[loss]) if loss in self.lams else _kos_lams()[loss]


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
    with torch.no_grad():
        clean = feedback.predictive(x[sources], eval_samples, generator=generator)
    metrics = {KOS(model=name, measure="clean_feedback_accuracy"): clean.accuracy(y[sources]),
               KOS(model=name, measure="examples"): float(len(ys))}
    arrays: dict[str, np.ndarray] = {TARGET_IMAGES: bank.numpy()}
    if judge is not None:
        with torch.no_grad():
            recon = vae.reconstruct(x[sources]).cpu()
        metrics[KOS(model=name, measure="clean_judge_accuracy")] = judge.predictive(recon, eval_samples, generator=generator).accuracy(y[sources])
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
            values = {**{r: float(v.mean()) for r, v in rates.items()},
                      "l2": float(result.l2.mean()), "output_l2": float(output_l2.mean()),
                      "entropy": float(result.predictive.entropy.mean()), "mi": float(result.predictive.mutual_information.mean())}
            metrics.update({KOS_SWEEP(model=name, loss=loss, lam=lam, measure=m): v for m, v in values.items()})
            for r, v in rates.items():
                arrays[MATRIX(loss=loss, lam=lam, measure=r)] = pair_matrix(v.astype(float), s_np, t_np)
            arrays[MATRIX(loss=loss, lam=lam, measure="l2")] = pair_matrix(result.l2.numpy(), s_np, t_np)
            if k == 0:  # figure rows: the first source image of each class towards (s + 1) mod 10
                rows = np.array([np.flatnonzero((s_np == s) & (t_np == (s + 1) % 10))[0] for s in range(10)
                                 if ((s_np == s) & (t_np == (s + 1) % 10)).any()])
                shown = {"examples": result.x_adv[rows].numpy(), "reconstructions": recon[rows].numpy(),
                         "example_targets": t_np[rows], "example_predicted": predicted[rows],
                         "example_entropy": result.predictive.entropy[rows].numpy()}
                arrays.update({FIGURE_ROWS(loss=loss, quantity=q): v for q, v in shown.items()})
    return metrics, arrays


def validate(config, kos: KosSection, where: str) -> None:
    vaes = reconstructing_models(config)
    if kos.model and kos.model not in vaes:
        raise ConfigError(f"{where}.model: {kos.model!r} is not a VAE of this config (VAEs: {', '.join(vaes) or 'none'})")
    if not vaes:
        raise ConfigError(f"{where} attacks a VAE: add a model with arch = 'vae'")
    check_model_name(config, kos, "judge", where)
    for loss in kos.losses:
        if loss not in LOSSES:
            raise ConfigError(f"{where}.losses: unknown loss {loss!r}; known: {', '.join(LOSSES)}")
        lams = kos.lams_of(loss)
        if not lams or any(not lam >= 0 for lam in lams):
            raise ConfigError(f"{where}.lams.{loss}: give at least one weight >= 0")
    unknown = sorted(set(kos.lams) - set(LOSSES))
    if unknown:
        raise ConfigError(f"{where}.lams: unknown loss {unknown[0]!r}; known: {', '.join(LOSSES)}")
    for key in ("per_class", "steps"):
        if getattr(kos, key) < 1:
            raise ConfigError(f"{where}.{key} must be >= 1")
    if not kos.lr > 0:
        raise ConfigError(f"{where}.lr must be > 0, got {kos.lr}")


def run(ctx, cfg: KosSection) -> dict:
    name = cfg.model or next(n for n, m in ctx.models.items() if isinstance(m, Reconstructs))
    judge = ctx.models[cfg.judge] if cfg.judge else None
    ctx.keep("kos", lambda: kos_analysis(ctx.models[name], ctx.x, ctx.y, cfg, name=name, judge=judge, generator=ctx.gen("kos"),
                                         **ctx.common))
    return {"model": name, "judge": cfg.judge, "losses": list(cfg.losses), "lams": {k: list(cfg.lams_of(k)) for k in cfg.losses}}


def distortion_curves(curves: dict[str, tuple[list[float], list[float], list[float]]]):
    """Kos et al.'s sweep: per loss, the output distortion ‖x̂* − x_t‖₂ against the input distortion
    ‖x − x*‖₂ over λ (left), and AS_target against the input distortion (right)."""
    fig, axes = new_figure(1, 2, width=3.4, height=2.8)
    left, right = axes[0]
    for i, (loss, (l2, out, success)) in enumerate(curves.items()):
        style = {"color": PALETTE[i % len(PALETTE)], "marker": "o", "markersize": 3, "label": loss}
        left.plot(l2, out, **style)
        right.plot(l2, success, **style)
    left.set(xlabel="input distortion ‖x − x*‖₂", ylabel="output distortion ‖x̂* − x_t‖₂")
    right.set(xlabel="input distortion ‖x − x*‖₂", ylabel="AS_target", ylim=(0, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
    note_coinciding(left, {loss: [*l2, *out] for loss, (l2, out, _) in curves.items()})  # both coordinates equal
    note_coinciding(right, {loss: [*l2, *success] for loss, (l2, _, success) in curves.items()})
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig


def section(files, kos: dict) -> Section:
    arrays, metrics = files.arrays, files.metrics
    name = kos["model"]

    def value(measure: str, **sweep) -> float:
        return metrics[KOS_SWEEP(model=name, measure=measure, **sweep) if sweep else KOS(model=name, measure=measure)]

    judged = bool(kos["judge"])
    columns = ["loss", "λ", "AS_target", "AS_ignore-target", *(["judge AS_target", "judge AS_ignore"] if judged else []),
               "‖x − x*‖₂", "‖x̂* − x_t‖₂", "entropy", "MI"]
    rows, curves = [], {}
    for loss in kos["losses"]:
        lams = kos["lams"][loss]
        for lam in lams:
            rates = ["as_target", "as_ignore_target", *(["judge_as_target", "judge_as_ignore_target"] if judged else [])]
            rows.append([loss, f"{lam:g}", *(fmt(value(r, loss=loss, lam=lam)) for r in rates),
                         *(fmt(value(m, loss=loss, lam=lam), 3) for m in ("l2", "output_l2", "entropy", "mi"))])
        curves[loss] = tuple([value(m, loss=loss, lam=lam) for lam in lams] for m in ("l2", "output_l2", "as_target"))
    text = (f"VAE {name}; {int(value('examples'))} source–target attacks per loss and λ. Success is judged on the "
            "reconstruction of x* by the VAE's reconstruction-feedback classifier f_class(f_enc(x̂*)) (Kos et al.'s "
            f"evaluation; it gets {fmt(value('clean_feedback_accuracy'), 3)} of the clean sources right)"
            + (f", and by the separate model {kos['judge']} reading the reconstruction "
               f"(clean: {fmt(value('clean_judge_accuracy'), 3)})" if judged else "")
            + ". Codes are posterior means (Kos et al. do not sample), the VAE loss averages draws of q(z | x*).")
    section = Section("Kos et al. (2017): attacks on a VAE", text, [Table("Success and distortion per loss and λ", columns, rows)])
    first = {loss: kos["lams"][loss][0] for loss in kos["losses"]}
    if "classifier" in first:
        lam = first["classifier"]
        ignore, target = (arrays[MATRIX(loss="classifier", lam=lam, measure=m)] for m in ("as_ignore_target", "as_target"))
        section.tables.append(Table(f"Classifier attack (λ = {lam:g}) beside the seed slides, AS_ignore-target (AS_target)",
                                    ["source → target", "ours", "published"],
                                    [[f"{s} → {t}", f"{ignore[s, t]:.2%} ({target[s, t]:.2%})", f"{pi:.2%} ({pt:.2%})"]
                                     for (s, t), (pi, pt) in KOS_PUBLISHED.items()]))
    digits = list(range(10))
    for loss, lam in first.items():
        section.figures.append((f"kos_{loss}_as_target", heatmap(
            arrays[MATRIX(loss=loss, lam=lam, measure="as_target")].astype(float), rows=digits, columns=digits, title=f"{loss} attack, λ = {lam:g}: AS_target",
            xlabel="target class", ylabel="source class"), f"AS_target per source (rows) and target (columns), {loss} attack."))
    images = {"target x_t": arrays[TARGET_IMAGES][[(s + 1) % 10 for s in range(10)]]}
    labels = {"target x_t": np.array([str((s + 1) % 10) for s in range(10)])}
    for loss in first:
        shown = {q: arrays[FIGURE_ROWS(loss=loss, quantity=q)] for q in ("examples", "reconstructions", "example_predicted", "example_entropy")}
        images[f"{loss}: x*"] = shown["examples"]
        images[f"{loss}: x̂*"] = shown["reconstructions"]
        tags = np.array([f"{p} H{h:.2f}" for p, h in zip(shown["example_predicted"], shown["example_entropy"])])
        labels[f"{loss}: x*"], labels[f"{loss}: x̂*"] = tags, np.array([""] * len(tags))
    section.figures.append(("kos_examples", image_rows(images, labels, ncols=10),
                            "Source digit s of each class attacked towards s + 1: adversarial input x* and its reconstruction x̂*, "
                            "titled with the feedback classifier's label and predictive entropy H (nats) under z ~ q(z | x*)."))
    if any(len(kos["lams"][loss]) > 1 for loss in kos["losses"]):
        section.figures.append(("kos_distortion", distortion_curves(curves),
                                "The λ sweep: output against input distortion, and AS_target against input distortion."))
    return section


ANALYSES.add("kos", Analysis(KosSection, run, section, metric_keys=(KOS, KOS_SWEEP), validate=validate, order=90,
    tiny={"per_class": "1", "steps": "5", "lams": "{ classifier = [0.1], latent = [1.0, 3.0], vae = [1.0] }"}))

