"""Spectral normalisation with a coefficient (Miyato et al. 2018; the soft bound of SNGP and DUE): a layer's
weight W is used as W · min(1, c / σ̂), σ̂ the largest singular value of the *operator* the layer applies,
estimated by power iteration.

For a linear layer the operator is W itself. For a convolution it is the convolution on inputs of the
layer's spatial size (DUE, van Amersfoort et al. 2021, after Gouk et al. 2018): reshaping the kernel to a
matrix, as ``torch.nn.utils.spectral_norm`` does, bounds a different quantity, which can be several times
smaller or larger than the convolution's true Lipschitz constant. Here the power iteration alternates the
convolution and its adjoint (the transposed convolution) on an image-shaped vector.

In training mode each forward pass runs ``power_iterations`` steps and stores the vectors; out of training
the stored estimate is used unchanged, so predictions never move the normalisation. σ̂ is a lower bound of
the true norm that tightens with every step; registration runs 50 steps so a fresh layer starts tight, and
:func:`tighten` runs 50 more when training ends (one step per training step lags fast-moving weights: by
2% after 30 large Adam steps in the tests).

A bounded layer computes min(1, c / σ̂) · (W x) + b: the map of the bounded weight (the operator is linear
in W) without materialising that weight and differentiating through it. ``layer.weight`` still reads as
the bounded weight.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

INITIAL_ITERATIONS = 50


class SpectralBound(nn.Module):
    """The parametrisation W ↦ W · min(1, c / σ̂(W)). ``forward_op(W, v)`` applies the layer's operator to
    a vector of the input's shape, ``adjoint_op(W, u)`` its transpose to a vector of the output's shape."""

    def __init__(self, weight: torch.Tensor, coefficient: float, power_iterations: int, input_shape: tuple[int, ...],
                 forward_op, adjoint_op) -> None:
        super().__init__()
        if coefficient <= 0:
            raise ValueError(f"spectral-norm coefficient must be > 0, got {coefficient}")
        if power_iterations < 1:
            raise ValueError(f"power_iterations must be >= 1, got {power_iterations}")
        self.coefficient, self.power_iterations = float(coefficient), int(power_iterations)
        self.input_shape = tuple(input_shape)
        self.forward_op, self.adjoint_op = forward_op, adjoint_op
        generator = torch.Generator().manual_seed(0)  # the starting vector is part of the layer, not the run's RNG
        v = torch.randn(input_shape, generator=generator, dtype=weight.dtype).to(weight.device)
        with torch.no_grad():
            u = forward_op(weight, v)
        self.register_buffer("v", F.normalize(v.flatten(), dim=0).view_as(v))
        self.register_buffer("u", F.normalize(u.flatten(), dim=0).view_as(u))
        self._iterate(weight.detach(), INITIAL_ITERATIONS)

    @torch.no_grad()
    def _iterate(self, weight: torch.Tensor, steps: int) -> None:
        for _ in range(steps):
            v = self.adjoint_op(weight, self.u)
            self.v.copy_(F.normalize(v.flatten(), dim=0).view_as(v))
            u = self.forward_op(weight, self.v)
            self.u.copy_(F.normalize(u.flatten(), dim=0).view_as(u))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """σ̂ = uᵀ W v with the stored vectors, differentiable in W (Miyato et al.). The vectors are
        cloned: they change in place at the next training step, after autograd has saved them."""
        return (self.u.clone() * self.forward_op(weight, self.v.clone())).sum()

    def scale(self, weight: torch.Tensor) -> torch.Tensor:
        """min(1, c / σ̂(W)), differentiable in W; in training mode after ``power_iterations`` steps."""
        if self.training:
            self._iterate(weight.detach(), self.power_iterations)
        return 1.0 / torch.clamp(self.sigma(weight) / self.coefficient, min=1.0)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale(weight)


def _conv_ops(layer: nn.Conv2d, input_hw: tuple[int, int]):
    """The convolution on one ``input_hw`` image and its adjoint, with the output padding that makes the
    transposed convolution return exactly the input's size."""
    kwargs = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation, "groups": layer.groups}
    out_hw = [(size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
              zip(input_hw, layer.padding, layer.dilation, layer.kernel_size, layer.stride)]
    output_padding = tuple(size - ((o - 1) * s - 2 * p + d * (k - 1) + 1) for size, o, p, d, k, s in
                           zip(input_hw, out_hw, layer.padding, layer.dilation, layer.kernel_size, layer.stride))

    def forward_op(weight, v):
        return F.conv2d(v, weight, **kwargs)

    def adjoint_op(weight, u):
        return F.conv_transpose2d(u, weight, output_padding=output_padding, **kwargs)

    return forward_op, adjoint_op


def bound_spectral_norm(layer: nn.Module, coefficient: float = 1.0, power_iterations: int = 1,
                        input_hw: tuple[int, int] | None = None) -> nn.Module:
    """Register :class:`SpectralBound` on ``layer.weight`` (an ``nn.Linear``, or an ``nn.Conv2d`` with the
    spatial size ``input_hw`` of its input) and return the layer. ``coefficient`` 1 is Miyato et al.'s
    normalisation, applied only where σ̂ > 1."""
    weight = layer.weight.detach()
    if isinstance(layer, nn.Conv2d):
        if input_hw is None:
            raise ValueError("a convolution's spectral norm depends on its input size: pass input_hw")
        if layer.padding_mode != "zeros":
            raise ValueError("only zero-padded convolutions are supported")
        forward_op, adjoint_op = _conv_ops(layer, tuple(input_hw))
        shape = (1, layer.in_channels, *input_hw)
    elif isinstance(layer, nn.Linear):
        def forward_op(w, v):
            return w @ v

        def adjoint_op(w, u):
            return w.t() @ u

        shape = (layer.in_features,)
    else:
        raise TypeError(f"spectral bounds apply to nn.Linear and nn.Conv2d, not {type(layer).__name__}")
    parametrize.register_parametrization(layer, "weight", SpectralBound(weight, coefficient, power_iterations, shape,
                                                                        forward_op, adjoint_op))
    layer.forward = types.MethodType(_scaled_output_forward, layer)
    return layer


def _scaled_output_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The bounded layer's output computed as min(1, c/σ̂) · (W x) + b: the same as with the bounded weight
    ``layer.weight`` (the operator is linear in W), without materialising it and differentiating through
    it — on the GPDNN's 3136 × 1024 and 1024 × 1024 layers that elementwise work was about a tenth of a
    training step."""
    weight = layer.parametrizations.weight.original
    scale = layer.parametrizations.weight[0].scale(weight)
    if isinstance(layer, nn.Conv2d):
        out = F.conv2d(x, weight, None, layer.stride, layer.padding, layer.dilation, layer.groups) * scale
        return out if layer.bias is None else out + layer.bias.view(1, -1, 1, 1)
    out = F.linear(x, weight) * scale
    return out if layer.bias is None else out + layer.bias


def tighten(module: nn.Module, steps: int = INITIAL_ITERATIONS) -> None:
    """Run ``steps`` power iterations on every bounded layer inside ``module``, on its current weights.
    One step per training step lags weights that move fast; call this when training ends (before the
    model predicts or is saved), so the bound it predicts with is the weights' own."""
    for layer in module.modules():
        if parametrize.is_parametrized(layer, "weight"):
            for bound in layer.parametrizations.weight:
                if isinstance(bound, SpectralBound):
                    bound._iterate(layer.parametrizations.weight.original.detach(), steps)


def operator_norm(layer: nn.Module) -> torch.Tensor:
    """The stored estimate σ̂ of a bounded layer's *raw* weight (before the bound is applied)."""
    bound = layer.parametrizations.weight[0]
    return bound.sigma(layer.parametrizations.weight.original).detach()
