"""Report section of the calibration suite, drawn from arrays/calibration.npz and metrics.json."""

from __future__ import annotations

from functools import partial

import numpy as np

from bayesrobust.analysis.logistic import EXAMPLES, EXAMPLES_ADV, LOGISTIC, LOGISTIC_RUN, WEIGHTS
from bayesrobust.metrics.bootstrap import with_interval
from bayesrobust.report import figures
from bayesrobust.report.figures import PALETTE, PanelGrid, new_figure, note_coinciding
from bayesrobust.report.sections import DRAW_SPREAD, SECTIONS, Section, Table, fmt, single_pass_models
from bayesrobust.suites.calibration import (
    CALIB,
    CALIB_ARRAYS,
    CALIB_ATTACK,
    CALIB_PAIRED,
    CALIB_SHIFT,
    CONFORMAL,
    CONFORMAL_ADV,
    on_set,
)


@SECTIONS.register("calibration")
def calibration_section(run) -> Section | None:
    if not run.file("arrays/calibration.npz").exists():
        return None
    meta = run.read_json("arrays/calibration.json")
    arrays, metrics = run.load_arrays("arrays/calibration.npz"), run.metrics()
    models = meta["models"]
    columns = ["acc", "nll", "brier", "ece", "ece_debiased"]
    rows = [[m] + [with_interval(metrics, CALIB(model=m, measure=c), 4) for c in columns]
            + [fmt(CALIB.get(metrics, model=m, measure=c)) for c in ("mce", "classwise_ece", "aurc")] for m in models]
    interval = f"95% bootstrap intervals ({meta['bootstrap']} resamples)" if meta["bootstrap"] else "no intervals"
    text = (f"Test split, {meta['samples']} posterior draws per prediction (one pass for plain networks); ECE and MCE "
            f"over {meta['bins']} equal-{meta['scheme']} bins of confidence, each bin at its examples' mean confidence; "
            f"Brier = mean Σₖ (pₖ − 1[y = k])² in [0, 2]; AURC: area under the risk–coverage curve of the predictive "
            f"entropy (lower is better); {interval}. Binned ECE is biased upward (sampling noise only adds to each "
            f"bin's |accuracy − confidence|), so for a well-calibrated model the percentile interval can lie above "
            f"the estimate; ece_debiased subtracts the bootstrap's bias estimate and gives the basic bootstrap "
            f"interval, clipped at 0.")
    section = Section("Calibration", text, [Table("Calibration on the test split", ["model", *columns, "mce", "classwise_ece", "aurc"], rows)]
                      if models else [])
    if meta["attacks"]:
        attack_rows = []
        for m in models:
            for a in meta["attacks"]:
                attack_rows.append([m, a, *(fmt(CALIB_ATTACK.get(metrics, model=m, attack=a, measure=q))
                                            for q in ("accuracy", "confidence", "confidence_wrong", "entropy"))])
        section.tables.append(Table(
            f"Under attack ({meta['attack_limit']} test digits; stochastic models with EOT over {meta['adaptive_eot_samples']} "
            "draws per gradient): accuracy, mean confidence, mean confidence on the misclassified examples "
            "(Goodfellow et al.'s 'confidently wrong'), mean entropy",
            ["model", "attack", "accuracy", "confidence", "confidence (wrong)", "entropy"], attack_rows))
    bins = {m: reliability_bins(arrays, "test", m) for m in models}
    if bins:  # a config may run only the logistic-regression part
        section.figures.append(("reliability", figures.reliability_diagrams(bins, meta["scheme"], panel_titles(meta, metrics, "test")),
                                "Reliability diagrams: accuracy per confidence bin (blue), its gap to the bin's mean "
                                "confidence (red), the diagonal = perfect calibration; below, the share of test digits per bin."))
    if models and CALIB(model=models[0], measure="aurc_confidence") in metrics:
        selective_part(section, meta, arrays, metrics, single_pass_models(run, meta["models"]))
    shifted = [s for s in meta.get("sets", ["test"]) if s != "test"]
    if shifted and models:
        transfer_part(section, meta, shifted, arrays, metrics)
    if models and any(meta.get("shift_grid", {}).values()):
        shift_grid_part(section, meta, metrics)
    if len(models) > 1 and meta.get("reference"):
        paired_part(section, meta, metrics)
    if meta.get("conformal") and models:
        conformal_part(section, meta, metrics)
    if meta.get("logistic"):
        logistic_part(section, meta["logistic"], arrays, metrics)
    return section


def selective_part(section: Section, meta: dict, arrays, metrics, single_pass: set[str] = frozenset()) -> None:
    """Selective prediction on every set: AURC and accuracy at 90% / 80% coverage per score, with
    intervals, and the test split's risk–coverage curves. A single-pass model has no MI row or curve: its
    MI is 0 on every digit, so abstaining by it ranks nothing."""
    from bayesrobust.suites.calibration import COVERAGE_GRID, COVERAGES, SELECTIVE_SCORES

    def scores(m: str) -> list[str]:
        return [score for score in SELECTIVE_SCORES if not (score in DRAW_SPREAD and m in single_pass)]

    rows = []
    for s in [s for s in meta.get("sets", ["test"]) if s not in grid_sets(meta)]:  # the grid's: in its own figure
        key = on_set(s)[0]
        for m in meta["models"]:
            for score in scores(m):
                rows.append([s, m, score, with_interval(metrics, key(model=m, measure=f"aurc_{score}"), 4)]
                            + [with_interval(metrics, key(model=m, measure=f"acc_at_{round(c * 100)}_{score}"), 4) for c in COVERAGES])
    section.tables.append(Table(
        "Selective prediction: abstain on the least certain digits by each score (1 − confidence, entropy, mutual "
        "information). AURC: the mean error rate of the retained digits over all coverages (lower is better); "
        "accuracy on the most certain 90% and 80%. A plain network has no MI rows: its mutual information is 0 on "
        "every digit, so abstaining by it would rank nothing",
        ["set", "model", "score", "AURC", *(f"accuracy at {round(c * 100)}% coverage" for c in COVERAGES)], rows))
    curves = {m: {score: arrays[CALIB_ARRAYS(model=m, group="risk_coverage", quantity=score)] for score in scores(m)}
              for m in meta["models"]}
    section.figures.append(("risk_coverage", risk_coverage_curves(curves, COVERAGE_GRID),
                            "Risk–coverage curves on the test split: the error rate among the digits kept when the model "
                            "abstains on the least certain ones, by each score."))


def post_hoc(meta: dict) -> dict[str, str]:
    """How each post-hoc calibrated model was calibrated ("T = 1.316", "isotonic regression"); a run from
    before calibrators names its temperatures only."""
    return meta.get("calibrations") or {m: f"T = {t:.3f}" for m, t in meta.get("temperatures", {}).items()}


def panel_titles(meta: dict, metrics, set_name: str) -> dict[str, str]:
    """Each reliability panel's title: the model, its ECE on the set's digits and, if post-hoc calibrated,
    how (T, or the calibrator)."""
    calibrations = post_hoc(meta)
    titles = {}
    for m in meta["models"]:
        ece = metrics.get(on_set(set_name)[0](model=m, measure="ece"))
        parts = [m] + ([f"ECE {100 * ece:.2f}%"] if ece is not None else []) + ([calibrations[m]] if m in calibrations else [])
        titles[m] = ", ".join(parts)
    return titles


TRANSFER_COLUMNS = ("acc", "nll", "brier", "ece", "ece_debiased")


def reliability_bins(arrays, set_name: str, model: str) -> tuple:
    """(count, confidence, accuracy) per bin of one model on one set."""
    key = partial(on_set(set_name)[1], model=model, group="bins")
    return tuple(arrays[key(quantity=q)] for q in ("count", "confidence", "accuracy"))


def transfer_part(section: Section, meta: dict, shifted: list[str], arrays, metrics) -> None:
    """Calibration on every labelled shifted set: the table (model × set) and one reliability figure per set."""
    rows = [[s, m] + [with_interval(metrics, CALIB_SHIFT(set=s, model=m, measure=c), 4) for c in TRANSFER_COLUMNS]
            + [fmt(CALIB_SHIFT.get(metrics, set=s, model=m, measure=c)) for c in ("mce", "classwise_ece")]
            for s in shifted for m in meta["models"]]
    section.tables.append(Table("Calibration under transfer: the same metrics on every labelled shifted set",
                                ["set", "model", *TRANSFER_COLUMNS, "mce", "classwise_ece"], rows))
    for s in [s for s in shifted if s not in grid_sets(meta)]:  # the rotation / translation grid: a figure of its own
        bins = {m: reliability_bins(arrays, s, m) for m in meta["models"]}
        section.figures.append((f"reliability_{s}", figures.reliability_diagrams(bins, meta["scheme"], panel_titles(meta, metrics, s)),
                                f"Reliability diagrams on {s} (a shifted set), as above."))


def grid_sets(meta: dict) -> list[str]:
    """The sets that are rotated or translated copies of the test digits (``rotate_<deg>``, …)."""
    from bayesrobust.data.shift import copy_name

    return [copy_name(kind, v) for kind, values in meta.get("shift_grid", {}).items() for v in values]


GRID_QUANTITIES = (("acc", "accuracy"), ("nll", "NLL (nats)"), ("brier", "Brier"), ("ece", "ECE"))


def shift_grid_part(section: Section, meta: dict, metrics) -> None:
    """Accuracy, NLL, Brier and ECE against the rotation / translation (0: the whole test split), with
    their intervals as bands, one figure per kind."""
    from bayesrobust.data.shift import copy_name

    for kind, unit in (("rotate", "rotation (degrees)"), ("translate", "translation (pixels)")):
        strengths = meta["shift_grid"].get(kind, [])
        if not strengths:
            continue
        keys = [on_set(s)[0] for s in ["test", *(copy_name(kind, v) for v in strengths)]]  # 0: the whole test split
        curves, bands = {}, {}
        for m in meta["models"]:
            def along(measure: str, m=m, keys=keys) -> list:
                return [metrics.get(key(model=m, measure=measure)) for key in keys]

            curves[m] = {q: along(q) for q, _ in GRID_QUANTITIES}
            bands[m] = {q: (along(f"{q}_low"), along(f"{q}_high")) for q, _ in GRID_QUANTITIES}
        section.figures.append((f"calibration_{kind}", figures.shift_curves([0.0, *strengths], curves, unit, GRID_QUANTITIES, bands),
                                f"Calibration against {unit.split(' ')[0]} of {meta['shift_examples']} test digits (0: the whole "
                                "test split), with 95% bootstrap bands; the rows of the transfer table above."))


def paired_part(section: Section, meta: dict, metrics) -> None:
    """Each model minus the reference on the same digits, with paired intervals; * where the interval
    excludes 0, and a warning wherever post-hoc calibration made a shifted set's NLL worse."""
    reference, rows = meta["reference"], []
    for s in meta.get("sets", ["test"]):
        for m in meta["models"]:
            paired = partial(CALIB_PAIRED, set=s, model=m)
            if m == reference or paired(measure="nll") not in metrics:
                continue
            rows.append([s, f"{m} − {reference}"] + [_delta(metrics, paired(measure=c)) for c in ("acc", "nll", "brier", "ece")])
            low = metrics.get(paired(measure="nll_low"))
            if s != "test" and m in post_hoc(meta) and low is not None and low > 0:
                section.warnings.append(
                    f"Post-hoc calibration made {s} worse: {m} ({post_hoc(meta)[m]}) has a higher NLL "
                    f"than {reference} on the same digits, Δ = {metrics[paired(measure='nll')]:+.4f} "
                    f"[{low:+.4f}, {metrics[paired(measure='nll_high')]:+.4f}].")
    if rows:
        section.tables.append(Table(
            f"Paired differences with {reference} on the same digits (model − {reference}; 95% paired bootstrap "
            "intervals; * where the interval excludes 0): negative Δ NLL / Brier / ECE and positive Δ accuracy favour the model",
            ["set", "difference", "Δ accuracy", "Δ NLL", "Δ Brier", "Δ ECE"], rows))


def conformal_part(section: Section, meta: dict, metrics) -> None:
    """Split conformal sets: coverage (interval) and mean size on every set and under each attack."""
    c = meta["conformal"]
    places = [(s, partial(CONFORMAL, set=s)) for s in meta.get("sets", ["test"])]
    places += [(f"{a} (attacked, {meta['attack_limit']} test digits)", partial(CONFORMAL_ADV, attack=a)) for a in meta["attacks"]]
    rows = [[where, m, method, with_interval(metrics, key(model=m, method=method, measure="coverage"), 4),
             fmt(metrics.get(key(model=m, method=method, measure="size")), 2),
             fmt(metrics.get(key(model=m, method=method, measure="empty")), 3)]
            for where, key in places for m in meta["models"] for method in c["methods"]
            if key(model=m, method=method, measure="coverage") in metrics]
    section.tables.append(Table(
        f"Conformal prediction sets (split conformal, α = {c['alpha']:g}, calibrated on the validation split; RAPS λ = "
        f"{c['lam']:g}, k_reg = {c['k_reg']}): coverage is guaranteed ≥ {1 - c['alpha']:.2f} only where the digits are "
        "exchangeable with the validation split (the test split), and only as far as that split played no part in "
        "training — it also chose each network's early-stopping epoch (and the temperature), which can leave the test "
        "coverage a little short; on shifted sets and under attack it is measured, not promised. Size: mean number of classes per set; empty: share of empty sets (counted as misses)",
        ["set", "model", "method", "coverage", "mean size", "empty"], rows))


def _delta(metrics, key: str) -> str:
    value, low, high = metrics.get(key), metrics.get(f"{key}_low"), metrics.get(f"{key}_high")
    if value is None:
        return "–"
    if low is None or high is None:
        return f"{value:+.4f}"
    return f"{value:+.4f} [{low:+.4f}, {high:+.4f}]" + (" *" if low > 0 or high < 0 else "")


LOGISTIC_COLUMNS = ("clean_error", "nll", "adv_error", "adv_confidence_wrong", "w_l1", "w_zero_fraction")


def logistic_part(section: Section, config: dict, arrays, metrics) -> None:
    """Goodfellow et al.'s logistic regression: the table of the three trainings and Figure 2's layout."""
    names = [fields["variant"] for _, fields in WEIGHTS.select(arrays)]
    a, b = config["classes"]
    rows = [[n] + [fmt(LOGISTIC.get(metrics, variant=n, measure=c)) for c in LOGISTIC_COLUMNS] for n in names]
    section.tables.append(Table(
        f"Goodfellow et al. (2015): logistic regression, {a} (y = −1) vs {b} (y = +1), "
        f"{int(metrics[LOGISTIC_RUN(measure='test_digits')])} test digits; adversarial error under the exact worst case at "
        f"ε {config['eps']:g} (published for the plain model: 99%); adversarial objective E ζ(ε‖w‖₁ − y(wᵀx + b)), "
        "L1: mean logistic loss + λ‖w‖₁; w_zero_fraction: share of |w| < 1e-3",
        ["model", *LOGISTIC_COLUMNS], rows))
    section.figures.append(("logistic_weights", weight_maps({n: arrays[WEIGHTS(variant=n)] for n in names}),
                            "Weights of each logistic regression (top) and their sign (bottom): the sign is the "
                            "direction of the optimal perturbation (Goodfellow et al. Figure 2)."))
    section.figures.append(("logistic_examples", figures.image_rows(
        {"test digits": arrays[EXAMPLES], f"ε {config['eps']:g} (plain)": arrays[EXAMPLES_ADV]}),
        "Test digits and their worst-case perturbations against the plain logistic regression."))


def weight_maps(weights: dict[str, np.ndarray]):
    """Goodfellow et al.'s Figure 2 layout for linear models: each model's weights as an image (top,
    diverging colours around zero, saturating at the 99th percentile of |w|) and their sign, the optimal perturbation's direction (bottom)."""
    names = list(weights)
    grid = PanelGrid(2, len(names), cell=1.4, left=0.6)
    for c, name in enumerate(names):
        w = weights[name].reshape(28, 28)
        bound = max(float(np.quantile(np.abs(w), 0.99)), 1e-12)  # a few large weights would wash out the rest
        grid.image(0, c, w, title=name, cmap="RdBu_r", vmin=-bound, vmax=bound)
        grid.image(1, c, np.sign(w), cmap="RdBu_r", vmin=-1, vmax=1)
    grid.row_label(0, "w")
    grid.row_label(1, "sign(w)")
    return grid.fig


def risk_coverage_curves(curves: dict[str, dict[str, np.ndarray]], coverage: np.ndarray):
    """Selective prediction: the error rate among the retained digits against the share retained, one
    panel per uncertainty score (shared axes), one line per model; lower is better."""
    scores = list(dict.fromkeys(score for by_score in curves.values() for score in by_score))  # a model may lack one
    fig, axes = new_figure(1, len(scores), width=2.7, height=2.4, sharey=True)
    for i, (model, by_score) in enumerate(curves.items()):
        for ax, score in zip(axes[0], scores):
            if score in by_score:
                ax.plot(coverage, by_score[score], color=PALETTE[i % len(PALETTE)], lw=1.2, label=model)
    for ax, score in zip(axes[0], scores):
        ax.set(title=f"abstaining by {score}", xlabel="coverage", xlim=(0, 1))
        ax.grid(alpha=0.3)
        note_coinciding(ax, {model: by_score[score] for model, by_score in curves.items() if score in by_score})
    axes[0][0].set_ylabel("risk (error rate of the retained)")
    axes[0][0].legend(fontsize=6)  # the first panel has every model
    fig.tight_layout()
    return fig
