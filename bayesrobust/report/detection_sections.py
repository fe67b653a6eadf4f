"""Report section of the detection suite: per attack, every detector's ROC-AUC, AUPR, TPR at 5% FPR,
detection accuracy and the classifier's accuracy on what it lets through; ROC curves; score histograms."""

from __future__ import annotations

from bayesrobust.report import figures
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt

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
    prefix = f"detect/{model}/{attack}"
    cols = COLUMNS + (["held_out_roc_auc"] if meta["held_out"] and attack != meta["first_attack"] else [])
    cols += ["roc_auc_noisy_negatives"] if meta.get("noisy_negatives") else []
    rows = [[d] + [fmt(metrics.get(f"{prefix}/{d}/{c}"), 0) if c in COUNTS
                   else _cell(metrics, f"{prefix}/{d}/{c}", bool(meta.get("bootstrap")) and c in INTERVALS) for c in cols]
            for d in meta["detectors"]]
    spec = meta["attacks"][attack]
    aware = (f", detector-aware: {spec['aware_of']} under its clean-validation threshold {fmt(metrics.get(f'{prefix}/aware_cap'), 4)}"
             if spec.get("aware_of") else "")
    section.tables.append(Table(f"{model}, {attack} ({spec['attack']} {spec['params']}{aware}): "
                                f"{fmt(metrics.get(f'{prefix}/examples'), 0)} images, mean L2 of the adversarial ones "
                                f"{fmt(metrics.get(f'{prefix}/mean_l2'), 3)} (median {fmt(metrics.get(f'{prefix}/median_l2'), 3)})",
                                ["detector", *cols], rows))
    truth = arrays[f"{prefix}/is_adversarial"].astype(bool)
    scores = {d: arrays[f"{prefix}/{d}/scores"] for d in meta["detectors"]}
    title = f"{model}, {attack}"
    section.figures.append((f"roc_{model}_{attack}", figures.roc_curves(truth, scores, title=title),
                            f"ROC curves of every detector on the {attack} evaluation mixed set, {model}."))
    section.figures.append((f"scores_{model}_{attack}", figures.score_histograms(truth, scores, title=title),
                            f"Detector scores on clean (filled) and adversarial (outline) images, {attack}, {model}."))
