"""Format-exact data files written by the tests: IDX arrays, Semeion rows and SVHN format-2 ``.mat``
files, the shapes and byte layouts the real loaders read (shared by the data and property tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def semeion_line(label: int, seed: int) -> str:
    pixels = (np.random.default_rng(seed).random(256) > 0.7).astype(float)
    onehot = np.eye(10, dtype=int)[label]
    return " ".join(f"{p:.4f}" for p in pixels) + " " + " ".join(map(str, onehot)) + " "


def write_svhn(path: Path, n: int = 6, x_dtype=np.uint8, labels=None):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(32, 32, 3, n)).astype(x_dtype)
    y = (np.arange(n) % 10 + 1).reshape(n, 1) if labels is None else np.asarray(labels).reshape(-1, 1)
    scipy.io.savemat(path, {"X": x, "y": y})
    return x, y
