"""Synthetic distribution shift of digit images (Ovadia et al. 2019's MNIST protocol): rotations and
translations of increasing strength, applied to ``(N, 1, 28, 28)`` tensors in [0, 1]."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from bayesrobust.errors import ConfigError


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate every image counter-clockwise by ``degrees`` about its centre (bilinear; corners that
    come from outside the frame are 0, the background)."""
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    matrix = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(matrix, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0.0, 1.0)


def translate(images: torch.Tensor, pixels: int) -> torch.Tensor:
    """Shift every image ``pixels`` to the right (ink that leaves the frame is lost, the gap is 0): the
    horizontal translation of Ovadia et al.'s shift protocol, 0–28 px."""
    if pixels <= 0:
        return images.clone()
    out = torch.zeros_like(images)
    if pixels < images.shape[-1]:
        out[..., pixels:] = images[..., : images.shape[-1] - pixels]
    return out


SHIFTS = {"rotate": rotate, "translate": translate}


def check_shift_grid(rotations, translations, where: str) -> None:
    """A config's rotation (degrees) and translation (pixels) grid, or a ConfigError naming ``where``."""
    if any(not 0 < abs(r) <= 360 for r in rotations):
        raise ConfigError(f"{where}.rotations are degrees in (0, 360], got {list(rotations)}")
    if any(not 0 < t < 28 for t in translations):
        raise ConfigError(f"{where}.translations are pixels in 1..27, got {list(translations)}")


def shift_points(rotations, translations) -> list[tuple[str, float]]:
    """``(kind, strength)`` of every grid point, rotations first."""
    return [("rotate", r) for r in rotations] + [("translate", t) for t in translations]
