"""Projected gradient descent with a random start and restarts (Madry et al. 2018, "Towards deep learning
models resistant to adversarial attacks", arXiv:1706.06083), in L∞ or L2.

BIM is PGD started at x itself; this adds the random start in the ε-ball and ``restarts`` runs on the
examples still unbroken, what Madry et al. evaluate with. On stochastic models each gradient is the EOT
gradient over ``eot_samples`` draws; an example stops at its first iterate the attack's judge accepts
(``criterion.py``), and one never accepted returns its highest-loss iterate over all runs.
"""

from __future__ import annotations

import math

import torch

from bayesrobust.attacks.ball import check_norm, project, random_start, steepest
from bayesrobust.attacks.base import ATTACKS, Attack, check_positive, judge_iterate
from bayesrobust.errors import InputError


@ATTACKS.register("pgd")
class PGD(Attack):
    """x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α·s(∇ CE)), x⁽⁰⁾ uniform in the ε-ball (``random_start``), ``steps`` steps per
    run and ``restarts`` runs; s = sign (L∞) or g/‖g‖₂ (L2); P the projection onto the ε-ball ∩ [0, 1].
    The objective is BIM's (the cross-entropy, with the uncertainty-aware goal and a detector's penalty
    where given). Budget: ``steps`` × ``restarts`` gradient evaluations per example at most.

    >>> PGD(eps=0.3, alpha=0.01, steps=40, restarts=5)(model, x, y)
    """

    name = "pgd"
    tiny_params = {"eps": 0.2, "alpha": 0.05, "steps": 5}
    norm = "Linf"  # the class default; an instance's ``norm`` is its own

    def __init__(self, eps: float = 0.3, alpha: float = 0.01, steps: int = 40, restarts: int = 1, norm: str = "Linf",
                 random_start: bool = True, **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps, allow_zero=False)
        self.alpha = check_positive("alpha", alpha, allow_zero=False)
        self.norm = check_norm(norm)
        for key, value in (("steps", steps), ("restarts", restarts)):
            if int(value) < 1:
                raise InputError(f"{key} must be >= 1, got {value}")
        self.steps, self.restarts, self.random_start = int(steps), int(restarts), bool(random_start)

    def perturb(self, model, x, y, target, generator, judge):
        n = x.shape[0]
        x_adv, best_loss = x.clone(), torch.full((n,), -math.inf, device=x.device)
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        finished = torch.zeros(n, dtype=torch.bool, device=x.device)
        for restart in range(self.restarts):
            active = torch.nonzero(~finished).squeeze(1)
            if active.numel() == 0:
                break
            x0 = x[active]
            current = random_start(x0, self.eps, self.norm, generator) if self.random_start or restart else x0.clone()
            for k in self.steps_bar(self.steps + 1):
                aim = None if target is None else target[active]
                objective, grad, logp = self.objective_and_grad(model, current, y[active], aim, generator)
                done = judge_iterate(model, judge, x_adv, best_loss, finished, active, current, -objective, logp)
                if k == self.steps or bool(done.all()):
                    break
                if bool(done.any()):  # broken rows leave the run
                    keep = ~done
                    active, x0, current, grad = active[keep], x0[keep], current[keep], grad[keep]
                current = project(current - self.alpha * steepest(grad, self.norm), x0, self.eps, self.norm)
                iterations[active] += 1
        return x_adv, iterations, finished
