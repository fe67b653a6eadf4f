"""Run folders: every result of an experiment, written atomically.

Layout::

    RUN/
      .bayesrobust-run    the exclusive claim, made with the folder
      INCOMPLETE          present from creation until `finish()`; a crashed run keeps it
      config.toml         the resolved configuration
      env.json            versions, seed, device, git revision, timings
      metrics.json        grouped keys: clean/acc, shift/digits/lenet/nll, ...
      models.json         each model's card: architecture, mode, source, parameters, epochs, temperature, draws
      checkpoints/        model weights (+ JSON metadata)
      units/              finished units of work while the run is incomplete (``units.py``; what
                          ``--resume`` reads back), removed when the run finishes
      arrays/             per-suite .npz arrays and ArviZ NetCDF files
      figures/            PNG + PDF, rendered by the report from the arrays
      report.html, report.md
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from bayesrobust.atomic import atomic_path, write_json_atomic, write_text_atomic
from bayesrobust.errors import RunError

INCOMPLETE = "INCOMPLETE"
CLAIM = ".bayesrobust-run"  # created exclusively with the folder and never removed: the folder's owner


def git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_path() -> dict[str, str]:
    """Which CPU and which of its kernel paths ran: oneDNN and ATen pick AVX-512 or AVX2 kernels by CPU, and
    ``ONEDNN_MAX_CPU_ISA`` / ``ATEN_CPU_CAPABILITY`` cap them (an AVX2-only CPU's path on any x86 machine)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default")}


def environment(seed: int, device: str) -> dict[str, Any]:
    """Versions and settings that make a run reproducible."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("bayesrobust", "torch", "numpy", "scipy", "scikit-learn", "gpytorch", "pyro-ppl", "arviz", "matplotlib"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    import torch

    return {
        "seed": seed,
        "device": device,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        **cpu_path(),
        "versions": versions,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


RUN_FILES = ("metrics.json", "config.toml", "env.json")


def is_run_folder(path: Path) -> bool:
    """A folder this package wrote: its claim or INCOMPLETE marker, or the files every finished run has."""
    return (path / CLAIM).is_file() or (path / INCOMPLETE).is_file() or all((path / name).is_file() for name in RUN_FILES)


def live_writer(path: Path) -> int | None:
    """The pid recorded in an INCOMPLETE marker when that process still runs on this machine."""
    try:
        words = (path / INCOMPLETE).read_text().split()
    except OSError:
        return None
    try:
        pid, host = int(words[words.index("pid") + 1]), words[words.index("host") + 1]
    except (ValueError, IndexError):
        return None
    if host != platform.node():
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _marker(path: Path) -> str:
    """The first line of an INCOMPLETE marker: when the run started, or why it failed."""
    try:
        return (path / INCOMPLETE).read_text().splitlines()[0].strip()[:200] or "no reason recorded"
    except (OSError, IndexError):
        return "no reason recorded"


def _discard(path: Path) -> None:
    """Move a run folder aside atomically (one of several racing callers wins), then delete it."""
    import shutil

    trash = path.with_name(f".{path.name}.replaced-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return  # another process moved it first
    shutil.rmtree(trash, ignore_errors=True)


class RunDir:
    """A run folder. Create with :meth:`create` (new results) or :meth:`open` (read back)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, overwrite: bool = False) -> RunDir:
        """Make a new run folder, marked incomplete, claimed exclusively: of several processes creating
        the same folder at once exactly one succeeds, the others get a RunError (the claim file stays
        after the run finishes, so a slow loser cannot take over a fast winner's folder).

        An existing folder that is not empty is replaced only with ``overwrite`` and only when it is
        recognisably a run folder (its INCOMPLETE marker, or metrics.json + config.toml + env.json) that
        no live process on this machine is still writing; anything else is refused, overwrite or not,
        so ``--out ~ --overwrite`` cannot delete a home directory."""
        path = Path(path)
        if cls.check_new(path, overwrite=overwrite):
            _discard(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            pass  # an empty folder made beforehand: the marker below is the claim
        try:  # O_CREAT | O_EXCL on a claim that stays for the folder's life: one winner, ever
            with open(path / CLAIM, "x") as fh:
                fh.write(f"pid {os.getpid()} host {platform.node()}\n")
        except FileExistsError:
            raise RunError(f"run folder {path} was just created by another process; choose another --out") from None
        run = cls(path)
        run._hold()
        (path / INCOMPLETE).write_text(f"started {time.strftime('%Y-%m-%dT%H:%M:%S%z')} pid {os.getpid()} host {platform.node()}\n")
        return run

    @staticmethod
    def check_new(path: str | Path, *, overwrite: bool = False) -> bool:
        """What :meth:`create` checks before touching anything: a RunError when ``path`` cannot become a
        new run folder, else whether an old run there is to be replaced (True only with ``overwrite``)."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise RunError(f"{path} exists and is not a folder; choose another --out")
        if not path.is_dir() or not any(path.iterdir()):
            return False
        if not is_run_folder(path):
            raise RunError(f"{path} is not empty and is not a bayesrobust run folder; refusing to use or replace it "
                           "(choose another --out)")
        if not overwrite and (path / INCOMPLETE).is_file():
            raise RunError(f"run folder {path} already exists and holds a run that did not finish ({_marker(path)}); "
                           f"continue it with --resume {path}, or pass --overwrite to start again")
        if not overwrite:
            raise RunError(f"run folder {path} already exists; pass --overwrite or choose another --out")
        writer = live_writer(path)
        if writer is not None:
            raise RunError(f"run folder {path} is being written by process {writer}; wait for it or choose another --out")
        return True

    @classmethod
    def resume(cls, path: str | Path) -> RunDir:
        """Continue an incomplete run folder: its finished units are kept (``units.py``), the rest is
        computed again. Refused for a folder that is complete, not a run folder, or being written."""
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"no such run folder: {path}")
        if not is_run_folder(path) or not (path / "config.toml").is_file():
            raise RunError(f"{path} is not a bayesrobust run folder (no config.toml); nothing to resume")
        if not (path / INCOMPLETE).is_file():
            raise RunError(f"run folder {path} is complete; nothing to resume (--overwrite runs it again)")
        writer = live_writer(path)
        if writer is not None:
            raise RunError(f"run folder {path} is being written by process {writer}; wait for it or stop it first")
        run = cls(path)
        run._hold()
        write_text_atomic(path / INCOMPLETE, f"resumed {time.strftime('%Y-%m-%dT%H:%M:%S%z')} pid {os.getpid()} "
                                             f"host {platform.node()} (was: {_marker(path)})\n")
        return run

    def _hold(self) -> None:
        """Hold an exclusive lock on the folder's claim while this process writes it (released when the
        run finishes or fails, and by the system when the process dies), so two resumes cannot race."""
        import fcntl

        self._lock = open(self.path / CLAIM, "a")  # noqa: SIM115 (held open for the run's life)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise RunError(f"run folder {self.path} is being written by another process; wait for it or stop it first") from None

    def _release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()
            self._lock = None

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        path = Path(path)
        if not path.is_dir():
            raise RunError(f"no such run folder: {path}")
        if not (path / "metrics.json").exists() and not (path / INCOMPLETE).exists():
            raise RunError(f"{path} is not a run folder (no metrics.json)")
        return cls(path)

    @property
    def complete(self) -> bool:
        return not (self.path / INCOMPLETE).exists()

    def finish(self) -> None:
        """Mark the run complete and drop its units (every result is in metrics.json and arrays/ now)."""
        import shutil

        (self.path / INCOMPLETE).unlink(missing_ok=True)
        shutil.rmtree(self.path / "units", ignore_errors=True)
        self._release()

    def mark_failed(self, error: BaseException) -> None:
        write_text_atomic(self.path / INCOMPLETE, f"failed: {type(error).__name__}: {error}\n")
        self._release()

    # --- writers --------------------------------------------------------------------------
    def file(self, relative: str) -> Path:
        return self.path / relative

    def write_json(self, relative: str, data: Any) -> Path:
        write_json_atomic(self.file(relative), data)
        return self.file(relative)

    def write_text(self, relative: str, text: str) -> Path:
        write_text_atomic(self.file(relative), text)
        return self.file(relative)

    def save_arrays(self, relative: str, **arrays: Any) -> Path:
        target = self.file(relative)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})
        return target

    def save_inference_data(self, relative: str, idata: Any) -> Path:
        target = self.file(relative)
        with atomic_path(target) as tmp:
            idata.to_netcdf(str(tmp), engine="h5netcdf")
        return target

    def update_metrics(self, metrics: dict[str, float]) -> None:
        """Merge ``metrics`` into metrics.json (atomically). NaN (undefined, e.g. the mean distortion
        of successful examples when none succeeded) is written as null, keeping the file valid JSON."""
        current = self.metrics()
        current.update({k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()})
        self.write_json("metrics.json", current)

    # --- readers --------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        path = self.file("metrics.json")
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise RunError(f"{path} is corrupt: {exc}") from None

    def read_json(self, relative: str) -> Any:
        return json.loads(self.file(relative).read_text())

    def load_arrays(self, relative: str) -> dict[str, np.ndarray]:
        with np.load(self.file(relative), allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
