"""Random sign noise of the same magnitude as FGSM: the control of Lacok (2016), Table 1."""

from __future__ import annotations

import torch

from bayesrobust.attacks.base import ATTACKS, Attack, check_positive, no_claims


@ATTACKS.register("sign_noise")
class SignNoise(Attack):
    """x + ε·r with r uniform in {−1, +1} per pixel, clipped to [0, 1]. Shows that FGSM's damage comes
    from the gradient's direction, not the perturbation's size. Draws from ``generator``."""

    name = "sign_noise"
    tiny_params = {"eps": 0.2}  # runs in well under a second on a tiny model
    supports_penalty = False
    norm = "Linf"
    supports_targeted = False
    uses_gradients = False

    def __init__(self, eps: float = 0.25, **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps)

    def perturb(self, model, x, y, target, generator, judge):
        source = generator.device if generator is not None else x.device
        bits = torch.randint(0, 2, x.shape, generator=generator, device=source).to(x.device)
        r = bits.to(x.dtype) * 2 - 1
        return (x + self.eps * r).clamp(0, 1), torch.zeros(x.shape[0], dtype=torch.long, device=x.device), no_claims(x)
