"""The L2-regularised targeted attack of Choi, "Adversarial MNIST image generation analysis"."""

from __future__ import annotations

import torch

from bayesrobust.attacks.base import ATTACKS, Attack, check_positive
from bayesrobust.errors import InputError


@ATTACKS.register("targeted_l2")
class TargetedL2(Attack):
    """Gradient descent on CE(f(x'), t) + λ‖x − x'‖₂², starting at x' = x (the weight update of
    training, applied to the image with the weights frozen). Each step is clipped to [0, 1]; the
    image stops moving once it is classified as the target with confidence ≥ ``stop_confidence``
    (1.0 never stops early: the paper runs a fixed number of steps).

    >>> TargetedL2(lam=0.05, lr=0.1, steps=200)(model, x, y, target=torch.full_like(y, 6))
    """

    name = "targeted_l2"
    norm = "L2"
    supports_untargeted = False

    def __init__(self, lam: float = 0.05, lr: float = 0.1, steps: int = 200, stop_confidence: float = 1.0, **common) -> None:
        super().__init__(**common)
        self.lam = check_positive("lam", lam)
        self.lr = check_positive("lr", lr, allow_zero=False)
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
        if not 0.0 < stop_confidence <= 1.0:
            raise InputError(f"stop_confidence must be in (0, 1], got {stop_confidence}")
        self.steps, self.stop_confidence = int(steps), float(stop_confidence)

    def perturb(self, model, x, y, target, generator):
        x_adv = x.clone()
        iterations = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in range(self.steps):
            xa = x_adv.detach().requires_grad_(True)
            logp = model.log_prob(xa, self.eot_samples, generator=generator)
            ce = -logp.gather(1, target[:, None]).squeeze(1)
            objective = ce + self.lam * (xa - x).flatten(1).pow(2).sum(1)
            (grad,) = torch.autograd.grad(objective.sum(), xa)
            if self.stop_confidence < 1.0:
                active &= ~(logp.detach().exp().gather(1, target[:, None]).squeeze(1) >= self.stop_confidence)
                if not active.any():
                    break
            step = (xa.detach() - self.lr * grad).clamp(0, 1)
            x_adv = torch.where(active[:, None, None, None], step, x_adv)
            iterations += active.long()
        return x_adv, iterations
