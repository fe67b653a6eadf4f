"""Report sections of the attack suite, drawn from arrays/attack.npz, attack.json and metrics.json: its
runs here, and each configured analysis's own section (``analysis/``) in the analyses' order."""

from __future__ import annotations

import numpy as np

from bayesrobust.analysis import analyses
from bayesrobust.report.figures import PALETTE, image_rows, new_figure, note_coinciding
from bayesrobust.report.sections import SECTIONS, Section, Table, fmt
from bayesrobust.suites.attack_results import CLEAN, ORIGINAL, PER_EXAMPLE, RUN, SHOWN, WORST_CASE, AttackFiles

RUN_COLUMNS = ["success_rate", "success_rate_fresh", "error_rate", "confidence", "entropy", "mi", "l0", "l2", "linf",
               "l2_success", "iterations", "seconds"]
UNDERSTATED_BY = 0.05  # a configured form this far below its adaptive form gets a warning


def _run_row(label: str, run: str, model: str, metrics) -> list[str]:
    return [label] + [fmt(RUN.get(metrics, run=run, model=model, measure=c), 3 if c in ("l0", "iterations", "seconds") else 4)
                      for c in RUN_COLUMNS]


def understated_runs(meta, metrics) -> list[tuple[str, str, str, float, float]]:
    """(run, model, measure, configured, adaptive) wherever the configured form's success — under the
    judge's draws or under fresh ones — is more than ``UNDERSTATED_BY`` below its adaptive form's."""
    out = []
    for adaptive, info in meta.adaptive.items():
        for name in meta.models:
            for measure in ("success_rate", "success_rate_fresh"):
                a_key, c_key = RUN(run=adaptive, model=name, measure=measure), RUN(run=info["of"], model=name, measure=measure)
                if a_key not in metrics or c_key not in metrics:  # plain models have no adaptive rows
                    continue
                a, c = metrics[a_key], metrics[c_key]
                if a is not None and c is not None and a - c > UNDERSTATED_BY:
                    out.append((info["of"], name, measure, c, a))
                    break
    return out


@SECTIONS.register("attacks")
def attack_runs_section(run) -> Section | None:
    files = AttackFiles.load(run)
    if files is None or not files.meta.runs:
        return None
    meta, arrays, metrics = files.meta, files.arrays, files.metrics
    adaptive_of = {info["of"]: (name, info["params"]) for name, info in meta.adaptive.items()}
    text = (f"{meta.examples} test examples; success and uncertainty judged on {meta.eval_samples} MC draws of the "
            f"predictive (1 for plain networks) — the same judge every attack uses for its own stopping and "
            f"bookkeeping; 'success_rate_fresh' re-judges the returned images on independent draws. Gradients averaged "
            f"over {meta.eot_samples} dropout mask(s) per step as configured. Rows marked 'adaptive' run the same "
            "attack on stochastic models with expectation over transformation and, where the attack has one, a margin "
            "past the boundary (C&W's κ in logits, BIM-A's stopping margin in nats; parameters below the table). The clean rows give the same quantities on the unattacked examples; "
            "'worst case' counts an example as broken when any run broke it (robust accuracy: correct on the clean "
            "digit and unbroken).")
    warnings = [f"{r} on {m}: the configured form succeeds on {c:.1%} of the digits{' under fresh Monte-Carlo draws' if q.endswith('fresh') else ''}, "
                f"its adaptive form on {a:.1%} — the configured number understates the attack by {100 * (a - c):.0f} points "
                "and must not be read as robustness."
                for r, m, q, c, a in understated_runs(meta, metrics)]
    section = Section("Attacks", text, warnings=warnings)
    rows = []
    for name in meta.models:
        rows.append([f"clean · {name}", "–", "–"] + [fmt(CLEAN.get(metrics, model=name, measure=m))
                                                      for m in ("error_rate", "confidence", "entropy", "mi")]
                    + ["–"] * (len(RUN_COLUMNS) - 6))
    for run_name in meta.runs:
        for name in meta.models:
            if RUN(run=run_name, model=name, measure="success_rate") in metrics:
                rows.append(_run_row(f"{run_name} · {name}", run_name, name, metrics))
            if run_name in adaptive_of and RUN(run=adaptive_of[run_name][0], model=name, measure="success_rate") in metrics:
                rows.append(_run_row(f"{run_name} · {name} · adaptive", adaptive_of[run_name][0], name, metrics))
    section.tables.append(Table("Attack runs (L0 in pixels, L2 / L∞ in [0, 1] pixel units)", ["run · model", *RUN_COLUMNS], rows))
    worst = [[name, fmt(WORST_CASE.get(metrics, model=name, measure="success_rate")),
              fmt(WORST_CASE.get(metrics, model=name, measure="robust_accuracy")),
              f"{WORST_CASE.get(metrics, 0, model=name, measure='examples'):.0f}",
              f"{WORST_CASE.get(metrics, 0, model=name, measure='examples_all_runs'):.0f}"]
             for name in meta.models if WORST_CASE(model=name, measure="success_rate") in metrics]
    if worst:
        section.tables.append(Table("Worst case over every run (configured and adaptive)",
                                    ["model", "success rate", "robust accuracy", "examples", "attacked by every run"], worst))
    if adaptive_of:
        section.tables.append(Table("Adaptive forms", ["run", "parameters"],
                                    [[r, ", ".join(f"{k}={v}" for k, v in params.items())] for r, (_, params) in adaptive_of.items()]))
    for name in meta.random_models()[:2]:
        panels = {}
        for r in meta.runs:
            forms = {"configured": PER_EXAMPLE(run=r, model=name, quantity="mutual_information")}
            if r in adaptive_of:
                forms["adaptive"] = PER_EXAMPLE(run=adaptive_of[r][0], model=name, quantity="mutual_information")
            if all(key in arrays for key in forms.values()):
                panels[r] = {form: arrays[key] for form, key in forms.items()}
        if panels:
            clean = arrays[PER_EXAMPLE(run="clean", model=name, quantity="mutual_information")]
            fig = attack_uncertainty_panels(clean, panels, "mutual information (nats)", name)
            section.figures.append((f"attack_mi_{name}", fig, f"Mutual information of {name} on clean digits and on each run's "
                                    "adversarial examples, configured and adaptive. Where the configured form stops on the "
                                    "decision boundary its examples look uncertain; the adaptive form's, past it, less so."))
    for i, (attack, eps, runs) in enumerate(eps_families(meta.runs)):
        curves = {m: {q: [CLEAN.get(metrics, model=m, measure=q)] + [RUN.get(metrics, run=r, model=m, measure=q) for r in runs]
                      for q in ("error_rate", "entropy")} for m in meta.models}
        curves = {m: c for m, c in curves.items() if None not in c["error_rate"] + c["entropy"]}
        if curves:
            section.figures.append((f"eps_curves_{attack}_{i}", eps_curves([0.0, *eps], curves, attack),
                                    f"{attack}: error rate and mean predictive entropy against ε (configured runs "
                                    f"{', '.join(runs)}; ε = 0 is the clean digits)."))
    first_model = meta.models[0]
    for r in meta.runs:
        shown = SHOWN(run=r, model=first_model, quantity="images")
        if shown in arrays and ORIGINAL(run=r, quantity="images") in arrays:
            images = {"original (label)": arrays[ORIGINAL(run=r, quantity="images")], f"{r} (predicted)": arrays[shown]}
            labels = {"original (label)": arrays[ORIGINAL(run=r, quantity="labels")],
                      f"{r} (predicted)": arrays[SHOWN(run=r, model=first_model, quantity="predicted")]}
            section.figures.append((f"attack_examples_{r}", image_rows(images, labels),
                                    f"{r}: one digit per class and its adversarial version against {first_model}."))
    return section


@SECTIONS.register("analyses")
def analysis_sections(run) -> list[Section]:
    """Each analysis that ran: its own section, built by its module from the same files."""
    files = AttackFiles.load(run)
    if files is None:
        return []
    sections = (analysis.report(files, files.meta.analyses[name]) for name, analysis in analyses().items()
                if name in files.meta.analyses)
    return [s for s in sections if s is not None]


def eps_families(runs: dict[str, dict]) -> list[tuple[str, list[float], list[str]]]:
    """Configured runs of one attack that differ only in ``eps`` (at least three), sorted by ε: the
    points of an ε curve, as (attack, ε values, run names)."""
    groups: dict[tuple, list[tuple[float, str]]] = {}
    for name, info in runs.items():
        params = dict(info["params"])
        if "eps" in params and info.get("targets", "none") == "none":
            eps = float(params.pop("eps"))
            groups.setdefault((info["attack"], tuple(sorted(params.items()))), []).append((eps, name))
    return [(key[0], [e for e, _ in sorted(v)], [n for _, n in sorted(v)]) for key, v in groups.items() if len(v) >= 3]


def eps_curves(eps: list[float], curves: dict[str, dict[str, list[float]]], attack: str):
    """Two panels against ε: error rate and mean predictive entropy of each model (one line per
    model, ε = 0 the clean digits), the layout of Bradshaw et al.'s FGSM figures."""
    fig, axes = new_figure(1, 2, width=3.6)
    for i, (model, values) in enumerate(curves.items()):
        style = {"color": PALETTE[i % len(PALETTE)], "marker": "o", "markersize": 3, "label": model}
        axes[0][0].plot(eps, values["error_rate"], **style)
        axes[0][1].plot(eps, values["entropy"], **style)
    for ax, key, label in zip(axes[0], ("error_rate", "entropy"), ("error rate", "mean predictive entropy (nats)")):
        ax.set_xlabel(f"{attack} ε")
        ax.set_ylabel(label)
        note_coinciding(ax, {model: values[key] for model, values in curves.items()})
    axes[0][0].set_ylim(-0.02, 1.02)
    axes[0][0].legend(loc="lower right")
    fig.tight_layout()
    return fig


def attack_uncertainty_panels(clean: np.ndarray, runs: dict[str, dict[str, np.ndarray]], quantity: str, title: str = ""):
    """Small multiples, one panel per attack run: the uncertainty measure on the clean digits (filled)
    beside the run's adversarial examples in each form (outlines), on a shared axis, with each
    distribution's median in the legend."""
    upper = max([float(np.max(clean))] + [float(np.max(v)) for forms in runs.values() for v in forms.values()] + [1e-3])
    bins = np.linspace(0.0, upper * 1.02, 30)
    ncols = min(4, max(1, len(runs)))
    nrows = int(np.ceil(len(runs) / ncols))
    fig, axes = new_figure(nrows, ncols, width=2.6, height=2.2, sharex=True)
    for ax in axes.ravel()[len(runs):]:
        ax.axis("off")
    styles = ["-", "--", ":"]
    for ax, (run, forms) in zip(axes.ravel(), runs.items()):
        ax.hist(clean, bins=bins, density=True, alpha=0.45, color=PALETTE[0], label=f"clean (median {np.median(clean):.2f})")
        for i, (form, values) in enumerate(forms.items()):
            ax.hist(values, bins=bins, density=True, histtype="step", linewidth=1.4, linestyle=styles[i % len(styles)],
                    color=PALETTE[1 + i % (len(PALETTE) - 1)], label=f"{form} (median {np.median(values):.2f})")
        ax.set_title(run)
        ax.set_xlabel(quantity)
        ax.set_ylabel("density")
        ax.legend(loc="upper right", fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
