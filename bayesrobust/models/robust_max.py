"""The robust-max likelihood for GP classification, as a GPyTorch ``Likelihood``.

p(y | f) = 1 − ε if y = argmax f, ε / (C − 1) otherwise (Hernández-Lobato et al. 2011; GPflow's
``RobustMax``; the likelihood of Bradshaw et al.'s GPDNN). Under independent Gaussian marginals
f_j ~ N(μ_j, σ_j²) the probability that class y has the largest latent value is one-dimensional:

    P(y = argmax f) = ∫ N(u; μ_y, σ_y²) Π_{j≠y} Φ((u − μ_j) / σ_j) du
                    ≈ π^(−1/2) Σᵢ wᵢ Π_{j≠y} Φ((μ_y + √2 σ_y xᵢ − μ_j) / σ_j)

with Gauss–Hermite nodes xᵢ and weights wᵢ; Φ is squashed to [1e-6, 1 − 1e-6] so a product of many
Φ never underflows to an exact 0 in the gradient. Both the expected log-likelihood the ELBO needs and
the predictive probabilities follow from P, deterministically — no Monte Carlo:

    E_q[log p(y | f)] = P_y log(1 − ε) + (1 − P_y) log(ε / (C − 1))
    p(y | x)          = P_y (1 − ε) + (1 − P_y) ε / (C − 1)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from gpytorch.likelihoods import Likelihood

_SQUASH = 1e-6


def gauss_hermite(points: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights of ∫ exp(−x²) g(x) dx ≈ Σ wᵢ g(xᵢ)."""
    x, w = np.polynomial.hermite.hermgauss(points)
    return torch.as_tensor(x, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def _squashed_cdf(z: torch.Tensor) -> torch.Tensor:
    return (0.5 * (1.0 + torch.erf(z / math.sqrt(2.0)))) * (1.0 - 2.0 * _SQUASH) + _SQUASH


def argmax_probabilities(mean: torch.Tensor, std: torch.Tensor, points: int = 20) -> torch.Tensor:
    """P(c = argmax f) for every class c, ``(N, C)``, from marginal means and standard deviations
    ``(N, C)`` by Gauss–Hermite quadrature. Differentiable in both."""
    nodes, weights = gauss_hermite(points, mean.device, mean.dtype)
    # u[n, c, i]: the i-th quadrature value of f_c; z[n, c, j, i] = (u[n, c, i] − μ_j) / σ_j
    u = mean[..., :, None] + math.sqrt(2.0) * std[..., :, None] * nodes
    z = (u[..., :, None, :] - mean[..., None, :, None]) / std[..., None, :, None]
    cdf = _squashed_cdf(z)
    classes = mean.shape[-1]
    eye = torch.eye(classes, dtype=torch.bool, device=mean.device)[..., None]
    cdf = torch.where(eye, torch.ones_like(cdf), cdf)  # the product runs over j ≠ c
    return (cdf.prod(-2) * weights).sum(-1) / math.sqrt(math.pi)


class RobustMax(Likelihood):
    """Robust-max likelihood with C classes and a fixed (or learnable) error rate ``epsilon``.

    Follows GPyTorch's protocol, so it drops into ``VariationalELBO`` unchanged: calling it on the
    latent ``MultitaskMultivariateNormal`` (event shape ``(N, C)``) returns the predictive
    ``Categorical`` (:meth:`marginal`), :meth:`expected_log_prob` gives the per-example expected
    log-likelihood, and :meth:`forward` maps latent *samples* to the robust-max ``Categorical``."""

    def __init__(self, num_classes: int = 10, epsilon: float = 1e-3, learn_epsilon: bool = False,
                 quadrature_points: int = 20) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 < epsilon < 1.0 - 1.0 / num_classes:
            raise ValueError(f"epsilon must be in (0, 1 − 1/C) = (0, {1 - 1 / num_classes:.3g}), got {epsilon}")
        if quadrature_points < 2:
            raise ValueError(f"quadrature_points must be >= 2, got {quadrature_points}")
        self.num_classes = num_classes
        self.quadrature_points = quadrature_points
        raw = torch.tensor(math.log(epsilon / (1.0 - epsilon)))  # logit of ε
        if learn_epsilon:
            self.raw_epsilon = torch.nn.Parameter(raw)
        else:
            self.register_buffer("raw_epsilon", raw)

    @property
    def epsilon(self) -> torch.Tensor:
        return torch.sigmoid(self.raw_epsilon)

    def _log_levels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log(1 − ε) and log(ε / (C − 1))."""
        eps = self.epsilon
        return torch.log1p(-eps), torch.log(eps / (self.num_classes - 1))

    def argmax_probabilities(self, function_dist) -> torch.Tensor:
        """P(c = argmax f) ``(N, C)`` under the marginals of ``function_dist`` (event shape (N, C)),
        normalised over classes (:meth:`class_probabilities`)."""
        return self.class_probabilities(function_dist.mean, function_dist.variance.clamp_min(1e-10).sqrt())

    def class_probabilities(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """The quadrature's P(c = argmax f) ``(N, C)``, normalised to sum to 1 over classes. The sum is
        1 to ~1e-3 when the classes' σ are alike, but off by up to ~0.1 when one σ is ~100× another
        (20 points; the integrand then has a near-step), so the ELBO and the predictive share these
        normalised values: the same P in both, and a distribution in each."""
        p = argmax_probabilities(mean, std, self.quadrature_points).clamp(0.0, 1.0)
        return p / p.sum(-1, keepdim=True).clamp_min(1e-30)

    def log_predictive(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        """log p(c | x) ``(N, C)`` from latent marginals (:meth:`class_probabilities`)."""
        p = self.class_probabilities(mean, std)
        hit, miss = self._log_levels()
        return torch.logaddexp(torch.log(p.clamp_min(1e-30)) + hit, torch.log1p(-p.clamp(max=1 - 1e-7)) + miss)

    def log_prob_of_samples(self, function_samples: torch.Tensor) -> torch.Tensor:
        """log p(c | f) for latent samples ``(..., C)``: log(1 − ε) at the argmax, log(ε/(C − 1)) elsewhere."""
        hit, miss = self._log_levels()
        top = function_samples.argmax(-1, keepdim=True)
        out = miss.expand(function_samples.shape).clone()
        return out.scatter(-1, top, hit.expand(top.shape).to(out.dtype))

    def forward(self, function_samples: torch.Tensor, *args, **kwargs) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.log_prob_of_samples(function_samples))

    def marginal(self, function_dist, *args, **kwargs) -> torch.distributions.Categorical:
        std = function_dist.variance.clamp_min(1e-10).sqrt()
        return torch.distributions.Categorical(logits=self.log_predictive(function_dist.mean, std))

    def expected_log_prob(self, observations: torch.Tensor, function_dist, *args, **kwargs) -> torch.Tensor:
        """E_q[log p(y | f)] per example ``(N,)``, exact up to the quadrature, with the predictive's
        normalised P (:meth:`class_probabilities`)."""
        p = self.argmax_probabilities(function_dist).gather(-1, observations.long()[..., None])[..., 0]
        hit, miss = self._log_levels()
        return p * hit + (1.0 - p) * miss
