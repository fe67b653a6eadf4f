"""Basic iterative method (Kurakin, Goodfellow & Bengio 2016, arXiv:1607.02533), with the two
variants of Feinman et al. (2017, arXiv:1703.00410): BIM-A stops each example at its first
successful iterate, BIM-B runs every step. "Successful" is the attack's judge (``criterion.py``): on
an MC-dropout model the MC-mean predictive, the same criterion the result reports."""

from __future__ import annotations

import torch

from bayesrobust.attacks.base import ATTACKS, Attack, adversarial_margin, check_positive
from bayesrobust.errors import InputError


@ATTACKS.register("bim")
class BIM(Attack):
    """x_{k+1} = clip_{x,ε}(x_k + α·sign(∇ CE)), projected onto the ε-ball and [0, 1], ``steps`` times.

    One forward + one backward pass per active image per step; BIM-A drops finished images from the
    batch after judging the whole batch once per step (``eval_samples`` draws of the dropout head for
    MC models, one deterministic pass for plain ones). Inputs ``(N, 1, 28, 28)`` in [0, 1].

    ``kappa`` (nats, default 0): BIM-A stops an example only once the step's log-probability margin
    log p̄(adversarial class) − max of the others' (targeted: the target against the rest) is at least
    κ as well. The first iterate the judge accepts sits on its boundary, where fresh Monte-Carlo draws
    disagree about half the time; a margin keeps stopped examples past it. The suite's adaptive form
    uses it.

    >>> BIM(eps=0.3, alpha=0.01, steps=50, variant="A")(model, x, y)
    """

    name = "bim"
    tiny_params = {"eps": 0.2, "alpha": 0.05, "steps": 5}  # runs in well under a second on a tiny model
    norm = "Linf"
    kappa_unit = "nats"

    def __init__(self, eps: float = 0.3, alpha: float = 0.01, steps: int = 50, variant: str = "B", kappa: float = 0.0,
                 **common) -> None:
        super().__init__(**common)
        self.kappa = check_positive("kappa", kappa)
        self.eps = check_positive("eps", eps)
        self.alpha = check_positive("alpha", alpha)
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
        if variant not in ("A", "B"):
            raise InputError(f"variant must be 'A' (stop at first success) or 'B' (all steps), got {variant!r}")
        self.steps, self.variant = int(steps), variant

    def perturb(self, model, x, y, target, generator, judge):
        x_adv = x.clone()
        iterations = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        finished = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        active = torch.arange(x.shape[0], device=x.device)
        for _ in self.steps_bar(self.steps):
            xa = x_adv[active]
            _, grad, logp = self.objective_and_grad(model, xa, y[active], None if target is None else target[active], generator)
            if self.variant == "A":
                # judged before stepping; a plain model reuses the gradient pass's own outputs
                done = judge.success(x_adv, rows=active, logits=None if model.draws.several else logp)
                if self.kappa > 0:
                    done &= adversarial_margin(logp, y[active], None if target is None else target[active]) >= self.kappa
                finished[active] = done
                active, xa, grad = active[~done], xa[~done], grad[~done]
                if active.numel() == 0:
                    break
            x0 = x[active]
            step = xa - self.alpha * grad.sign()
            x_adv[active] = torch.min(torch.max(step, x0 - self.eps), x0 + self.eps).clamp(0, 1)
            iterations[active] += 1
        else:  # the last step moved the active images: judge them once more
            if self.variant == "A":
                finished[active] = judge.success(x_adv, rows=active)
        return x_adv, iterations, finished

