"""Report section of the detection suite: per attack, every detector's ROC-AUC, AUPR, TPR at 5% FPR,
detection accuracy and the classifier's accuracy on what it lets through; ROC curves; score histograms."""

from __future__ import annotations

from bayesrobust.report import figures
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt

COLUMNS = ["roc_auc", "aupr", "tpr_at_5_fpr", "detection_accuracy", "accuracy_passed", "undefended_accuracy",
           "tp", "fp", "tn", "fn"]


@SECTIONS.register("30-detection")
def detection_section(run) -> Section | None:
    if not run.file("arrays/detection.npz").exists():
        return None
    meta = run.read_json("arrays/detection.json")
    arrays = run.load_arrays("arrays/detection.npz")
    metrics = run.metrics()
    text = (f"Defended model: {meta['model']}. Each attack gets a validation mixed set (from the validation split of the "
            "training data) on which every detector is fitted, and a disjoint evaluation mixed set (from the test split): "
            "half correctly classified clean digits, half successful adversarial examples of other digits. "
            f"{meta['samples']} Monte-Carlo draws per prediction. 'accuracy_passed': the classifier's accuracy on the images "
            "the detector lets through; 'undefended': on the whole mixed set.")
    if meta["held_out"]:
        text += f" Held-out ROC-AUC: the detectors fitted on {meta['first_attack']} scored on the other attacks."
    section = Section("Detection", text)
    for attack in meta["attacks"]:
        prefix = f"detect/{attack}"
        cols = COLUMNS + (["held_out_roc_auc"] if meta["held_out"] and attack != meta["first_attack"] else [])
        rows = [[d] + [fmt(metrics.get(f"{prefix}/{d}/{c}"), 0 if c in ("tp", "fp", "tn", "fn") else 4) for c in cols]
                for d in meta["detectors"]]
        section.tables.append(Table(f"{attack} ({meta['attacks'][attack]['attack']} {meta['attacks'][attack]['params']}): "
                                    f"{fmt(metrics.get(f'{prefix}/examples'), 0)} images, mean L2 of the adversarial ones "
                                    f"{fmt(metrics.get(f'{prefix}/mean_l2'), 3)}", ["detector", *cols], rows))
        truth = arrays[f"{prefix}/is_adversarial"].astype(bool)
        scores = {d: arrays[f"{prefix}/{d}/scores"] for d in meta["detectors"]}
        section.figures.append((f"roc_{attack}", figures.roc_curves(truth, scores, title=attack),
                                f"ROC curves of every detector on the {attack} evaluation mixed set."))
        section.figures.append((f"scores_{attack}", figures.score_histograms(truth, scores, title=attack),
                                f"Detector scores on clean (filled) and adversarial (outline) images, {attack}."))
    return section
