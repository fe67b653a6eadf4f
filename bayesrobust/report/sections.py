"""Report sections, each built from a run folder's files alone. A section whose files are absent
is skipped, so the same report code serves every experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bayesrobust.registry import Registry
from bayesrobust.report import figures


@dataclass
class Table:
    caption: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, object, str]] = field(default_factory=list)  # (name, matplotlib Figure, caption)
    warnings: list[str] = field(default_factory=list)  # shown prominently, above the tables


SECTIONS: Registry[Callable] = Registry("report section")


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@SECTIONS.register("10-evaluation")
def evaluation_section(run) -> Section | None:
    if not run.file("arrays/evaluation.npz").exists():
        return None
    meta = run.read_json("arrays/evaluation.json")
    arrays = run.load_arrays("arrays/evaluation.npz")
    metrics = run.metrics()
    models, shifted = meta["models"], meta["shifted"]
    cols = ["acc", "nll", "confidence", "entropy", "mi"]
    rows = [[m] + [fmt(metrics.get(f"clean/{m}/{c}")) for c in cols] for m in models]
    section = Section(
        "Clean evaluation and domain shift",
        f"Test set: {meta['test']}; Monte-Carlo samples per prediction: {meta['samples']} "
        "(plain networks use one deterministic pass). Entropy and mutual information (MI) in nats.",
        [Table(f"Test split ({meta['test']})", ["model", *cols], rows)],
    )
    data = run.read_json("data.json") if run.file("data.json").exists() else {}
    for name, info in data.items():
        if isinstance(info, dict) and info.get("available") is False:
            section.text += f" Shifted set {name}: not available on this machine ({info.get('reason', '')})."
    for set_name in shifted:
        scols = cols + ["auroc_entropy", "auroc_mi"] + (["elbo", "auroc_elbo", "auroc_reconstruction"]
                                                       if any(f"shift/{set_name}/{m}/elbo" in metrics for m in models) else [])
        # the VAE-only columns are read only where written ("–" for the other models)
        srows = [[m] + [fmt(metrics[k]) if (k := f"shift/{set_name}/{m}/{c}") in metrics else "–" for c in scols] for m in models]
        section.tables.append(Table(f"Shifted set {set_name} (AUROC: telling it from the test split by uncertainty)",
                                    ["model", *scols], srows))
    entropy_in = {m: arrays[f"test/{m}/entropy"] for m in models}
    entropy_shift = {s: {m: arrays[f"shift/{s}/{m}/entropy"] for m in models} for s in shifted}
    section.figures.append(("entropy_histogram", figures.uncertainty_histograms(entropy_in, entropy_shift, test_name=meta["test"]),
                            "Predictive entropy on the test split versus the shifted sets."))
    if any(np.any(arrays[f"test/{m}/mutual_information"] > 0) for m in models):
        mi_in = {m: arrays[f"test/{m}/mutual_information"] for m in models}
        mi_shift = {s: {m: arrays[f"shift/{s}/{m}/mutual_information"] for m in models} for s in shifted}
        section.figures.append(("mi_histogram", figures.uncertainty_histograms(mi_in, mi_shift, "mutual information (nats)", meta["test"]),
                                "Mutual information (epistemic uncertainty); zero for plain networks."))
    for kind, unit in (("rotate", "rotation (degrees)"), ("translate", "translation (pixels)")):
        strengths = meta.get("rotations" if kind == "rotate" else "translations", [])
        if strengths:
            xs = [0.0, *strengths]
            curves = {m: {q: [metrics[f"{kind}/{s:g}/{m}/{q}"] for s in xs] for q in ("acc", "nll", "ece", "entropy")}
                      for m in models}
            section.tables.append(Table(f"Ovadia et al.'s shift protocol: {unit} of {meta['shift_examples']} test digits "
                                        "(accuracy / NLL / ECE per model)", ["model", *[f"{s:g}" for s in strengths]],
                                        [[m] + [f"{metrics[f'{kind}/{s:g}/{m}/acc']:.3f} / {metrics[f'{kind}/{s:g}/{m}/nll']:.2f} / "
                                                f"{metrics[f'{kind}/{s:g}/{m}/ece']:.3f}" for s in strengths] for m in models]))
            section.figures.append((f"shift_{kind}", figures.shift_curves(xs, curves, unit),
                                    f"Accuracy, NLL, ECE and mean predictive entropy against {unit.split(' ')[0]} "
                                    "(0: the unshifted test split)."))
    for m in models:
        section.figures.append((f"grid_{m}", figures.digit_grid(arrays["grid/images"], arrays["grid/labels"],
                                                                arrays[f"grid/{m}/predicted"], arrays[f"grid/{m}/confidence"],
                                                                title=m),
                                f"Test digits with the predicted label and confidence of {m} (red: wrong)."))
    return section
