"""Report section of the detection suite: per attack, every detector's ROC-AUC, AUPR, TPR at 5% FPR,
detection accuracy and the classifier's accuracy on what it lets through; ROC curves; score histograms."""

from __future__ import annotations

from functools import partial

import numpy as np

from bayesrobust.report.figures import PALETTE, new_figure
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt
from bayesrobust.suites.detection import DETECTOR, PAIR, SCORES, TRUTH

COLUMNS = ["roc_auc", "aupr", "tpr_at_5_fpr", "detection_accuracy", "accuracy_passed", "undefended_accuracy",
           "tp", "fp", "tn", "fn"]
COUNTS = ("tp", "fp", "tn", "fn")
INTERVALS = ("roc_auc", "aupr", "tpr_at_5_fpr", "detection_accuracy", "accuracy_passed")  # those with bootstrap intervals


def _cell(metrics, key: str, interval: bool) -> str:
    """``0.9420 [0.930, 0.953]`` with the bootstrap interval, the value alone without."""
    text = fmt(metrics.get(key), 4)
    return text + f" [{fmt(metrics.get(key + '_low'), 3)}, {fmt(metrics.get(key + '_high'), 3)}]" if interval else text


@SECTIONS.register("detection")
def detection_section(run) -> Section | None:
    if not run.file("arrays/detection.npz").exists():
        return None
    meta = run.read_json("arrays/detection.json")
    arrays = run.load_arrays("arrays/detection.npz")
    metrics = run.metrics()
    text = (f"Defended models: {', '.join(meta['models'])}. Each attack gets a validation mixed set (from the validation "
            "split of the training data) on which every detector is fitted, and a disjoint evaluation mixed set (from the "
            "test split): half correctly classified clean digits, half successful adversarial examples of other digits. "
            f"{meta['samples']} Monte-Carlo draws per prediction. 'accuracy_passed': the classifier's accuracy on the images "
            "the detector lets through; 'undefended': on the whole mixed set.")
    if meta.get("bootstrap"):
        text += f" Brackets: 95% bootstrap intervals over the evaluation set ({meta['bootstrap']} resamples)."
    if meta["held_out"]:
        text += f" Held-out ROC-AUC: the detectors fitted on {meta['first_attack']} scored on the other attacks."
    if meta.get("noisy_negatives"):
        text += (" roc_auc_noisy_negatives: adversarial against clean and Gaussian-noisy digits (the clean ones plus noise "
                 "of the adversarial examples' mean L2), Feinman et al.'s negatives.")
    section = Section("Detection", text)
    for model in meta["models"]:
        for attack in meta["attacks"]:
            add_attack(section, meta, metrics, arrays, model, attack)
    return section


def add_attack(section: Section, meta, metrics, arrays, model: str, attack: str) -> None:
    """One (model, attack) pair: the table, the ROC curves and the score histograms."""
    pair, detector = partial(PAIR.get, metrics, model=model, attack=attack), partial(DETECTOR, model=model, attack=attack)
    cols = COLUMNS + (["held_out_roc_auc"] if meta["held_out"] and attack != meta["first_attack"] else [])
    cols += ["roc_auc_noisy_negatives"] if meta.get("noisy_negatives") else []
    rows = [[d] + [fmt(metrics.get(detector(detector=d, measure=c)), 0) if c in COUNTS
                   else _cell(metrics, detector(detector=d, measure=c), bool(meta.get("bootstrap")) and c in INTERVALS) for c in cols]
            for d in meta["detectors"]]
    spec = meta["attacks"][attack]
    aware = (f", detector-aware: {spec['aware_of']} under its clean-validation threshold {fmt(pair(measure='aware_cap'), 4)}"
             if spec.get("aware_of") else "")
    section.tables.append(Table(f"{model}, {attack} ({spec['attack']} {spec['params']}{aware}): "
                                f"{fmt(pair(measure='examples'), 0)} images, mean L2 of the adversarial ones "
                                f"{fmt(pair(measure='mean_l2'), 3)} (median {fmt(pair(measure='median_l2'), 3)})",
                                ["detector", *cols], rows))
    truth = arrays[TRUTH(model=model, attack=attack)].astype(bool)
    scores = {d: arrays[SCORES(model=model, attack=attack, detector=d)] for d in meta["detectors"]}
    title = f"{model}, {attack}"
    section.figures.append((f"roc_{model}_{attack}", roc_curves(truth, scores, title=title),
                            f"ROC curves of every detector on the {attack} evaluation mixed set, {model}."))
    section.figures.append((f"scores_{model}_{attack}", score_histograms(truth, scores, title=title),
                            f"Detector scores on clean (filled) and adversarial (outline) images, {attack}, {model}."))


def roc_curves(truth: np.ndarray, scores: dict[str, np.ndarray], title: str = ""):
    """One ROC curve per detector (adversarial = positive), with the AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    fig, axes = new_figure(1, 1, width=3.8, height=3.4)
    ax = axes[0][0]
    for i, (name, s) in enumerate(scores.items()):
        fpr, tpr, _ = roc_curve(truth, s)
        ax.plot(fpr, tpr, color=PALETTE[i % len(PALETTE)], label=f"{name} ({roc_auc_score(truth, s):.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, linestyle=":")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    return fig


def score_histograms(truth: np.ndarray, scores: dict[str, np.ndarray], title: str = ""):
    """Small multiples, one per detector: its scores on clean (filled) and adversarial (outline) images."""
    ncols = min(3, len(scores))
    nrows = int(np.ceil(len(scores) / ncols))
    fig, axes = new_figure(nrows, ncols, width=3.0, height=2.3)
    flat = axes.ravel()
    for ax, (name, s) in zip(flat, scores.items()):
        bins = np.linspace(float(np.min(s)), float(np.max(s)) + 1e-12, 30)
        ax.hist(s[~truth], bins=bins, density=True, alpha=0.6, color=PALETTE[0], label="clean")
        ax.hist(s[truth], bins=bins, density=True, histtype="step", linewidth=1.5, color=PALETTE[1], label="adversarial")
        ax.set_title(f"{title} · {name}" if title else name, fontsize=8)
    for ax in flat[len(scores):]:
        ax.set_visible(False)
    flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
