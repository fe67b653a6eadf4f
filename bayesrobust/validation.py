"""Checks on images and labels at the public entry points (models, attacks)."""

from __future__ import annotations

import torch

from bayesrobust.errors import InputError

IMAGE_SHAPE = (1, 28, 28)


def check_images(x: torch.Tensor, *, name: str = "x", shape: tuple[int, ...] = IMAGE_SHAPE) -> torch.Tensor:
    """Check ``x`` is a floating-point batch ``(N, *shape)`` (MNIST's ``(N, 1, 28, 28)`` by default) of
    finite pixels in [0, 1] and return it as float32 (raise InputError if not).

    Any floating dtype is accepted — float64 arrives from NumPy, float16 from mixed precision — and
    converted once, here, so models and attacks always compute in float32. The conversion is
    differentiable: gradients flow back to the caller's tensor in its own dtype."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        raise InputError(f"{name} must have shape (N, {', '.join(map(str, shape))}), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{name} is an empty batch")
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))  # one pass; NaN and ±inf fail the range test too
    if not (lo >= 0.0 and hi <= 1.0):
        if not torch.isfinite(x.detach()).all():
            bad = int((~torch.isfinite(x.detach())).flatten(1).any(1).sum())
            raise InputError(f"{name} contains NaN or inf in {bad} image(s)")
        raise InputError(f"{name} pixels must lie in [0, 1], got range [{lo:.4g}, {hi:.4g}]")
    return x if x.dtype == torch.float32 else x.float()


def check_labels(y: torch.Tensor, n: int, num_classes: int, *, name: str = "y") -> torch.Tensor:
    """Return ``y`` after checking it is ``n`` integer class indices in ``[0, num_classes)``."""
    if not isinstance(y, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise InputError(f"{name} must be an integer tensor, got dtype {y.dtype}")
    if y.shape != (n,):
        raise InputError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InputError(f"{name} must lie in [0, {num_classes}), got range [{int(y.min())}, {int(y.max())}]")
    return y.long()
