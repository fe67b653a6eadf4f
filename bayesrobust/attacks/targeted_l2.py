"""The L2-regularised targeted attack of Choi, "Adversarial MNIST image generation analysis"."""

from __future__ import annotations

import torch

from bayesrobust.attacks.base import ATTACKS, Attack, check_positive
from bayesrobust.errors import InputError


@ATTACKS.register("targeted_l2")
class TargetedL2(Attack):
    """Gradient descent on CE(f(x'), t) + λ‖x − x'‖₂², starting at x' = x (the weight update of
    training, applied to the image with the weights frozen). Each step is clipped to [0, 1]; the
    image stops moving once the attack's judge (the MC-mean predictive on MC models) classifies it as
    the target with probability ≥ ``stop_confidence`` (1.0 never stops early: the paper runs a fixed
    number of steps).

    >>> TargetedL2(lam=0.05, lr=0.1, steps=200)(model, x, y, target=torch.full_like(y, 6))
    """

    name = "targeted_l2"
    tiny_params = {"steps": 10, "lr": 0.2}  # runs in well under a second on a tiny model
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

    def perturb(self, model, x, y, target, generator, judge):
        x_adv = x.clone()
        iterations = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        stopped = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for _ in self.steps_bar(self.steps):
            if self.stop_confidence < 1.0:
                stopped = self._confident(judge, x_adv, target)
                if bool(stopped.all()):
                    break
            objective, grad, _ = self.objective_and_grad(model, x_adv, y, target, generator)
            grad = grad + 2 * self.lam * (x_adv - x)
            x_adv = torch.where(stopped[:, None, None, None], x_adv, (x_adv - self.lr * grad).clamp(0, 1))
            iterations += (~stopped).long()
        else:
            if self.stop_confidence < 1.0:
                stopped = self._confident(judge, x_adv, target)
        return x_adv, iterations, stopped

    def _confident(self, judge, x_adv, target):
        """The judge's success with the target's MC-mean probability at least ``stop_confidence``."""
        pred = judge.predictive(x_adv)
        sure = pred.mean.gather(1, target.cpu()[:, None]).squeeze(1) >= self.stop_confidence
        return (judge.goal.reached(pred, judge.y, judge.target) & sure).to(x_adv.device)
