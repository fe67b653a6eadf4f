"""The threat models of the norm-bounded attacks (PGD, APGD, Square): the L∞ or L2 ball of radius ε
around each image, intersected with the [0, 1] pixel box. Not an attack: imported by them."""

from __future__ import annotations

import torch

from bayesrobust.errors import InputError

NORMS = ("Linf", "L2")


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise InputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return norm


def _per_example(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *[1] * (like.dim() - 1))


def l2_norms(delta: torch.Tensor) -> torch.Tensor:
    """Each example's Euclidean norm ``(N,)``."""
    return delta.flatten(1).norm(dim=1)


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """``x_adv`` moved into the ε-ball around ``x`` (L∞: clipped per pixel; L2: the perturbation scaled
    down to norm ε), then clipped to [0, 1]. For L2 the box clip after the scaling is the usual
    approximation of the projection onto the intersection (AutoAttack's and torchattacks' too)."""
    if norm == "Linf":
        return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    delta = x_adv - x
    factor = torch.clamp(eps / l2_norms(delta).clamp_min(1e-12), max=1.0)
    return (x + delta * _per_example(factor, x)).clamp(0.0, 1.0)


def steepest(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit-norm direction of steepest ascent for the norm: sign(g) for L∞, g / ‖g‖₂ for L2 (zero
    where the gradient is zero)."""
    if norm == "Linf":
        return grad.sign()
    return grad / _per_example(l2_norms(grad).clamp_min(1e-12), grad)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    """A uniform point of the L∞ ball, or a point on the L2 sphere of radius ε in a uniformly random
    direction, around each image, clipped to [0, 1] (Madry et al.'s random start)."""
    if norm == "Linf":
        noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1
        return (x + eps * noise).clamp(0.0, 1.0)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return project(x + eps * steepest(noise, "L2"), x, eps, "L2")
