"""Box-constrained L-BFGS attack (Szegedy et al. 2014, arXiv:1312.6199)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from bayesrobust.attacks.base import ATTACKS, Attack, check_positive
from bayesrobust.errors import InputError


@ATTACKS.register("lbfgs")
class LBFGS(Attack):
    """minimise c·‖r‖₂ + CE(f(x + r), l) subject to x + r ∈ [0, 1]⁷⁸⁴, with SciPy's L-BFGS-B.

    The whole batch is one L-BFGS-B problem: the objective is a sum of independent per-example terms,
    so its minimiser is every example's minimiser, and one gradient call serves the batch. Szegedy et
    al. line-search c to find the least distortion that still reaches ``l``; here c is searched per
    example on a log scale (``search_steps`` rounds: ×``c_factor`` after a success — more weight on
    distortion — ÷ after a failure, then bisection between the bracketing values), keeping the
    smallest-distortion success. ``result.l2 / 28`` is the paper's RMS distortion.

    >>> LBFGS(initial_const=0.1, search_steps=6)(model, x, y, target=t)
    """

    name = "lbfgs"
    norm = "L2"

    def __init__(self, initial_const: float = 0.1, search_steps: int = 6, c_factor: float = 10.0,
                 max_iterations: int = 100, **common) -> None:
        super().__init__(**common)
        self.initial_const = check_positive("initial_const", initial_const, allow_zero=False)
        if search_steps < 1 or max_iterations < 1 or c_factor <= 1:
            raise InputError("search_steps and max_iterations must be >= 1 and c_factor > 1")
        self.search_steps, self.c_factor, self.max_iterations = int(search_steps), float(c_factor), int(max_iterations)

    def perturb(self, model, x, y, target, generator):
        n = x.shape[0]
        targeted = target is not None
        labels = target if targeted else y
        log_c = torch.full((n,), float(np.log(self.initial_const)), dtype=torch.float64)
        low = torch.full((n,), -np.inf, dtype=torch.float64)   # largest log c known to succeed
        high = torch.full((n,), np.inf, dtype=torch.float64)   # smallest log c known to fail
        best_l2 = torch.full((n,), float("inf"))
        best = x.detach().clone()
        iterations = torch.zeros(n, dtype=torch.long)
        x0 = x.detach().cpu().double().flatten(1).numpy()
        for _ in range(self.search_steps):
            c = log_c.exp().to(x.device, x.dtype)
            x_new, calls = self._solve(model, x, labels, targeted, c, x0, generator)
            iterations += calls
            with torch.no_grad():
                pred = model.log_prob(x_new, self.eot_samples, generator=generator).argmax(1)
                ok = (pred == labels) if targeted else (pred != labels)
                l2 = (x_new - x).flatten(1).norm(dim=1)
                better = (ok & (l2 < best_l2.to(x.device))).cpu()
            best[better.to(x.device)] = x_new[better.to(x.device)]
            best_l2 = torch.where(better, l2.cpu(), best_l2)
            ok = ok.cpu()
            low = torch.where(ok, torch.maximum(low, log_c), low)
            high = torch.where(ok, high, torch.minimum(high, log_c))
            step = float(np.log(self.c_factor))
            log_c = torch.where(torch.isfinite(low) & torch.isfinite(high), (low + high) / 2,
                                torch.where(ok, log_c + step, log_c - step))
        return best, iterations

    def _solve(self, model, x, labels, targeted, c, x0, generator):
        shape, device, dtype = x.shape, x.device, x.dtype
        sign = 1.0 if targeted else -1.0  # untargeted: maximise the true label's loss
        calls = [0]

        def fun(flat: np.ndarray):
            calls[0] += 1
            xa = torch.from_numpy(flat).to(device, dtype).view(shape).requires_grad_(True)
            r = (xa - x).flatten(1)
            dist = torch.sqrt(r.pow(2).sum(1) + 1e-12)
            ce = -model.log_prob(xa, self.eot_samples, generator=generator).gather(1, labels[:, None]).squeeze(1)
            total = (c * dist + sign * ce).sum()
            (grad,) = torch.autograd.grad(total, xa)
            return float(total.detach()), grad.flatten().double().cpu().numpy()

        start = x0.ravel().copy()
        result = minimize(fun, start, jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * start.size,
                          options={"maxiter": self.max_iterations})
        x_new = torch.from_numpy(result.x).to(device, dtype).view(shape).clamp(0, 1)
        return x_new, calls[0]
