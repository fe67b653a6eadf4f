"""A user's own digits as a transfer set: an IDX images file (28×28 unsigned bytes, gzipped or raw),
with its labels when they are there. ``transfer.extra`` points at such folders or files; without a
labels file the set is unlabelled and only label-free quantities (entropy, MI, confidence, OOD AUROC)
are reported for it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np

from bayesrobust.data.base import Dataset, DatasetInfo, to_dataset
from bayesrobust.data.idx import check_idx_pair, parse_idx, read_bytes
from bayesrobust.errors import DatasetError, DatasetMissing

_IMAGES = re.compile(r"idx3[-_.]?ubyte(\.gz)?$")
_LABELS = re.compile(r"idx1[-_.]?ubyte(\.gz)?$")


def _one(folder: Path, pattern: re.Pattern, what: str) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and pattern.search(p.name))
    if len(found) > 1:
        raise DatasetError(f"{folder}: {len(found)} {what} files ({', '.join(p.name for p in found)}); "
                           "point transfer.extra at one of them, or at a folder holding one pair")
    return found[0] if found else None


def _images_and_labels(path: Path) -> tuple[Path, Path | None]:
    """The images file at ``path`` (a file, or the one ``*idx3-ubyte[.gz]`` in a folder) and its labels
    file (the one ``*idx1-ubyte[.gz]`` beside it, preferring the name that mirrors the images file)."""
    if not path.exists():
        raise DatasetMissing(f"transfer.extra: {path} does not exist")
    if path.is_file():
        mirrored = path.with_name(path.name.replace("images", "labels").replace("idx3", "idx1"))
        if mirrored != path and mirrored.is_file():
            return path, mirrored
        return path, _one(path.parent, _LABELS, "IDX labels")
    images = _one(path, _IMAGES, "IDX images")
    if images is None:
        raise DatasetError(f"{path}: no IDX images file (a name ending idx3-ubyte or idx3-ubyte.gz)")
    return images, _one(path, _LABELS, "IDX labels")


def set_name(path: str | Path) -> str:
    """The name a folder's set gets in metrics and the report: its base name, lower case, with
    anything but letters, digits, '-' and '_' replaced by '-'."""
    p = Path(path)
    stem = p.name if p.is_dir() or not p.suffix else p.name.split(".")[0]
    return re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-") or "extra"


def load_idx_folder(path: str | Path, name: str | None = None) -> Dataset:
    """The digits at ``path`` as a test-split :class:`Dataset`; ``labelled`` is False without labels."""
    images_path, labels_path = _images_and_labels(Path(path).expanduser())
    raw = read_bytes(images_path)
    x = parse_idx(raw, source=str(images_path), expect_dims=3)
    labelled = labels_path is not None
    y = parse_idx(read_bytes(labels_path), source=str(labels_path), expect_dims=1) if labelled else None
    check_idx_pair(x, y, images_path, labels_path, hint="; transfer sets must be 28x28 (resize them first, e.g. as "
                   "MNIST was: the digit's box into 20x20, centred on 28x28)")
    if y is None:
        y = np.zeros(x.shape[0], dtype=np.int64)
    notes = f"labels: {labels_path.name}" if labelled else "unlabelled (no idx1-ubyte file beside the images)"
    info = DatasetInfo(name or set_name(path), "test", str(images_path), int(x.shape[0]),
                       hashlib.sha256(raw).hexdigest()[:16], verified=False, notes=notes)
    dataset = to_dataset(x, y, info)
    return dataset if labelled else dataset.without_labels()
