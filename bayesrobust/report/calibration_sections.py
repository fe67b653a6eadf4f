"""Report section of the calibration suite, drawn from arrays/calibration.npz and metrics.json."""

from __future__ import annotations

from bayesrobust.report import figures
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt


def _with_interval(metrics, key: str, digits: int = 4) -> str:
    value = metrics.get(key)
    low, high = metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    if value is None or low is None:
        return fmt(value, digits)
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


@SECTIONS.register("15-calibration")
def calibration_section(run) -> Section | None:
    if not run.file("arrays/calibration.npz").exists():
        return None
    meta = run.read_json("arrays/calibration.json")
    arrays, metrics = run.load_arrays("arrays/calibration.npz"), run.metrics()
    models = meta["models"]
    columns = ["acc", "nll", "brier", "ece"]
    rows = [[m] + [_with_interval(metrics, f"calib/{m}/{c}") for c in columns]
            + [fmt(metrics.get(f"calib/{m}/{c}")) for c in ("mce", "classwise_ece", "aurc")] for m in models]
    interval = f"95% bootstrap intervals ({meta['bootstrap']} resamples)" if meta["bootstrap"] else "no intervals"
    text = (f"Test split, {meta['samples']} posterior draws per prediction (one pass for plain networks); ECE and MCE "
            f"over {meta['bins']} equal-{meta['scheme']} bins of confidence, each bin at its examples' mean confidence; "
            f"Brier = mean Σₖ (pₖ − 1[y = k])² in [0, 2]; AURC: area under the risk–coverage curve of the predictive "
            f"entropy (lower is better); {interval}.")
    section = Section("Calibration", text, [Table("Calibration on the test split", ["model", *columns, "mce", "classwise_ece", "aurc"], rows)])
    if meta["attacks"]:
        attack_rows = []
        for m in models:
            for a in meta["attacks"]:
                key = f"calib/{m}/{a}"
                attack_rows.append([m, a, fmt(metrics.get(f"{key}/accuracy")), fmt(metrics.get(f"{key}/confidence")),
                                    fmt(metrics.get(f"{key}/confidence_wrong")), fmt(metrics.get(f"{key}/entropy"))])
        section.tables.append(Table(
            f"Under attack ({meta['attack_limit']} test digits; stochastic models with EOT over {meta['adaptive_eot_samples']} "
            "draws per gradient): accuracy, mean confidence, mean confidence on the misclassified examples "
            "(Goodfellow et al.'s 'confidently wrong'), mean entropy",
            ["model", "attack", "accuracy", "confidence", "confidence (wrong)", "entropy"], attack_rows))
    bins = {m: (arrays[f"calib/{m}/count"], arrays[f"calib/{m}/confidence"], arrays[f"calib/{m}/accuracy"]) for m in models}
    section.figures.append(("reliability", figures.reliability_diagrams(bins, meta["scheme"]),
                            "Reliability diagrams: accuracy per confidence bin (blue), its gap to the bin's mean confidence "
                            "(red), the diagonal = perfect calibration; below, the share of test digits per bin."))
    return section
