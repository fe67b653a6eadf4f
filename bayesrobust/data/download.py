"""Find data files in the data roots, or download them into the cache with a checksum check."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bayesrobust.atomic import atomic_path
from bayesrobust.data.base import ENV_VAR, cache_dir, candidate_roots
from bayesrobust.data.idx import read_bytes
from bayesrobust.errors import DatasetError, DatasetMissing


@dataclass(frozen=True)
class RemoteFile:
    """One data file: its name, the digest of its *decompressed* bytes, and mirrors to fetch it from.

    ``algorithm`` is ``sha256`` unless the only published digest is another (SVHN: md5).
    Mirrors may serve the file gzipped (``name + ".gz"``) or raw.
    """

    name: str
    digest: str
    urls: tuple[str, ...]
    algorithm: str = "sha256"

    def hexdigest(self, data: bytes) -> str:
        return hashlib.new(self.algorithm, data).hexdigest()


def verify(spec: RemoteFile, path: Path) -> bytes:
    """Return the decompressed content of ``path`` after checking its digest."""
    data = read_bytes(path)
    got = spec.hexdigest(data)
    if got != spec.digest:
        raise DatasetError(
            f"{path}: checksum mismatch ({spec.algorithm} of the decompressed bytes is {got}, expected {spec.digest}); "
            "the file is corrupt or not the official release; delete it and provide the right file"
        )
    return data


def locate(spec: RemoteFile, subdir: str, root: str | Path | None) -> Path | None:
    """The first existing copy of the file in the data roots (``ROOT/subdir/`` or ``ROOT/``)."""
    for base in candidate_roots(root):
        for folder in (base / subdir, base):
            for name in (spec.name + ".gz", spec.name):
                if (folder / name).is_file():
                    return folder / name
    return None


def download(spec: RemoteFile, subdir: str, *, timeout: float = 30.0) -> Path:
    """Fetch the file from its mirrors into the cache, verify it, and return its path.

    The file is written to a temporary name and renamed only after its checksum matched, so an
    interrupted or corrupt download never leaves a file that looks valid."""
    target_dir = cache_dir() / subdir
    errors = []
    for url in spec.urls:
        target = target_dir / (spec.name + (".gz" if url.endswith(".gz") else ""))
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        data = _maybe_gunzip(payload, url)
        if data is None or spec.hexdigest(data) != spec.digest:
            errors.append(f"{url}: checksum mismatch or corrupt payload")
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(payload)
        return target
    raise DatasetError(f"could not download {spec.name}: " + "; ".join(errors))


def _maybe_gunzip(payload: bytes, url: str) -> bytes | None:
    if payload[:2] != b"\x1f\x8b":
        return payload
    try:
        return gzip.decompress(payload)
    except (OSError, EOFError):
        return None


def fetch(spec: RemoteFile, subdir: str, root: str | Path | None, download_missing: bool) -> tuple[Path, bytes]:
    """Locate (or download) and verify one file; return its path and decompressed bytes."""
    path = locate(spec, subdir, root)
    if path is None:
        if not download_missing:
            raise DatasetMissing(missing_message([spec], subdir, root))
        path = download(spec, subdir)
    return path, verify(spec, path)


def missing_message(specs: list[RemoteFile], subdir: str, root: str | Path | None) -> str:
    names = ", ".join(s.name + "[.gz]" for s in specs)
    looked = ", ".join(str(p) for p in candidate_roots(root))
    return (
        f"{subdir} files not found: {names}. Looked in {looked} (and their '{subdir}/' subfolders). "
        f"Provide them in one of three ways: (1) pass --data-dir DIR (root=DIR) pointing at a folder that holds them; "
        f"(2) set {ENV_VAR}=DIR; (3) run with --download (download=True) on a machine with internet access "
        f"to fetch and verify them into {cache_dir() / subdir}."
    )
