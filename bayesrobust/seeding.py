"""Seed every random source the toolkit uses, and make explicit generators from a seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA). Deterministic kernels are a separate, scoped
    choice (:func:`deterministic_algorithms`), so seeding never changes a user's global settings."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def deterministic_algorithms(enabled: bool = True) -> Iterator[None]:
    """Within the block, ask torch for deterministic kernels (warning where none exists); restore the
    caller's setting afterwards. Experiments run inside it."""
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)


def derive_seed(seed: int, *names: str) -> int:
    """A stable sub-seed for a named stage (``derive_seed(0, "train", "lenet")``)."""
    import hashlib

    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return int.from_bytes(digest[:4], "little")


@contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Python's, NumPy's and torch's global RNGs seeded with ``seed`` inside the block and restored
    afterwards: what the block draws depends on ``seed`` alone, not on what ran before it (so a unit of a
    resumed run draws exactly what it drew in the uninterrupted run)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else []):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
