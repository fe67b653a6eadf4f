"""Report sections, each built from a run folder's files alone. A section whose files are absent
is skipped, so the same report code serves every experiment."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bayesrobust.metrics.bootstrap import with_interval
from bayesrobust.registry import Registry


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


DRAW_SPREAD = ("mi", "variance")  # uncertainty measured between a model's draws: 0 by construction for one pass


def single_pass_models(run, models: list[str]) -> set[str]:
    """The models whose predictive is one deterministic pass (``draws = "none"`` in models.json): their mutual
    information and variance between draws are 0 by construction, so those cells, scores and curves say
    nothing about them and show as "–" (an OOD AUROC of 0.500 would read as a measured coin flip)."""
    if not run.file("models.json").exists():
        return set()
    return {c["name"] for c in run.read_json("models.json") if c.get("draws") == "none" and c["name"] in models}


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


