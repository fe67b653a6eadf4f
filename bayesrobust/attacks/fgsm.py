"""Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, arXiv:1412.6572)."""

from __future__ import annotations

import torch

from bayesrobust.attacks.base import ATTACKS, Attack, check_positive, no_claims


@ATTACKS.register("fgsm")
class FGSM(Attack):
    """x_adv = clip(x + ε·sign(∇ₓ CE(f(x), y)), 0, 1); targeted: x − ε·sign(∇ₓ CE(f(x), t)).

    L∞-bounded, one forward + one backward pass per image. Inputs ``(N, 1, 28, 28)`` in [0, 1].

    >>> result = FGSM(eps=0.25)(model, x, y)
    >>> result.success.float().mean(), result.predictive.entropy.mean()
    """

    name = "fgsm"
    tiny_params = {"eps": 0.2}  # runs in well under a second on a tiny model
    norm = "Linf"

    def __init__(self, eps: float = 0.25, **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps)

    def perturb(self, model, x, y, target, generator, judge):
        _, grad, _ = self.objective_and_grad(model, x, y, target, generator)
        x_adv = (x - self.eps * grad.sign()).clamp(0, 1)
        return x_adv, torch.ones(x.shape[0], dtype=torch.long, device=x.device), no_claims(x)
