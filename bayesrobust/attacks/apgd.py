"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690): projected gradient ascent with momentum and a step
size that halves at checkpoints when progress stalls, in L∞ or L2, on the cross-entropy or the
difference-of-logits-ratio (DLR) loss.

On stochastic models every gradient is the EOT gradient of the MC-mean predictive over ``eot_samples``
draws, and the losses are computed from its log-probabilities (DLR is invariant to the shift between
logits and log-probabilities, so on a plain network it is the paper's DLR of the logits). Every
decision about success is the attack's judge (``criterion.py``): an example leaves the batch at its
first iterate the judge accepts, and an example the judge never accepts returns its highest-loss
iterate over all restarts.
"""

from __future__ import annotations

import math

import torch

from bayesrobust.attacks.ball import check_norm, project, random_start, steepest
from bayesrobust.attacks.base import ATTACKS, Attack, check_positive, judge_iterate
from bayesrobust.errors import InputError

LOSSES = ("ce", "dlr")


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j at which the step size may halve: w_j = ⌈p_j · steps⌉ with p₀ = 0, p₁ = 0.22,
    p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06) (the paper's schedule), up to ``steps``."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    marks = {math.ceil(round(q * steps, 9)) for q in p[1:]}  # rounded: 0.41 + 0.16 is 0.5700…01 in floating point
    return sorted(m for m in marks if m <= steps)


def dlr_loss(logp: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The DLR loss to maximise, ``(N,)``, from scores ``(N, C)`` (logits or log-probabilities) sorted
    z_π1 ≥ z_π2 ≥ …: untargeted −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3); targeted at t,
    −(z_y − z_t) / (z_π1 − (z_π3 + z_π4) / 2). Needs at least 3 (untargeted) or 4 (targeted) classes."""
    ordered = logp.sort(dim=1, descending=True).values
    own = logp.gather(1, y[:, None]).squeeze(1)
    if target is None:
        other = logp.scatter(1, y[:, None], float("-inf")).amax(1)
        return -(own - other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)
    aim = logp.gather(1, target[:, None]).squeeze(1)
    return -(own - aim) / (ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12)


@ATTACKS.register("apgd")
class APGD(Attack):
    """Auto-PGD: x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + α(z − x⁽ᵏ⁾) + (1 − α)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)), z = P(x⁽ᵏ⁾ + η·s(∇f)), with
    α = 0.75 (the first step without momentum), s = sign (L∞) or g/‖g‖₂ (L2), P the projection onto the
    ε-ball ∩ [0, 1], and η starting at 2ε. At each checkpoint (:func:`checkpoints`) η halves, and the
    iterate restarts from the best point so far, if fewer than ``rho`` of the steps since the last
    checkpoint raised the loss, or if neither η nor the best loss changed since it.

    ``loss``: ``ce`` (cross-entropy; the objective takes the uncertainty-aware goal and a detector's
    penalty like BIM's) or ``dlr``. ``target_classes`` > 0 (untargeted calls only): APGD-T — for k = 1 …
    ``target_classes``, a run of ``steps`` with the *targeted* loss towards the k-th most probable wrong
    class at the clean input, on the examples still unbroken; success stays misclassification.
    ``restarts``: runs from new random starts (``random_start``; else the first from x itself) on the
    examples still unbroken. Budget: ``steps`` × ``restarts`` × max(1, ``target_classes``) gradient
    evaluations per example at most, each with ``eot_samples`` draws; ``iterations`` counts the steps
    each example took.

    >>> APGD(eps=0.3, norm="Linf", loss="ce", steps=100)(model, x, y)
    """

    name = "apgd"
    tiny_params = {"eps": 0.2, "steps": 5}
    norm = "Linf"  # the class default; an instance's ``norm`` is its own

    def __init__(self, eps: float = 0.3, norm: str = "Linf", loss: str = "ce", steps: int = 100, restarts: int = 1,
                 rho: float = 0.75, momentum: float = 0.75, random_start: bool = True, target_classes: int = 0,
                 **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps, allow_zero=False)
        self.norm = check_norm(norm)
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        for key, value in (("steps", steps), ("restarts", restarts)):
            if int(value) < 1:
                raise InputError(f"{key} must be >= 1, got {value}")
        if target_classes < 0:
            raise InputError(f"target_classes must be >= 0, got {target_classes}")
        if not 0.0 < rho <= 1.0 or not 0.0 < momentum <= 1.0:
            raise InputError(f"rho and momentum must be in (0, 1], got {rho}, {momentum}")
        self.loss, self.steps, self.restarts = loss, int(steps), int(restarts)
        self.rho, self.momentum, self.random_start, self.target_classes = float(rho), float(momentum), bool(random_start), int(target_classes)

    # --- the loss ------------------------------------------------------------------------------
    def loss_and_grad(self, model, x, y, target, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss to maximise ``(N,)``, its input gradient, log MC-mean probabilities)."""
        if self.loss == "ce":
            objective, grad, logp = self.objective_and_grad(model, x, y, target, generator)
            return -objective, -grad, logp
        if self.penalty is not None:
            raise InputError("a detector's penalty needs loss = 'ce' (DLR has no place for it)")
        x = x.detach().requires_grad_(True)
        logp = model.log_prob(x, self.eot_samples, generator=generator)
        value = dlr_loss(logp, y, target)
        (grad,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), grad, logp.detach()

    # --- the attack ----------------------------------------------------------------------------
    def perturb(self, model, x, y, target, generator, judge):
        if self.target_classes and target is not None:
            raise InputError("target_classes chooses targets for an untargeted call: pass no target")
        n = x.shape[0]
        self.step_sizes_ = []  # diagnostics of the last call: per run, the η of each step (rows still attacked)
        x_adv = x.clone()
        best_loss = torch.full((n,), -math.inf, device=x.device)
        iterations = torch.zeros(n, dtype=torch.long, device=x.device)
        finished = torch.zeros(n, dtype=torch.bool, device=x.device)
        aims = [target] if not self.target_classes else list(self._target_ranking(model, x, y, generator))
        runs = [(aim, r) for aim in aims for r in range(self.restarts)]
        for aim, restart in runs:
            active = torch.nonzero(~finished).squeeze(1)
            if active.numel() == 0:
                break
            self._one_run(model, x, y, aim, generator, judge, x_adv, best_loss, iterations, finished, active,
                      start_random=self.random_start or restart > 0)
        return x_adv, iterations, finished

    def _target_ranking(self, model, x, y, generator):
        """The ``target_classes`` most probable wrong classes at the clean input, as target tensors."""
        with torch.no_grad():
            logp = model.log_prob(x, self.eot_samples, generator=generator)
        ranked = logp.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        for k in range(min(self.target_classes, logp.shape[1] - 1)):
            yield ranked[:, k]

    def _one_run(self, model, x, y, aim, generator, judge, x_adv, best_loss, iterations, finished, active, start_random):
        """One run of ``steps`` on the rows ``active``; updates the batch's state in place."""
        x0, y0 = x[active], y[active]
        t0 = None if aim is None else aim[active]
        current = random_start(x0, self.eps, self.norm, generator) if start_random else x0.clone()
        previous = current.clone()
        rows = len(active)
        eta = torch.full((rows,), 2.0 * self.eps, device=x.device)
        run_best = torch.full((rows,), -math.inf, device=x.device)
        run_best_x, run_best_grad = current.clone(), torch.zeros_like(current)
        last_loss = torch.full((rows,), -math.inf, device=x.device)
        raised = torch.zeros(rows, device=x.device)  # steps since the last checkpoint that raised the loss
        marks = checkpoints(self.steps)
        last_mark, eta_at_mark, best_at_mark = 0, eta.clone(), run_best.clone()
        sizes = []
        self.step_sizes_.append(sizes)
        for k in self.steps_bar(self.steps + 1):
            loss, grad, logp = self.loss_and_grad(model, current, y0, t0, generator)
            done = judge_iterate(model, judge, x_adv, best_loss, finished, active, current, loss, logp)
            if k == self.steps or bool(done.all()):
                break
            if k > 0:
                raised += (loss > last_loss).float()
            improved = loss > run_best
            if bool(improved.any()):
                run_best_x[improved], run_best_grad[improved] = current[improved], grad[improved]
            run_best, last_loss = torch.maximum(run_best, loss), loss
            if k in marks:  # halve η and go back to the best point where progress stalled
                stalled = (raised < self.rho * (k - last_mark)) | ((eta_at_mark == eta) & (best_at_mark == run_best))
                eta = torch.where(stalled, eta / 2, eta)
                for state, best in ((current, run_best_x), (previous, run_best_x), (grad, run_best_grad)):
                    state.copy_(torch.where(_per_row(stalled, state), best, state))
                raised.zero_()
                last_mark, eta_at_mark, best_at_mark = k, eta.clone(), run_best.clone()
            if bool(done.any()):  # broken rows leave the run
                keep = ~done
                active, x0, y0, t0 = active[keep], x0[keep], y0[keep], None if t0 is None else t0[keep]
                current, previous, grad, eta, raised = current[keep], previous[keep], grad[keep], eta[keep], raised[keep]
                run_best, run_best_x, run_best_grad = run_best[keep], run_best_x[keep], run_best_grad[keep]
                last_loss, eta_at_mark, best_at_mark = last_loss[keep], eta_at_mark[keep], best_at_mark[keep]
            sizes.append(eta.clone())
            z = project(current + _per_row(eta, current) * steepest(grad, self.norm), x0, self.eps, self.norm)
            alpha = 1.0 if k == 0 else self.momentum
            previous, current = current, project(current + alpha * (z - current) + (1 - alpha) * (current - previous),
                                                 x0, self.eps, self.norm)
            iterations[active] += 1


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(N,)`` values shaped to broadcast over ``like``'s rows."""
    return values.view(-1, *[1] * (like.dim() - 1))
