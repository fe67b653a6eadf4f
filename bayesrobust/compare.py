"""``bayesrobust compare``: runs' metrics side by side, with their intervals, and which differences are real.

The first run is the reference. A metric whose run wrote a bootstrap interval shows it. For the
calibration suite's accuracy, NLL, Brier and ECE, runs that scored the *same* test digits (the labels'
fingerprint matches) are also compared example by example: a paired bootstrap of (run − reference) on
the per-example arrays each run saved (with the same ECE bins), and a difference whose 95% interval excludes zero is marked ``*``.
Everything else is shown as written, unmarked: no per-example data, no claim.
"""

from __future__ import annotations

import csv
import fnmatch
import io
from dataclasses import dataclass

import numpy as np

from bayesrobust.errors import RunError
from bayesrobust.metrics.bootstrap import Interval, paired_bootstrap, with_interval
from bayesrobust.runs import RunDir
from bayesrobust.suites.calibration import CALIB, CALIB_ARRAYS, PAIRED, paired_statistic


@dataclass(frozen=True)
class Comparison:
    runs: list[str]
    keys: list[str]
    cells: dict[tuple[str, int], str]  # (metric, run index) → text

    def markdown(self) -> str:
        header = "| metric | " + " | ".join(self.runs) + " |\n|---|" + "---|" * len(self.runs) + "\n"
        return header + "".join(f"| {k} | " + " | ".join(self.cells[k, i] for i in range(len(self.runs))) + " |\n"
                                for k in self.keys)

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["metric", *self.runs])
        for k in self.keys:
            writer.writerow([k, *(self.cells[k, i] for i in range(len(self.runs)))])
        return out.getvalue()


def _examples(run: RunDir) -> tuple[dict[str, np.ndarray], dict]:
    """The calibration suite's per-example arrays and its metadata (bins, the test labels' fingerprint)."""
    if not run.file("arrays/calibration.npz").exists():
        return {}, {}
    return run.load_arrays("arrays/calibration.npz"), run.read_json("arrays/calibration.json")


def paired_difference(reference: dict, other: dict, model: str, measure: str, *, resamples: int, seed: int,
                      bins: int = 15, scheme: str = "width") -> Interval | None:
    """(other − reference) of ``calib/<model>/<measure>`` with its paired interval, or None without data."""
    def arrays(source, names):
        keys = [CALIB_ARRAYS(model=model, group="examples", quantity=n) for n in names]
        return [source[k] for k in keys] if all(k in source for k in keys) else None

    if measure not in PAIRED:
        return None
    statistic, names = paired_statistic(measure, bins, scheme)
    ref, oth = arrays(reference, names), arrays(other, names)
    if ref is None or oth is None or len(ref[0]) != len(oth[0]):
        return None
    return paired_bootstrap(statistic, oth, ref, resamples=resamples, seed=seed)


def compare_runs(paths: list[str], patterns: tuple[str, ...] = (), *, resamples: int = 1000, seed: int = 0) -> Comparison:
    """The runs' metrics matching ``patterns`` side by side (none given: every suite's headline metrics,
    ``suites/registry.py``); a pattern the caller gave that matches no metric of any run is an error naming
    it (a typo must not silently shrink the table)."""
    from bayesrobust.suites.registry import headline_patterns

    runs = [RunDir.open(p) for p in paths]
    metrics = [r.metrics() for r in runs]
    if not patterns:
        patterns = headline_patterns()
    else:
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(k, p) for m in metrics for k in m)]
        if unmatched:
            raise RunError(f"--metric {unmatched[0]!r} matches no metric of these runs (keys look like "
                           f"{next(iter(metrics[0]), 'clean/<model>/acc')!r})")
    keys = sorted({k for m in metrics for k in m if not k.endswith(("_low", "_high"))
                   and any(fnmatch.fnmatchcase(k, p) for p in patterns)})
    examples = [_examples(r) for r in runs]
    cells: dict[tuple[str, int], str] = {}
    for key in keys:
        cells[key, 0] = with_interval(metrics[0], key, 4)
        calib = CALIB.parse(key)  # a calibration headline: paired per example against the reference run
        for i in range(1, len(runs)):
            text = with_interval(metrics[i], key, 4)
            ref_meta, meta = examples[0][1], examples[i][1]
            same = (ref_meta.get("test_labels_sha256") is not None
                    and all(ref_meta.get(k) == meta.get(k) for k in ("test_labels_sha256", "bins", "scheme")))
            if calib is not None and same:
                diff = paired_difference(examples[0][0], examples[i][0], calib["model"], calib["measure"], resamples=resamples, seed=seed,
                                         bins=ref_meta["bins"], scheme=ref_meta["scheme"])
                if diff is not None:
                    mark = " *" if diff.low > 0 or diff.high < 0 else ""
                    text += f"; Δ {diff.estimate:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]{mark}"
            cells[key, i] = text
    return Comparison([str(p) for p in paths], keys, cells)
