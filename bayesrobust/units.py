"""Units of work a long run keeps as they finish, so a killed run resumes where it stopped.

A unit is one piece of a suite worth keeping on its own — an attack run on one model, a detection
mixed set, a shift grid point, a trained model. Each is written the moment it ends, atomically, under
``RUN/units/<suite>/``: its arrays (``<key>.npz``) first, then its metrics (``<key>.json``), whose
presence is the record that the unit is done. A resumed run reads finished units back instead of
recomputing them. Every unit draws its randomness from its own seed (its global RNGs seeded from the
suite's seed and the unit's key, then restored), so a unit computed after a resume is the one the
uninterrupted run computed, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import numpy as np

from bayesrobust.atomic import write_json_atomic
from bayesrobust.errors import RunError
from bayesrobust.seeding import derive_seed, isolated_rng

Metrics = dict[str, float]
Arrays = dict[str, np.ndarray]


class Units:
    """The finished units of one suite in one run folder; call it with a key and the work."""

    def __init__(self, run, suite: str, seed: int) -> None:
        self.run, self.suite, self.seed = run, suite, seed
        self.folder = Path(run.path) / "units" / suite
        self.reused: list[str] = []  # keys read back rather than computed (what a resume skipped)

    def __call__(self, key: str, compute: Callable[[], tuple[Metrics, Arrays]]) -> tuple[Metrics, Arrays]:
        """``compute()``'s (metrics, arrays) for ``key``: read back when this folder holds the unit,
        else computed with its own seeded RNGs and written before returning."""
        record, arrays_file = self._paths(key)
        if record.is_file():
            self.reused.append(key)
            return self._read(key, record, arrays_file)
        with isolated_rng(derive_seed(self.seed, "unit", self.suite, key)):
            metrics, arrays = compute()
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if arrays:
            self.run.save_arrays(str(arrays_file.relative_to(self.run.path)), **arrays)
        write_json_atomic(record, {"key": key, "metrics": metrics, "arrays": sorted(arrays)})
        return self._read(key, record, arrays_file)  # what a resumed run will see, so both paths agree exactly

    def _paths(self, key: str) -> tuple[Path, Path]:
        name = quote(key, safe="")
        return self.folder / f"{name}.json", self.folder / f"{name}.npz"

    def _read(self, key: str, record: Path, arrays_file: Path) -> tuple[Metrics, Arrays]:
        try:
            saved = json.loads(record.read_text())
            arrays = self.run.load_arrays(str(arrays_file.relative_to(self.run.path))) if saved["arrays"] else {}
        except (OSError, ValueError, KeyError) as exc:
            raise RunError(f"unit {self.suite}/{key} of {self.run.path} is unreadable ({exc}); delete {record} "
                           "to recompute it") from None
        if sorted(arrays) != saved["arrays"]:
            raise RunError(f"unit {self.suite}/{key} of {self.run.path} lacks arrays {sorted(set(saved['arrays']) - set(arrays))}; "
                           f"delete {record} to recompute it")
        return saved["metrics"], arrays
