"""Datasets that are IDX pairs downloaded with checksums (MNIST's format): one spec builder, so a new
IDX set — EMNIST's digits, KMNIST — is its file names, digests, mirrors and, where its images are stored
differently, a transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from bayesrobust.data.base import Dataset, DatasetInfo, DatasetSpec, to_dataset
from bayesrobust.data.download import RemoteFile, fetch
from bayesrobust.data.idx import check_idx_pair, parse_idx
from bayesrobust.errors import DatasetError


def remote_idx_files(digests: Mapping[str, str], mirrors: tuple[str, ...], suffix: str = ".gz") -> dict[str, RemoteFile]:
    """``{file name: RemoteFile}``, each fetched from ``mirror + name + suffix`` and checked against its
    SHA-256 (of the decompressed bytes)."""
    return {name: RemoteFile(name, digest, tuple(m + name + suffix for m in mirrors)) for name, digest in digests.items()}


def idx_spec(name: str, description: str, splits: Mapping[str, tuple[RemoteFile, RemoteFile]], *, folder: str = "",
             classes: str = "digits", transform: Callable[[np.ndarray], np.ndarray] | None = None,
             extra_roots: tuple[str, ...] = ()) -> DatasetSpec:
    """A registered dataset read from an (images, labels) IDX pair per split, under ``ROOT/<folder>/``
    (default: the name) or ``extra_roots`` (system-wide copies, tried when no root is given).
    ``transform`` maps the (N, H, W) uint8 images before the pair checks (EMNIST stores its digits
    transposed)."""

    def load(split: str, root=None, download: bool = False) -> Dataset:
        specs = splits[split]
        last_error: DatasetError | None = None
        for candidate in ([root, *extra_roots] if root is None else [root]):
            try:
                (img_path, img_bytes), (lbl_path, lbl_bytes) = (fetch(s, folder or name, candidate, download) for s in specs)
                break
            except DatasetError as exc:
                last_error = exc
        else:
            raise last_error  # type: ignore[misc]
        x = parse_idx(img_bytes, source=str(img_path), expect_dims=3)
        y = parse_idx(lbl_bytes, source=str(lbl_path), expect_dims=1)
        if transform is not None:
            x = np.ascontiguousarray(transform(x))
        check_idx_pair(x, y, img_path, lbl_path)
        info = DatasetInfo(name, split, str(img_path.parent), int(x.shape[0]), specs[0].digest[:16], verified=True)
        return to_dataset(x, y, info)

    files = tuple(f for pair in splits.values() for f in pair)
    return DatasetSpec(name, load, tuple(splits), description, classes=classes, remote_files=files, folder=folder)
