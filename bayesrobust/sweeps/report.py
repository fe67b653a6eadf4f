"""``bayesrobust sweep-report``: a sweep's complete trials aggregated across seeds per grid point.

Per metric and grid point: the mean over seeds, the standard deviation (n − 1) and a 95% percentile
bootstrap interval of the mean (the seeds resampled with replacement, 1,000 times, seeded): with three
seeds it can be no wider than the seeds' own range, so it says how much the seeds agree, not more. One
table per metric (grid points as rows; for a two-dimensional grid, the first key's values as rows and the
second's as columns) and a heatmap of the means for two-dimensional grids; Markdown and self-contained
HTML, plus ``sweep_metrics.json``. Failed and unfinished trials are listed with their errors, never
averaged in.
"""

from __future__ import annotations

import base64
import fnmatch
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from bayesrobust.atomic import write_json_atomic, write_text_atomic
from bayesrobust.runs import RunDir
from bayesrobust.suites.registry import headline_patterns
from bayesrobust.sweeps.execute import OUTCOMES, trial_state
from bayesrobust.sweeps.plan import MANIFEST, short_names


def seed_statistics(values: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """Mean, standard deviation and the percentile bootstrap interval of the mean of per-seed values."""
    values = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
            "low": float(low), "high": float(high), "n": float(len(values))}


def last_outcomes(sweep_dir: Path) -> dict[str, dict[str, Any]]:
    """The latest recorded outcome of every trial (``trials.jsonl`` is appended to on every attempt)."""
    path = sweep_dir / OUTCOMES
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                out[record["name"]] = record
    return out


def aggregate(sweep_dir: Path, patterns: tuple[str, ...] = (), seed: int = 0) -> dict[str, Any]:
    """``{"keys", "points", "metrics": {metric: {point label: stats}}, "trials": [...status...]}``."""
    manifest = json.loads((sweep_dir / MANIFEST).read_text())
    keys = list(manifest["grid"])
    patterns = tuple(patterns) or tuple(manifest.get("metrics") or ()) or headline_patterns()
    outcomes = last_outcomes(sweep_dir)
    per_point: dict[str, list[dict[str, float]]] = defaultdict(list)
    trials = []
    for trial in manifest["trials"]:
        state = trial_state(sweep_dir / "trials" / trial["name"])
        label = point_label(trial["point"], keys)
        trials.append({"name": trial["name"], "state": state, "error": outcomes.get(trial["name"], {}).get("error", "")})
        if state == "complete":
            per_point[label].append(RunDir.open(sweep_dir / "trials" / trial["name"]).metrics())
    points = list(dict.fromkeys(point_label(t["point"], keys) for t in manifest["trials"]))
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    names = sorted({k for runs in per_point.values() for m in runs for k, v in m.items() if isinstance(v, (int, float))})
    for metric in (k for k in names if any(fnmatch.fnmatchcase(k, p) for p in patterns)):
        rows = {}
        for label in points:
            values = [m[metric] for m in per_point.get(label, []) if isinstance(m.get(metric), (int, float))]
            if values:
                rows[label] = seed_statistics(np.array(values), seed=seed)
        metrics[metric] = rows
    return {"keys": keys, "grid": manifest["grid"], "seeds": manifest["seeds"], "points": points, "metrics": metrics,
            "trials": trials, "patterns": list(patterns)}


def point_label(point: dict[str, Any], keys: list[str]) -> str:
    short = short_names(keys)
    return ", ".join(f"{short[k]}={point[k]}" for k in keys) or "(no grid)"


def _cell(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "–"
    spread = f" ± {stats['std']:.4f}" if np.isfinite(stats["std"]) else ""
    return f"{stats['mean']:.4f}{spread} [{stats['low']:.4f}, {stats['high']:.4f}] (n={int(stats['n'])})"


def metric_table(summary: dict[str, Any], metric: str) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: a matrix for a two-dimensional grid, else one row per grid point."""
    rows_of = summary["metrics"][metric]
    keys, grid = summary["keys"], summary["grid"]
    if len(keys) == 2:
        short = short_names(keys)
        a, b = keys
        headers = [f"{short[a]} \\ {short[b]}", *(f"{short[b]}={v}" for v in grid[b])]
        rows = [[f"{short[a]}={va}", *(_cell(rows_of.get(point_label({a: va, b: vb}, keys))) for vb in grid[b])]
                for va in grid[a]]
        return headers, rows
    return ["grid point", "mean ± sd [95% bootstrap interval of the mean] (seeds)"], \
        [[label, _cell(rows_of.get(label))] for label in summary["points"]]


def heatmap_png(summary: dict[str, Any], metric: str) -> bytes | None:
    """The means of a two-dimensional grid as a heatmap (PNG bytes); None for other grids."""
    if len(summary["keys"]) != 2:
        return None
    from bayesrobust.report.figures import heatmap

    a, b = summary["keys"]
    short = short_names(summary["keys"])
    grid, rows_of = summary["grid"], summary["metrics"][metric]
    matrix = np.array([[rows_of.get(point_label({a: va, b: vb}, summary["keys"]), {}).get("mean", np.nan)
                        for vb in grid[b]] for va in grid[a]])
    def label(key: str, value: Any) -> str:  # long values (paths) would not fit beside the cells
        text = f"{short[key]}={value}"
        return text if len(text) <= 24 else text[:10] + "…" + text[-13:]

    fig = heatmap(matrix, rows=[label(a, v) for v in grid[a]], columns=[label(b, v) for v in grid[b]],
                  title=f"{metric}: mean over seeds", fmt="{:.3f}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def write_sweep_report(sweep_dir: str | Path, patterns: tuple[str, ...] = (), seed: int = 0) -> Path:
    """``sweep_report.md``, ``sweep_report.html`` (heatmaps embedded; also under ``figures/``) and
    ``sweep_metrics.json`` in the sweep folder; returns the HTML's path."""
    sweep_dir = Path(sweep_dir)
    summary = aggregate(sweep_dir, patterns, seed)
    done = sum(t["state"] == "complete" for t in summary["trials"])
    intro = (f"{done} of {len(summary['trials'])} trials complete; grid {json.dumps(summary['grid'])}, seeds "
             f"{summary['seeds']}. Each cell: mean ± standard deviation over seeds [95% percentile bootstrap interval "
             "of the mean over seeds] (n = seeds averaged).")
    md, body = [f"# Sweep: {sweep_dir.name}", "", intro, ""], [f"<h1>Sweep: {html.escape(sweep_dir.name)}</h1>",
                                                              f"<p>{html.escape(intro)}</p>"]
    unfinished = [t for t in summary["trials"] if t["state"] != "complete"]
    if unfinished:
        md += ["## Trials not complete", "", "| trial | state | error |", "|---|---|---|"]
        md += [f"| {t['name']} | {t['state']} | {t['error'].splitlines()[-1] if t['error'] else ''} |" for t in unfinished] + [""]
        body.append("<h2>Trials not complete</h2><table><tr><th>trial</th><th>state</th><th>error</th></tr>" + "".join(
            f"<tr><td>{html.escape(t['name'])}</td><td>{t['state']}</td><td>{html.escape(t['error'])}</td></tr>" for t in unfinished)
            + "</table>")
    figures = sweep_dir / "figures"
    for metric in summary["metrics"]:
        headers, rows = metric_table(summary, metric)
        md += [f"## {metric}", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        md += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        body.append(f"<h2>{html.escape(metric)}</h2><table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                    + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
                    + "</table>")
        png = heatmap_png(summary, metric)
        if png is not None:
            name = "heat_" + "".join(c if c.isalnum() else "_" for c in metric)
            figures.mkdir(exist_ok=True)
            (figures / f"{name}.png").write_bytes(png)
            md += [f"![{metric}](figures/{name}.png)", ""]
            body.append(f"<figure><img alt='{html.escape(metric)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em}")
    write_text_atomic(sweep_dir / "sweep_report.md", "\n".join(md))
    out = sweep_dir / "sweep_report.html"
    write_text_atomic(out, f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep {html.escape(sweep_dir.name)}"
                           f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>")
    write_json_atomic(sweep_dir / "sweep_metrics.json", summary)
    return out
