"""Running a sweep's trials: in this process one after another (``serial``), or as Ray tasks (``ray``) on
this machine's cores or on an existing Ray cluster (``address``).

Plain Ray tasks rather than Ray Tune: a trial here is already an ordinary run folder — its own config
validation, seed, atomic writes, INCOMPLETE marker and report — so Tune's trial directories, result
reporting and checkpoint syncing would duplicate what the run folder does, and its search algorithms
have nothing to do in a fixed grid. A task per trial keeps each trial exactly what ``bayesrobust run``
makes, and resuming is a question the folders already answer.

Isolation: a trial that raises is recorded as failed with its error (its folder keeps INCOMPLETE with
the traceback) and the others go on. Ctrl-C stops the sweep: a trial it interrupts is left marked
INCOMPLETE (a killed Ray worker cannot remove the marker), so it is resumed next time from its finished
units (``units.py``; rerun from scratch if its config changed); a finished trial is complete. Every trial's outcome is appended to ``trials.jsonl`` as it arrives.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from bayesrobust.parallel import ray_session
from bayesrobust.runs import RunDir, is_run_folder

OUTCOMES = "trials.jsonl"


def trial_state(path: Path) -> str:
    """``complete`` (a finished run folder), ``incomplete`` (started, crashed or interrupted) or ``absent``."""
    if not path.exists():
        return "absent"
    return "complete" if is_run_folder(path) and RunDir.open(path).complete else "incomplete"


def run_trial(config_text: str, overrides: list[str], out: str, data_dir: str | None, download: bool,
              threads: int) -> dict[str, Any]:
    """One trial as ``bayesrobust run`` would make it, from the config's text (a cluster node needs no copy
    of the file); never raises for the trial's own errors (they are returned, so one failing trial cannot
    stop the sweep), only for interrupts."""
    import torch

    from bayesrobust.config import config_from_text
    from bayesrobust.experiment import config_changes, run_experiment

    if threads > 0:  # a Ray task uses the cores it reserved; serially, torch keeps its default
        torch.set_num_threads(threads)
    start = time.perf_counter()
    try:
        config = config_from_text(config_text, overrides)
        resume = trial_state(Path(out)) == "incomplete" and (Path(out) / "config.toml").is_file() \
            and not config_changes(config, Path(out))  # an interrupted trial continues from its finished units
        run_experiment(config, out, data_dir=data_dir, download=download, overwrite=Path(out).exists() and not resume,
                       resume=resume, progress=False)
        status, error = "complete", ""
    except Exception as exc:  # noqa: BLE001 - recorded for the sweep's report, never swallowed silently
        status, error = "failed", "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return {"out": out, "status": status, "error": error, "seconds": time.perf_counter() - start, "host": os.uname().nodename}


def record(sweep_dir: Path, outcome: dict[str, Any]) -> None:
    """Append one trial's outcome to ``trials.jsonl`` (one line, flushed: a crash loses nothing earlier)."""
    with open(sweep_dir / OUTCOMES, "a") as handle:
        handle.write(json.dumps(outcome) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def run_serial(jobs: list[dict[str, Any]], sweep_dir: Path, progress) -> list[dict[str, Any]]:
    """Each job in this process, in order."""
    outcomes = []
    for job in progress(jobs):
        outcome = {**run_trial(**job["args"]), "name": job["name"]}
        record(sweep_dir, outcome)
        outcomes.append(outcome)
    return outcomes


def run_ray(jobs: list[dict[str, Any]], sweep_dir: Path, progress, *, address: str | None, cpus_per_trial: float) -> list[dict[str, Any]]:
    """Each job as a Ray task reserving ``cpus_per_trial`` cores; outcomes recorded as they finish.
    Without ``address`` Ray starts on this machine (all its cores) and stops afterwards; with one
    (``auto`` or ``ray://host:10001``) the tasks go to that cluster, whose nodes must have bayesrobust
    installed and the data directory at the same path."""
    with ray_session(address) as ray:
        return _run_on_ray(ray, jobs, sweep_dir, progress, cpus_per_trial)


def _run_on_ray(ray, jobs, sweep_dir: Path, progress, cpus_per_trial: float) -> list[dict[str, Any]]:
    task = ray.remote(num_cpus=cpus_per_trial, max_retries=0)(run_trial)
    pending = {task.remote(**job["args"]): job for job in jobs}
    outcomes = []
    bar = progress(range(len(jobs)))
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                outcome = {**ray.get(done[0]), "name": job["name"]}
            except Exception as exc:  # noqa: BLE001 - a worker that died (out of memory, node lost)
                outcome = {"out": job["args"]["out"], "name": job["name"], "status": "failed",
                           "error": f"the Ray task died: {type(exc).__name__}: {exc}", "seconds": float("nan"), "host": ""}
            record(sweep_dir, outcome)
            outcomes.append(outcome)
            bar.update(1)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()
    return outcomes
