"""Parser for the IDX format of MNIST and Fashion-MNIST (gzipped or raw)."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from bayesrobust.errors import DatasetError

_UBYTE = 0x08


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip; corrupt gzip raises DatasetError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path}: corrupt or truncated gzip stream ({exc})") from None
    return raw


def parse_idx(data: bytes, *, source: str, expect_dims: int) -> np.ndarray:
    """Decode IDX bytes of unsigned bytes with ``expect_dims`` dimensions."""
    if len(data) < 4:
        raise DatasetError(f"{source}: file too short for an IDX header ({len(data)} bytes)")
    zero, dtype, ndim = data[0] << 8 | data[1], data[2], data[3]
    if zero != 0 or dtype != _UBYTE:
        raise DatasetError(f"{source}: wrong magic number 0x{int.from_bytes(data[:4], 'big'):08x} (expected 0x0000080{expect_dims})")
    if ndim != expect_dims:
        raise DatasetError(f"{source}: has {ndim} dimensions, expected {expect_dims}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{source}: truncated header")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DatasetError(f"{source}: {what}: {len(data)} bytes for shape {shape} (expected {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def check_idx_pair(x: np.ndarray, y: np.ndarray | None, images: object, labels: object = None,
                   *, hint: str = "") -> None:
    """The checks every IDX pair gets, in one place: (N, 28, 28) images, at least one, labels (when
    given) one per image and in 0..9. Errors name the files; ``hint`` follows a wrong image size."""
    if x.shape[1:] != (28, 28):
        raise DatasetError(f"{images}: images are {x.shape[1]}x{x.shape[2]}, expected 28x28{hint}")
    if x.shape[0] == 0:
        raise DatasetError(f"{images}: holds no images")
    if y is None:
        return
    if x.shape[0] != y.shape[0]:
        raise DatasetError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    if y.max() > 9:
        raise DatasetError(f"{labels}: label {int(y.max())} out of range 0..9")


def read_idx_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an (images, labels) pair and check they agree: (N, 28, 28) uint8 and (N,) in 0..9."""
    x = parse_idx(read_bytes(images), source=str(images), expect_dims=3)
    y = parse_idx(read_bytes(labels), source=str(labels), expect_dims=1)
    check_idx_pair(x, y, images, labels)
    return x, y
