"""Semeion handwritten digits (UCI): 1,593 binary 16×16 digits, mapped to MNIST's 28×28 framing."""

from __future__ import annotations

import numpy as np

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, DatasetSpec, to_dataset
from bayesrobust.data.download import RemoteFile, fetch
from bayesrobust.data.transforms import mnist_style, resize
from bayesrobust.errors import DatasetError

SEMEION = RemoteFile(
    "semeion.data",
    "d92d6c4103d1dbe202ad7fa50652f821c11b5bc1890f9d2673706203410d68b8",
    ("https://archive.ics.uci.edu/ml/machine-learning-databases/semeion/semeion.data",),
)


def parse_semeion(text: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 256 pixels + 10 one-hot labels → (N, 16, 16) float32 and (N,) int labels."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise DatasetError(f"{source}: no data rows")
    for i, row in enumerate(rows):
        if len(row) != 266:
            raise DatasetError(f"{source}: line {i + 1} has {len(row)} fields, expected 266 (256 pixels + 10 labels)")
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"{source}: non-numeric field ({exc})") from None
    pixels, onehot = table[:, :256], table[:, 256:]
    if not np.isin(pixels, (0.0, 1.0)).all():
        raise DatasetError(f"{source}: pixels must be 0 or 1")
    if not (np.isin(onehot, (0.0, 1.0)).all() and (onehot.sum(1) == 1).all()):
        bad = int(np.flatnonzero(~(onehot.sum(1) == 1))[0]) + 1 if not (onehot.sum(1) == 1).all() else 0
        raise DatasetError(f"{source}: label columns must be one-hot (first bad line {bad})")
    return pixels.reshape(-1, 16, 16).astype(np.float32), onehot.argmax(1)


def _read_semeion(root, download: bool) -> tuple[str, np.ndarray, np.ndarray]:
    path, data = fetch(SEMEION, "semeion", root, download)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file") from None
    return (str(path), *parse_semeion(text, str(path)))


def load_semeion(split: str = "all", root=None, download: bool = False) -> Dataset:
    path, pixels, labels = _read_semeion(root, download)
    info = DatasetInfo("semeion", split, path, len(labels), SEMEION.digest[:16], verified=True,
                       notes="16x16 binary digits framed MNIST-style into 28x28")
    return to_dataset(mnist_style(pixels), labels, info)


def load_semeion_resized(split: str = "all", root=None, download: bool = False) -> Dataset:
    """The same digits stretched from 16×16 to the whole 28×28 square (bilinear, no MNIST framing): the
    cruder preprocessing of transfer tests such as Bradshaw et al.'s, far from MNIST's 20×20 box."""
    path, pixels, labels = _read_semeion(root, download)
    info = DatasetInfo("semeion-resized", split, path, len(labels), SEMEION.digest[:16], verified=True,
                       notes="16x16 binary digits resized to 28x28 without framing")
    return to_dataset(resize(pixels), labels, info)


DATASETS.add("semeion", DatasetSpec("semeion", load_semeion, ("all", "test"),
                                    "Semeion handwritten digits, 1,593 (UCI semeion.data)",
                                    remote_files=(SEMEION,)))
DATASETS.add("semeion-resized", DatasetSpec("semeion-resized", load_semeion_resized, ("all", "test"),
                                            "Semeion digits stretched 16x16 -> 28x28 without MNIST framing",
                                            remote_files=(SEMEION,), folder="semeion"))
