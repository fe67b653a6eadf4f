"""SVHN format 2 (Netzer et al. 2011): 32×32 colour crops of house numbers, as a transfer set.

Converted as Bradshaw et al. (2017) did for transfer testing: greyscale, resized to 28×28.
Note SVHN digits are dark-on-light about as often as light-on-dark; no inversion is applied.
"""

from __future__ import annotations

import numpy as np

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, DatasetSpec, to_dataset
from bayesrobust.data.download import RemoteFile, fetch
from bayesrobust.data.transforms import resize, to_greyscale
from bayesrobust.errors import DatasetError

# Only MD5 digests are published for the SVHN files.
SVHN_FILES = {
    "train": RemoteFile("train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373",
                        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat",), algorithm="md5"),
    "test": RemoteFile("test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3",
                       ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat",), algorithm="md5"),
}


def parse_svhn(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode a format-2 ``.mat``: X uint8 (32, 32, 3, N), y (N, 1) with 10 meaning digit 0.

    Only for checksum-verified bytes (``load_svhn`` verifies first): scipy's MAT reader can crash the
    interpreter with a segmentation fault on some corrupt files, which no ``except`` can catch. A
    well-formed file with the wrong contents gets a DatasetError naming it."""
    import io

    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data))
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DatasetError(f"{source}: not a readable MATLAB file ({type(exc).__name__}: {exc})") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{source}: expected variables X and y, found {sorted(k for k in mat if not k.startswith('__'))}")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise DatasetError(f"{source}: X has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise DatasetError(f"{source}: X has dtype {x.dtype}, expected uint8")
    if y.shape[0] != x.shape[3]:
        raise DatasetError(f"{source}: {x.shape[3]} images but {y.shape[0]} labels")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DatasetError(f"{source}: labels must be 1..10 (10 = digit 0), found {y.min()}..{y.max()}")
    return np.transpose(x, (3, 0, 1, 2)), np.where(y == 10, 0, y).astype(np.int64)


def load_svhn(split: str = "test", root=None, download: bool = False) -> Dataset:
    spec = SVHN_FILES[split]
    path, data = fetch(spec, "svhn", root, download)
    rgb, labels = parse_svhn(data, str(path))
    images = resize(to_greyscale(rgb), 28)
    info = DatasetInfo("svhn", split, str(path), len(labels), spec.digest, verified=True,
                       notes="greyscale (ITU-R 601), resized 32->28")
    return to_dataset(images, labels, info)


def load_svhn_rgb(split: str = "test", root=None, download: bool = False) -> Dataset:
    """The same files in colour, as they are: (N, 3, 32, 32), for networks of SVHN's own shape."""
    spec = SVHN_FILES[split]
    path, data = fetch(spec, "svhn", root, download)
    rgb, labels = parse_svhn(data, str(path))
    info = DatasetInfo("svhn-rgb", split, str(path), len(labels), spec.digest, verified=True, notes="colour 3x32x32")
    return to_dataset(np.ascontiguousarray(np.transpose(rgb, (0, 3, 1, 2))), labels, info)


DATASETS.add("svhn", DatasetSpec("svhn", load_svhn, ("train", "test"), "SVHN format 2 (.mat), greyscale 28x28",
                                 remote_files=tuple(SVHN_FILES.values())))
DATASETS.add("svhn-rgb", DatasetSpec("svhn-rgb", load_svhn_rgb, ("train", "test"), "SVHN format 2 (.mat), colour 3x32x32",
                                     remote_files=tuple(SVHN_FILES.values()), folder="svhn", shape=(3, 32, 32)))
