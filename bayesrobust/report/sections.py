"""Report sections, each built from a run folder's files alone. A section whose files are absent
is skipped, so the same report code serves every experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bayesrobust.metrics.bootstrap import with_interval
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


SECTIONS: Registry[Callable] = Registry("report section", package="bayesrobust.report")


def fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@SECTIONS.register("summary")
def summary_section(run) -> Section | None:
    """The headline numbers of every model in one table (each suite's per-model headline metrics), before
    the suites' own sections."""
    from bayesrobust.suites.registry import headlines

    metrics = run.metrics()
    columns = [h for h in headlines() if h.per_model]
    models = list(dict.fromkeys(fields["model"] for h in columns for _, fields in h.key.select(metrics)))
    columns = [h for h in columns if any(h.key(model=m) in metrics for m in models)]
    if not models or not columns:
        return None
    rows = [[m] + [with_interval(metrics, h.key(model=m)) for h in columns] for m in models]
    return Section("Summary", "Headline numbers per model (95% bootstrap intervals in brackets where the run computed "
                   "them); the sections below give each suite's tables, settings and figures.",
                   [Table("Every model at a glance", ["model", *(h.label for h in columns)], rows)])


def transfer_table(metrics: dict, models: list[str], sets: list[tuple[str, str]]) -> Table:
    """Bradshaw et al.'s layout: accuracy / mean log-likelihood of every model on every labelled set."""
    def log_likelihood(key: str) -> str:  # runs before the intervals wrote only the NLL
        return with_interval(metrics, f"{key}/ll") if f"{key}/nll" not in metrics or f"{key}/ll" in metrics \
            else f"{-metrics[f'{key}/nll']:.3f}"

    rows = [[m] + [f"{with_interval(metrics, f'{prefix}/{m}/acc')} / {log_likelihood(f'{prefix}/{m}')}"
                   for prefix, _ in sets] for m in models]
    return Table("Transfer testing: accuracy / mean log-likelihood (nats) [95% bootstrap interval]; "
                 "log 0.1 = −2.30 is a uniform \"don't know\"", ["model", *(name for _, name in sets)], rows)


OOD_COLUMNS = (("entropy", "entropy"), ("mi", "MI"), ("variance", "variance"), ("max_probability", "1 − confidence"))


DRAW_SPREAD = ("mi", "variance")  # uncertainty measured between a model's draws: 0 by construction for one pass


def single_pass_models(run, models: list[str]) -> set[str]:
    """The models whose predictive is one deterministic pass (``draws = "none"`` in models.json): their mutual
    information and variance between draws are 0 by construction, so those cells, scores and curves say
    nothing about them and show as "–" (an OOD AUROC of 0.500 would read as a measured coin flip)."""
    if not run.file("models.json").exists():
        return set()
    return {c["name"] for c in run.read_json("models.json") if c.get("draws") == "none" and c["name"] in models}


def ood_table(metrics: dict, models: list[str], set_name: str, unlabelled: bool, single_pass: set[str] = frozenset()) -> Table:
    """One shifted set: mean uncertainty, and how well each uncertainty score tells the set from the test
    split (ROC-AUC / FPR@95); a VAE's ELBO columns where written. A single-pass model's MI columns are "–"."""
    prefix = f"shift/{set_name}"
    vae = any(f"{prefix}/{m}/elbo" in metrics for m in models)
    headers = ["model", "confidence", "entropy", "MI", *(f"{label} AUROC / FPR@95" for _, label in OOD_COLUMNS)]
    headers += ["ELBO", "−ELBO AUROC", "recon. AUROC"] if vae else []

    def cell(key: str) -> str:
        return fmt(metrics[key], 3) if key in metrics else "–"

    def shown(m: str, key: str) -> str:  # a single-pass model's spread between draws ("mi", "auroc_variance", …): "–"
        return "–" if m in single_pass and key.rsplit("/", 1)[1].split("_")[-1] in DRAW_SPREAD else cell(key)

    rows = []
    for m in models:
        row = [m, *(shown(m, f"{prefix}/{m}/{c}") for c in ("confidence", "entropy", "mi"))]
        row += [f"{shown(m, f'{prefix}/{m}/auroc_{k}')} / {shown(m, f'{prefix}/{m}/fpr95_{k}')}" for k, _ in OOD_COLUMNS]
        row += [cell(f"{prefix}/{m}/{c}") for c in ("elbo", "auroc_elbo", "auroc_reconstruction")] if vae else []
        rows.append(row)
    what = " (unlabelled: label-free quantities only)" if unlabelled else ""
    return Table(f"Shifted set {set_name}{what}: telling it from the test split by each uncertainty score "
                 "(AUROC; FPR@95: share of test digits flagged when 95% of this set are)", headers, rows)


COLLAPSE_COLUMNS = (("inducing_distance", "distance to nearest inducing point / lengthscale"),
                    ("training_distance", "distance to nearest training digit / lengthscale"),
                    ("latent_std_ratio", "latent std / prior std"), ("latent_variance", "latent variance"))
COLLAPSE_SCORES = (("latent_variance", "latent-variance AUROC"), ("training_distance", "training-distance AUROC"))


def collapse_table(metrics: dict, models: list[str], sets: list[tuple[str, str]]) -> Table | None:
    """The GP models' feature-collapse diagnostics on the test split and every shifted set, with the AUROC
    of the latent variance and of the distance to the training digits as OOD scores: the first is what the
    GP sees, the second what its extractor keeps apart; None without a GP model."""
    gp = [m for m in models if f"clean/{m}/latent_std_ratio" in metrics]
    if not gp:
        return None

    def cell(key: str) -> str:
        return fmt(metrics[key], 3) if key in metrics else "–"

    rows = [[m, set_name, *(cell(f"{prefix}/{m}/{k}") for k, _ in COLLAPSE_COLUMNS),
             *(cell(f"{prefix}/{m}/auroc_{k}") for k, _ in COLLAPSE_SCORES)]
            for m in gp for prefix, set_name in sets]
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
    examples = [int(i) for i in np.argsort(-arrays[f"test/{stochastic[0]}/mutual_information"], kind="stable")[:count]]
    idata = {m: az.from_netcdf(str(run.file(f"arrays/predictive_{m}_test.nc"))) for m in stochastic}
    return ("class_forest", figures.class_probability_forest(idata, examples, arrays["test/labels"]),
            f"Class probabilities of the {count} test digits {stochastic[0]} is least sure of (highest MI): median "
            "and 94% highest-density interval of the predictive draws (ArviZ forest plots).")


@SECTIONS.register("models")
def models_section(run) -> Section | None:
    """The run's models, so a reader can tell what each name is: architecture, mode, where its weights
    come from, size, training, post-hoc calibration and draws per prediction (``models.json``)."""
    if not run.file("models.json").exists():
        return None
    rows = []
    for c in run.read_json("models.json"):
        name = c["name"]
        calibration = c.get("calibration") or (f"T = {c['temperature']:.3f}" if c.get("calibrate") == "temperature" else "none")
        draws = {"sampled": f"{c['draws_per_prediction']} sampled", "fixed": f"{c['draws_per_prediction']} fixed",
                 "none": "1 (deterministic)"}.get(c["draws"], str(c["draws_per_prediction"]))
        rows.append([name, c["arch"], c["mode"], f"{c['parameters']:,}", c["source"], str(c["epochs_run"] or "–"),
                     str(c["best_epoch"] or "–"), calibration, draws])
    return Section("Models", "Every model of the run. A model with the weights of another is the same trained network in "
                   "another mode or calibrated after training; best epoch: the epoch of the lowest validation NLL, whose "
                   "weights early stopping kept.",
                   [Table("Models of this run", ["model", "architecture", "mode", "parameters", "weights", "epochs run",
                                               "best epoch", "post-hoc calibration", "draws per prediction"], rows)])


@SECTIONS.register("evaluation")
def evaluation_section(run) -> Section | None:
    from bayesrobust.data.shift import copy_name
    from bayesrobust.suites.evaluation import OVADIA

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
    rows = [[m] + ["–" if c in DRAW_SPREAD and m in single_pass else fmt(metrics.get(f"clean/{m}/{c}")) for c in cols]
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
    section.tables.append(transfer_table(metrics, models, [("clean", meta["test"]), *((f"shift/{s}", s) for s in labelled)]))
    for set_name in shifted:
        section.tables.append(ood_table(metrics, models, set_name, set_name not in labelled, single_pass))
    collapse = collapse_table(metrics, models, [("clean", meta["test"]), *((f"shift/{s}", s) for s in shifted)])
    if collapse is not None:
        section.tables.append(collapse)
    entropy_in = {m: arrays[f"test/{m}/entropy"] for m in models}
    entropy_shift = {s: {m: arrays[f"shift/{s}/{m}/entropy"] for m in models} for s in shifted}
    section.figures.append(("entropy_histogram", figures.uncertainty_histograms(entropy_in, entropy_shift, test_name=meta["test"]),
                            "Predictive entropy on the test split versus the shifted sets."))
    section.figures.append(("entropy_density", figures.uncertainty_densities({meta["test"]: entropy_in, **entropy_shift}),
                            "The same as densities (ArviZ kernel density estimates, log density axis): the test "
                            "split filled, each shifted set a line."))
    stochastic = [m for m in models if m not in single_pass and np.any(arrays[f"test/{m}/mutual_information"] > 0)]
    if stochastic:  # a single-pass model's MI is a spike at 0: no panel for it
        mi_in = {m: arrays[f"test/{m}/mutual_information"] for m in stochastic}
        mi_shift = {s: {m: arrays[f"shift/{s}/{m}/mutual_information"] for m in stochastic} for s in shifted}
        section.figures.append(("mi_histogram", figures.uncertainty_histograms(mi_in, mi_shift, "mutual information (nats)", meta["test"]),
                                "Mutual information (epistemic uncertainty) of the models that draw several predictions; "
                                "a plain network's is 0 by construction and is left out."))
        section.figures.append(("mi_density", figures.uncertainty_densities(
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
            section.figures.append((f"shift_{kind}", figures.shift_curves(xs, curves, unit),
                                    f"Accuracy, NLL, ECE and mean predictive entropy against {unit.split(' ')[0]} "
                                    "(0: the unshifted test split)."))
    for m in models:
        section.figures.append((f"grid_{m}", figures.digit_grid(arrays["grid/images"], arrays["grid/labels"],
                                                                arrays[f"grid/{m}/predicted"], arrays[f"grid/{m}/confidence"],
                                                                title=m),
                                f"Test digits with the predicted label and confidence of {m} (red: wrong)."))
    return section
