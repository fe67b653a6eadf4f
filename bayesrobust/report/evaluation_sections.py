"""The evaluation suite's report section: the transfer table (Bradshaw et al.'s layout), the OOD tables per
shifted set, the GP models' feature-collapse diagnostics, Ovadia et al.'s shift curves, and its figures
(uncertainty histograms and densities, the class-probability forest, the prediction grid)."""

from __future__ import annotations

from functools import partial

import numpy as np

from bayesrobust.data.shift import copy_name
from bayesrobust.metrics.bootstrap import with_interval
from bayesrobust.predictive import import_arviz
from bayesrobust.report.figures import PALETTE, PanelGrid, new_figure, shift_curves
from bayesrobust.report.sections import DRAW_SPREAD, SECTIONS, Section, Table, fmt, single_pass_models
from bayesrobust.suites.evaluation import (
    CLEAN,
    GRID,
    GRID_IMAGES,
    GRID_LABELS,
    OVADIA,
    SHIFTED,
    SHIFTED_EXAMPLES,
    TEST_EXAMPLES,
    TEST_LABELS,
    on_set,
)

OOD_COLUMNS = (("entropy", "entropy"), ("mi", "MI"), ("variance", "variance"), ("max_probability", "1 − confidence"))


COLLAPSE_COLUMNS = (("inducing_distance", "distance to nearest inducing point / lengthscale"),
                    ("training_distance", "distance to nearest training digit / lengthscale"),
                    ("latent_std_ratio", "latent std / prior std"), ("latent_variance", "latent variance"))
COLLAPSE_SCORES = (("latent_variance", "latent-variance AUROC"), ("training_distance", "training-distance AUROC"))


def transfer_table(metrics: dict, models: list[str], sets: list[tuple[str | None, str]]) -> Table:
    """Bradshaw et al.'s layout: accuracy / mean log-likelihood of every model on every labelled set
    (``sets``: (set name, or None for the test split; column label))."""
    def log_likelihood(key) -> str:  # runs before the intervals wrote only the NLL
        ll, nll = key(measure="ll"), key(measure="nll")
        return with_interval(metrics, ll) if nll not in metrics or ll in metrics else f"{-metrics[nll]:.3f}"

    rows = [[m] + [f"{with_interval(metrics, on_set(s)(model=m, measure='acc'))} / {log_likelihood(partial(on_set(s), model=m))}"
                   for s, _ in sets] for m in models]
    return Table("Transfer testing: accuracy / mean log-likelihood (nats) [95% bootstrap interval]; "
                 "log 0.1 = −2.30 is a uniform \"don't know\"", ["model", *(name for _, name in sets)], rows)


def ood_table(metrics: dict, models: list[str], set_name: str, unlabelled: bool, single_pass: set[str] = frozenset()) -> Table:
    """One shifted set: mean uncertainty, and how well each uncertainty score tells the set from the test
    split (ROC-AUC / FPR@95); a VAE's ELBO columns where written. A single-pass model's MI columns are "–"."""
    vae = any(SHIFTED(set=set_name, model=m, measure="elbo") in metrics for m in models)
    headers = ["model", "confidence", "entropy", "MI", *(f"{label} AUROC / FPR@95" for _, label in OOD_COLUMNS)]
    headers += ["ELBO", "−ELBO AUROC", "recon. AUROC"] if vae else []

    def cell(key: str) -> str:
        return fmt(metrics[key], 3) if key in metrics else "–"

    def shown(m: str, measure: str) -> str:  # a single-pass model's spread between draws ("mi", "auroc_variance", …): "–"
        spread = m in single_pass and measure.split("_")[-1] in DRAW_SPREAD
        return "–" if spread else cell(SHIFTED(set=set_name, model=m, measure=measure))

    rows = []
    for m in models:
        row = [m, *(shown(m, c) for c in ("confidence", "entropy", "mi"))]
        row += [f"{shown(m, f'auroc_{k}')} / {shown(m, f'fpr95_{k}')}" for k, _ in OOD_COLUMNS]
        row += [cell(SHIFTED(set=set_name, model=m, measure=c)) for c in ("elbo", "auroc_elbo", "auroc_reconstruction")] if vae else []
        rows.append(row)
    what = " (unlabelled: label-free quantities only)" if unlabelled else ""
    return Table(f"Shifted set {set_name}{what}: telling it from the test split by each uncertainty score "
                 "(AUROC; FPR@95: share of test digits flagged when 95% of this set are)", headers, rows)


def collapse_table(metrics: dict, models: list[str], sets: list[tuple[str | None, str]]) -> Table | None:
    """The GP models' feature-collapse diagnostics on the test split and every shifted set, with the AUROC
    of the latent variance and of the distance to the training digits as OOD scores: the first is what the
    GP sees, the second what its extractor keeps apart; None without a GP model."""
    gp = [m for m in models if CLEAN(model=m, measure="latent_std_ratio") in metrics]
    if not gp:
        return None

    def cell(key: str) -> str:
        return fmt(metrics[key], 3) if key in metrics else "–"

    rows = [[m, label, *(cell(on_set(s)(model=m, measure=k)) for k, _ in COLLAPSE_COLUMNS),
             *(cell(on_set(s)(model=m, measure=f"auroc_{k}")) for k, _ in COLLAPSE_SCORES)]
            for m in gp for s, label in sets]
    return Table("Feature collapse (GP models): does the GP see an unfamiliar image as far from its data? A GP that "
                 "reverts to its prior off-distribution has larger distances and a std ratio near 1 there. A high "
                 "training-distance AUROC beside a low latent-variance one: the features keep the image apart, the GP "
                 "does not see it",
                 ["model", "set", *(label for _, label in COLLAPSE_COLUMNS), *(label for _, label in COLLAPSE_SCORES)], rows)


def forest_figure(run, stochastic: list[str], arrays, count: int = 3) -> tuple[str, object, str]:
    """Per-class predictive probabilities, as ArviZ forest plots, of the ``count`` test digits the first
    stochastic model is least sure of (highest MI), from the run's NetCDF posterior-predictive draws."""
    from bayesrobust.predictive import import_arviz

    az = import_arviz()
    examples = [int(i) for i in np.argsort(-arrays[TEST_EXAMPLES(model=stochastic[0], quantity="mutual_information")], kind="stable")[:count]]
    idata = {m: az.from_netcdf(str(run.file(f"arrays/predictive_{m}_test.nc"))) for m in stochastic}
    return ("class_forest", class_probability_forest(idata, examples, arrays[TEST_LABELS]),
            f"Class probabilities of the {count} test digits {stochastic[0]} is least sure of (highest MI): median "
            "and 94% highest-density interval of the predictive draws (ArviZ forest plots).")


@SECTIONS.register("evaluation")
def evaluation_section(run) -> Section | None:
    if not run.file("arrays/evaluation.npz").exists():
        return None
    meta = run.read_json("arrays/evaluation.json")
    if not meta["models"]:
        return None
    arrays = run.load_arrays("arrays/evaluation.npz")
    metrics = run.metrics()
    models, shifted = meta["models"], meta["shifted"]
    single_pass = single_pass_models(run, models)
    cols = ["acc", "nll", "confidence", "entropy", "mi"]
    rows = [[m] + ["–" if c in DRAW_SPREAD and m in single_pass else fmt(CLEAN.get(metrics, model=m, measure=c)) for c in cols]
            for m in models]
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
    labelled = [s for s in shifted if s not in meta.get("unlabelled", [])]
    section.tables.append(transfer_table(metrics, models, [(None, meta["test"]), *((s, s) for s in labelled)]))
    for set_name in shifted:
        section.tables.append(ood_table(metrics, models, set_name, set_name not in labelled, single_pass))
    collapse = collapse_table(metrics, models, [(None, meta["test"]), *((s, s) for s in shifted)])
    if collapse is not None:
        section.tables.append(collapse)
    entropy_in = {m: arrays[TEST_EXAMPLES(model=m, quantity="entropy")] for m in models}
    entropy_shift = {s: {m: arrays[SHIFTED_EXAMPLES(set=s, model=m, quantity="entropy")] for m in models} for s in shifted}
    section.figures.append(("entropy_histogram", uncertainty_histograms(entropy_in, entropy_shift, test_name=meta["test"]),
                            "Predictive entropy on the test split versus the shifted sets."))
    section.figures.append(("entropy_density", uncertainty_densities({meta["test"]: entropy_in, **entropy_shift}),
                            "The same as densities (ArviZ kernel density estimates, log density axis): the test "
                            "split filled, each shifted set a line."))
    stochastic = [m for m in models if m not in single_pass and np.any(arrays[TEST_EXAMPLES(model=m, quantity="mutual_information")] > 0)]
    if stochastic:  # a single-pass model's MI is a spike at 0: no panel for it
        mi_in = {m: arrays[TEST_EXAMPLES(model=m, quantity="mutual_information")] for m in stochastic}
        mi_shift = {s: {m: arrays[SHIFTED_EXAMPLES(set=s, model=m, quantity="mutual_information")] for m in stochastic}
                    for s in shifted}
        section.figures.append(("mi_histogram", uncertainty_histograms(mi_in, mi_shift, "mutual information (nats)", meta["test"]),
                                "Mutual information (epistemic uncertainty) of the models that draw several predictions; "
                                "a plain network's is 0 by construction and is left out."))
        section.figures.append(("mi_density", uncertainty_densities(
            {meta["test"]: {m: mi_in[m] for m in stochastic}, **{s: {m: v[m] for m in stochastic} for s, v in mi_shift.items()}},
            "mutual information (nats)"), "Mutual information densities of the stochastic models (ArviZ)."))
        section.figures.append(forest_figure(run, stochastic, arrays))
    for kind, unit in (("rotate", "rotation (degrees)"), ("translate", "translation (pixels)")):
        strengths = meta.get("rotations" if kind == "rotate" else "translations", [])
        if strengths:
            xs = [0.0, *strengths]

            def value(s, m, q, kind=kind):
                return metrics[OVADIA(copy=copy_name(kind, s), model=m, measure=q)]

            curves = {m: {q: [value(s, m, q) for s in xs] for q in ("acc", "nll", "ece", "entropy")} for m in models}
            section.tables.append(Table(f"Ovadia et al.'s shift protocol: {unit} of {meta['shift_examples']} test digits "
                                        "(accuracy / NLL / ECE per model)", ["model", *[f"{s:g}" for s in strengths]],
                                        [[m] + [f"{value(s, m, 'acc'):.3f} / {value(s, m, 'nll'):.2f} / {value(s, m, 'ece'):.3f}"
                                                for s in strengths] for m in models]))
            section.figures.append((f"shift_{kind}", shift_curves(xs, curves, unit),
                                    f"Accuracy, NLL, ECE and mean predictive entropy against {unit.split(' ')[0]} "
                                    "(0: the unshifted test split)."))
    for m in models:
        section.figures.append((f"grid_{m}", digit_grid(arrays[GRID_IMAGES], arrays[GRID_LABELS],
                                                                arrays[GRID(model=m, quantity="predicted")],
                                                                arrays[GRID(model=m, quantity="confidence")],
                                                                title=m),
                                f"Test digits with the predicted label and confidence of {m} (red: wrong)."))
    return section


def uncertainty_histograms(in_dist: dict[str, np.ndarray], shifted: dict[str, dict[str, np.ndarray]],
                           quantity: str = "predictive entropy (nats)", test_name: str = "test"):
    """One panel per model: the distribution of an uncertainty measure on the test split and on
    each shifted set (normalised histograms; the panels share both axes, so models compare at a glance)."""
    models = list(in_dist)
    fig, axes = new_figure(1, len(models), width=3.4, sharex=True, sharey=True)
    upper = max([float(np.max(v)) for v in in_dist.values()] +
                [float(np.max(v)) for per in shifted.values() for v in per.values()] + [1e-3])
    bins = np.linspace(0.0, upper * 1.02, 40)
    for ax, model in zip(axes[0], models):
        ax.hist(in_dist[model], bins=bins, density=True, alpha=0.6, color=PALETTE[0], label=f"{test_name} (in-dist.)")
        for i, (set_name, per_model) in enumerate(shifted.items(), start=1):
            ax.hist(per_model[model], bins=bins, density=True, histtype="step", linewidth=1.5,
                    color=PALETTE[i % len(PALETTE)], label=set_name)
        ax.set_title(model)
        ax.set_xlabel(quantity)
    axes[0][0].set_ylabel("density")
    axes[0][0].legend(loc="upper right")
    fig.tight_layout()
    return fig


def digit_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
               title: str = "", ncols: int = 8):
    """Digits with their predicted label and confidence; wrong predictions in red."""
    n = len(images)
    grid = PanelGrid(int(np.ceil(n / ncols)), ncols, cell=0.85, font=8, top=0.3 if title else 0.0)
    for i in range(n):
        ok = predicted[i] == labels[i]
        grid.image(i // ncols, i % ncols, images[i], title=f"{predicted[i]} ({confidence[i]:.2f})",
                   color="black" if ok else "#d62728")
    if title:
        grid.heading(title)
    return grid.fig


def uncertainty_densities(values: dict[str, dict[str, np.ndarray]], quantity: str = "predictive entropy (nats)"):
    """One panel per model: ArviZ kernel density estimates (boundary-corrected at zero, where entropy and
    MI pile up) of an uncertainty measure on every set, ``values[set][model]``, the first set filled; a
    log density axis, so the in-distribution spike near zero and the shifted sets' tails both show."""
    az = import_arviz()
    sets = list(values)
    models = list(values[sets[0]])
    fig, axes = new_figure(1, len(models), width=3.4)
    for ax, model in zip(axes[0], models):
        for i, set_name in enumerate(sets):
            colour = PALETTE[i % len(PALETTE)]
            data = np.asarray(values[set_name][model], dtype=np.float64)
            if np.ptp(data) <= 1e-12:  # a constant (a plain network's MI is exactly zero): a spike, not a density
                ax.axvline(float(data.mean()), color=colour, linewidth=1.5, label=set_name)
                continue
            az.plot_kde(data, ax=ax, legend=False, bw="scott", plot_kwargs={"color": colour, "linewidth": 1.5, "label": set_name},
                        fill_kwargs={"alpha": 0.25, "color": colour} if i == 0 else None)
        ax.set_yscale("log")
        ax.set_ylim(bottom=1e-2)
        ax.set_xlim(left=0.0)
        ax.tick_params(labelsize=8)
        ax.set_title(model)
        ax.set_xlabel(quantity)
        ax.set_ylabel("density (log scale)")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


def class_probability_forest(idata_by_model: dict[str, object], examples: list[int], labels: np.ndarray, hdi: float = 0.94):
    """ArviZ forest plots of the per-class predictive probabilities of chosen test digits: one panel per
    model, one row per (digit, class) with the draws' median and ``hdi`` highest-density interval — where
    the draws disagree (MI), the intervals are wide."""
    az = import_arviz()
    models = list(idata_by_model)
    fig, axes = new_figure(1, len(models), width=3.0, height=0.5 + 0.22 * 10 * len(examples), sharex=True)
    for ax, model in zip(axes[0], models):
        probs = idata_by_model[model].posterior_predictive["probs"]
        az.plot_forest({f"#{e} (y={int(labels[e])})": probs.sel(example=e).rename({"class": "p"}) for e in examples},
                       combined=True, hdi_prob=hdi, ax=ax, colors=PALETTE[:len(examples)], textsize=7,
                       legend=False)
        ax.set_title(model)
        ax.set_xlabel("class probability")
        ax.set_xlim(-0.02, 1.02)
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return fig
