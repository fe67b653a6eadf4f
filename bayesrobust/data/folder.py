"""A user's own digits from files: ``data.train``, ``data.test`` and ``data.shifted`` take a path as well
as a registered name. Three layouts (:func:`load_folder`):

- an IDX images file (28×28 unsigned bytes, gzipped or raw), or a folder holding one, with its labels file
  when it is there;
- a ``.npz`` file with an ``images`` array, (N, H, W) or (N, C, H, W), uint8 or floats in [0, 1], and an
  optional ``labels`` array (``np.savez(path, images=x, labels=y)``);
- a folder of PNG or JPEG images in one subfolder per class, torchvision ``ImageFolder``'s layout, read in
  greyscale: subfolders named 0–9 are those digits, any other names are classes in sorted order.

Without labels a set is unlabelled, and only label-free quantities (entropy, MI, confidence, OOD AUROC) are
reported for it. Every bad file is a ``DatasetError`` naming it."""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, to_dataset
from bayesrobust.data.idx import check_idx_pair, parse_idx, read_bytes
from bayesrobust.errors import DatasetError, DatasetMissing

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_IMAGES = re.compile(r"idx3[-_.]?ubyte(\.gz)?$")
_LABELS = re.compile(r"idx1[-_.]?ubyte(\.gz)?$")


def _one(folder: Path, pattern: re.Pattern, what: str) -> Path | None:
    found = sorted(p for p in folder.iterdir() if p.is_file() and pattern.search(p.name))
    if len(found) > 1:
        raise DatasetError(f"{folder}: {len(found)} {what} files ({', '.join(p.name for p in found)}); "
                           "point the config at one of them, or at a folder holding one pair")
    return found[0] if found else None


def _images_and_labels(path: Path) -> tuple[Path, Path | None]:
    """The images file at ``path`` (a file, or the one ``*idx3-ubyte[.gz]`` in a folder) and its labels
    file (the one ``*idx1-ubyte[.gz]`` beside it, preferring the name that mirrors the images file)."""
    if not path.exists():
        raise DatasetMissing(f"{path} does not exist")
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
    notes = f"labels: {labels_path.name}" if labelled else "unlabelled (no idx1-ubyte file beside the images)"
    info = DatasetInfo(name or set_name(path), "test", str(images_path), int(x.shape[0]),
                       hashlib.sha256(raw).hexdigest()[:16], verified=False, notes=notes)
    return _dataset(x, y, info, images_path)


def is_data_path(spec: str) -> bool:
    """Whether a data spec names files rather than a registered set: not a registered name, and a path
    (a separator in it, a ``.npz`` suffix, or something that exists)."""
    return spec not in DATASETS and ("/" in spec or os.sep in spec or spec.endswith(".npz") or Path(spec).expanduser().exists())


def load_folder(path: str | Path, name: str | None = None) -> Dataset:
    """The digits at ``path`` in any layout of the module docstring, as a test-split :class:`Dataset`."""
    p = Path(path).expanduser()
    if not p.exists():
        raise DatasetMissing(f"{p} does not exist")
    if p.is_file() and p.suffix.lower() == ".npz":
        return _load_npz(p, name or set_name(p))
    if p.is_dir() and not any(_IMAGES.search(f.name) for f in p.iterdir()) and any(d.is_dir() for d in p.iterdir()):
        return _load_image_folder(p, name or set_name(p))
    return load_idx_folder(p, name)


def _load_npz(path: Path, name: str) -> Dataset:
    raw = path.read_bytes()
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            if "images" not in archive.files:
                raise DatasetError(f"{path}: no 'images' array (it holds {', '.join(archive.files) or 'nothing'}); "
                                   "write it with np.savez(path, images=x, labels=y)")
            images = archive["images"]
            labels = archive["labels"] if "labels" in archive.files else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from None
    if images.ndim not in (3, 4) or min(images.shape, default=0) < 1:
        raise DatasetError(f"{path}: images must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    if images.dtype != np.uint8 and not np.issubdtype(images.dtype, np.floating):
        raise DatasetError(f"{path}: images must be uint8 or floats in [0, 1], got {images.dtype}")
    if labels is not None and (labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer)):
        raise DatasetError(f"{path}: labels must be integers (N,), got {labels.dtype} {labels.shape}")
    if labels is not None and len(labels) != len(images):
        raise DatasetError(f"{path}: {len(images)} images but {len(labels)} labels")
    notes = "labels: the 'labels' array" if labels is not None else "unlabelled (no 'labels' array)"
    return _dataset(images, labels, DatasetInfo(name, "test", str(path), len(images), hashlib.sha256(raw).hexdigest()[:16],
                                                notes=notes), path)


def _load_image_folder(path: Path, name: str) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted((d for d in path.iterdir() if d.is_dir()), key=lambda d: d.name)
    digits = all(d.name.isdigit() and int(d.name) <= 9 for d in classes)
    label_of = {d: int(d.name) if digits else i for i, d in enumerate(classes)}
    files = [(f, label_of[d]) for d in classes for f in sorted(d.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"{path}: no PNG or JPEG images in its subfolders (one subfolder per class, as "
                           "torchvision's ImageFolder reads)")
    digest, pixels = hashlib.sha256(), []
    for file, _ in files:
        raw = file.read_bytes()
        digest.update(raw)
        try:
            with Image.open(io.BytesIO(raw)) as image:
                array = np.asarray(image.convert("L"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise DatasetError(f"{file}: not a readable PNG or JPEG image ({exc})") from None
        if pixels and array.shape != pixels[0].shape:
            raise DatasetError(f"{file}: {array.shape[1]}x{array.shape[0]} pixels, but {files[0][0]} has "
                               f"{pixels[0].shape[1]}x{pixels[0].shape[0]}: every image of a set has one size")
        pixels.append(array)
    names = "digits 0-9 by folder name" if digits else f"classes {', '.join(d.name for d in classes)} as 0..{len(classes) - 1}"
    info = DatasetInfo(name, "test", str(path), len(files), digest.hexdigest()[:16], notes=f"image folder; labels: {names}")
    return _dataset(np.stack(pixels), np.array([label for _, label in files]), info, path)


def _dataset(images: np.ndarray, labels: np.ndarray | None, info: DatasetInfo, path: Path) -> Dataset:
    """:func:`to_dataset` with its errors naming the file; unlabelled (labels −1) without labels."""
    try:
        dataset = to_dataset(images, labels if labels is not None else np.zeros(len(images), np.int64), info)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    return dataset if labels is not None else dataset.without_labels()
