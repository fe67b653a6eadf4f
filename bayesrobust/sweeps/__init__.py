"""``bayesrobust sweep``: one experiment over a grid of config values × seeds, each trial an ordinary run
folder under one sweep folder, run serially or on Ray, resumable, aggregated with intervals.

Layout::

    SWEEP/
      manifest.json        the plan: config text, base overrides, grid, seeds, every trial's overrides
      trials.jsonl         one line per trial attempt: status, error, seconds, host
      trials/<trial>/      a run folder, exactly what ``bayesrobust run`` writes
      sweep_report.md/.html, sweep_metrics.json, figures/heat_*.png
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bayesrobust.atomic import write_json_atomic
from bayesrobust.config import load_config
from bayesrobust.errors import ConfigError
from bayesrobust.progress import progress_bar
from bayesrobust.sweeps.execute import run_ray, run_serial, trial_state
from bayesrobust.sweeps.plan import MANIFEST, parse_grid_option, parse_seeds, plan_trials, validate_trials
from bayesrobust.sweeps.report import write_sweep_report

__all__ = ["run_sweep", "write_sweep_report"]

PLAN_KEYS = ("config_text", "overrides", "grid", "seeds")  # what must match for a re-run to resume


def run_sweep(config_path: str | Path, *, grid_options: list[str] = (), seeds: str | None = None,
              overrides: list[str] = (), out: str | Path | None = None, executor: str = "ray",
              address: str | None = None, cpus_per_trial: float | None = None, data_dir: str | None = None,
              download: bool = False, progress: bool = True) -> dict[str, Any]:
    """Plan, resume or start the sweep; run every trial that is not complete; write the sweep report.
    Returns ``{"sweep_dir", "complete", "failed", "skipped", "report"}``."""
    if executor not in ("ray", "serial"):
        raise ConfigError(f"--executor must be ray or serial, got {executor!r}")
    config_path = Path(config_path)
    base = load_config(config_path, list(overrides))
    grid = {**{k: tuple(v) for k, v in base.sweep.grid.items()}, **dict(parse_grid_option(g) for g in grid_options)}
    seed_list = parse_seeds(seeds) if seeds else tuple(base.sweep.seeds)
    cpus = float(cpus_per_trial if cpus_per_trial is not None else base.sweep.cpus_per_trial)
    if cpus <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {cpus}")
    trials = plan_trials(grid, seed_list)
    validate_trials(config_path, list(overrides), trials)
    sweep_dir = Path(out) if out else Path("runs") / base.run.name / "sweep"
    manifest = {"config": str(config_path.resolve()), "config_text": config_path.read_text(), "overrides": list(overrides),
                "grid": {k: list(v) for k, v in grid.items()}, "seeds": list(seed_list), "metrics": list(base.sweep.metrics),
                "trials": [t.as_dict() for t in trials]}
    claim_sweep_dir(sweep_dir, manifest)
    todo = [t for t in trials if trial_state(sweep_dir / "trials" / t.name) != "complete"]
    jobs = [{"name": t.name, "args": {"config_text": manifest["config_text"], "overrides": [*overrides, *t.overrides],
                                      "out": str((sweep_dir / "trials" / t.name).resolve()),
                                      "data_dir": str(Path(data_dir).resolve()) if data_dir else None,
                                      "download": download,
                                      "threads": max(1, int(cpus)) if executor == "ray" else 0}} for t in todo]

    def bar(items):
        return progress_bar(items, desc=f"sweep ({executor})", enabled=progress, total=len(jobs))

    try:
        if not jobs:
            outcomes = []
        elif executor == "serial":
            outcomes = run_serial(jobs, sweep_dir, bar)
        else:
            outcomes = run_ray(jobs, sweep_dir, bar, address=address, cpus_per_trial=cpus)
    except BaseException:  # Ctrl-C too: the report lists what finished and what did not ...
        try:
            write_sweep_report(sweep_dir)
        except Exception:  # noqa: BLE001 - ... but never hides the interrupt or error itself
            pass
        raise
    report = write_sweep_report(sweep_dir)
    return {"sweep_dir": str(sweep_dir), "complete": sum(o["status"] == "complete" for o in outcomes),
            "failed": [o for o in outcomes if o["status"] != "complete"], "skipped": len(trials) - len(todo),
            "report": str(report)}


def claim_sweep_dir(sweep_dir: Path, manifest: dict[str, Any]) -> None:
    """A new sweep folder gets the manifest; an existing one must hold the same plan (then it resumes)."""
    path = sweep_dir / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in PLAN_KEYS if old.get(k) != manifest[k]]
        if changed:
            raise ConfigError(f"{sweep_dir} holds a different sweep (its {', '.join(changed)} differ); resume it with the "
                              "same config, --set, --grid and --seeds, or give another --out")
        return
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise ConfigError(f"{sweep_dir} exists and is not a sweep folder (no {MANIFEST}); give another --out")
    (sweep_dir / "trials").mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, manifest)
