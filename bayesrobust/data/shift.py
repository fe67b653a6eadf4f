"""Synthetic distribution shift of digit images (Ovadia et al. 2019's MNIST protocol): rotations and
translations of increasing strength, applied to ``(N, 1, 28, 28)`` tensors in [0, 1]."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

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


@dataclass(frozen=True)
class ShiftGrid:
    """Ovadia et al. (2019)'s MNIST shift protocol, as the fields of a suite's config table: the same
    ``shift_limit`` test digits (stratified, seeded; 0: all) rotated by each of ``rotations`` degrees and
    moved right by each of ``translations`` pixels. One definition for every suite that runs it: the
    evaluation suite draws curves from the unshifted digits on (``identity``), the calibration suite
    treats each copy as one more set; both name a copy ``<kind>_<strength>`` (``rotate_45``)."""

    rotations: tuple[float, ...] = ()  # degrees (Ovadia et al.: 15, 30, …, 180)
    translations: tuple[int, ...] = ()  # pixels to the right (Ovadia et al.: 2, 4, …, 26)
    shift_limit: int = 2000  # test digits per copy (stratified, seeded; 0: all)

    def check(self, where: str) -> None:
        check_shift_grid(self.rotations, self.translations, where)
        if self.shift_limit < 0:
            raise ConfigError(f"{where}.shift_limit must be >= 0 (0: all test digits)")

    def points(self, *, identity: bool = False) -> list[tuple[str, float]]:
        """``(kind, strength)`` of every copy, rotations first; ``identity`` starts each kind that has a
        grid with strength 0 (the same digits unshifted)."""
        def grid(values) -> list:
            return [0, *values] if identity and values else list(values)

        return [("rotate", r) for r in grid(self.rotations)] + [("translate", t) for t in grid(self.translations)]

    def copies(self, test, *, identity: bool = False) -> dict[str, tuple[str, float, object]]:
        """``{copy name: (kind, strength, dataset)}`` of the shifted copies of ``test``'s digits."""
        base = test.head(self.shift_limit, seed=0) if self.shift_limit else test
        return {copy_name(kind, strength): (kind, strength, replace(base, images=SHIFTS[kind](base.images, strength)))
                for kind, strength in self.points(identity=identity)}


def copy_name(kind: str, strength: float) -> str:
    """A shifted copy's one name, in every suite's keys: ``rotate_45``, ``translate_4``, ``rotate_0``."""
    return f"{kind}_{strength:g}"


def check_shift_grid(rotations, translations, where: str) -> None:
    """A config's rotation (degrees) and translation (pixels) grid, or a ConfigError naming ``where``."""
    if any(not 0 < abs(r) <= 360 for r in rotations):
        raise ConfigError(f"{where}.rotations are degrees in (0, 360], got {list(rotations)}")
    if any(not 0 < t < 28 for t in translations):
        raise ConfigError(f"{where}.translations are pixels in 1..27, got {list(translations)}")
