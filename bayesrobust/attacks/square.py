"""Square Attack (Andriushchenko, Croce, Flammarion & Hein 2020, arXiv:1912.00049): a score-based,
gradient-free random search in L∞ or L2 that changes one random square window per query and keeps the
change only if it lowers the loss.

It needs no gradient, so masked or noisy gradients do not stop it: if Square breaks a model that the
white-box attacks do not, their gradients were the problem (Carlini et al. 2019's check). On a
stochastic model every query is scored by the attack's judge (``criterion.py``): the predictive over the
judge's ``eval_samples`` fixed draws, so what the search accepts and what it reports as success are
the same criterion, with no noise between one query's score and the next (AutoAttack's Square has no
EOT; auto-attack issue #56).
"""

from __future__ import annotations

import math

import torch

from bayesrobust.attacks.ball import check_norm, l2_norms, project
from bayesrobust.attacks.base import ATTACKS, Attack, check_positive
from bayesrobust.errors import InputError

HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10,000 queries: where p halves


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The share p of the image a window covers at ``query``: ``p_init`` halved at each of
    :data:`HALVINGS` (scaled from 10,000 queries to ``queries``)."""
    scaled = int(query / queries * 10_000)
    return p_init / 2 ** sum(scaled > h for h in HALVINGS)


@ATTACKS.register("square")
class Square(Attack):
    """Random search over square windows. L∞: start from vertical stripes of ±ε; each query sets one
    random window of side s = round(√(p·H·W)) to ±ε per channel. L2: start from a grid of ε-scaled
    bumps; each query clears two random windows and puts the norm they free (up to ε in all) into a
    pseudo-Gaussian bump of random sign in the first — a simplified form of the paper's update, which
    also keeps the perturbation on the ε-sphere. The loss is the margin log p̄(y) − max_{k≠y} log p̄(k)
    untargeted, the cross-entropy of the target targeted, from the judge's predictive. ``queries``
    scored queries per example at most (the initialisation is the first), the budget reported as
    ``iterations``; an example stops at its first query the judge counts as a success.

    >>> Square(eps=0.3, queries=5000, p_init=0.8)(model, x, y)
    """

    name = "square"
    tiny_params = {"eps": 0.2, "queries": 20}
    norm = "Linf"  # the class default; an instance's ``norm`` is its own
    uses_gradients = False  # nothing for an adaptive (EOT) form to change: queries are scored by the judge
    supports_penalty = False

    def __init__(self, eps: float = 0.3, norm: str = "Linf", queries: int = 5000, p_init: float = 0.8, **common) -> None:
        super().__init__(**common)
        self.eps = check_positive("eps", eps, allow_zero=False)
        self.norm = check_norm(norm)
        if int(queries) < 1:
            raise InputError(f"queries must be >= 1, got {queries}")
        if not 0.0 < p_init <= 1.0:
            raise InputError(f"p_init must be in (0, 1], got {p_init}")
        self.queries, self.p_init = int(queries), float(p_init)

    def loss(self, judge, x_batch, rows) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss to lower, success) of the rows ``rows`` of ``x_batch``, by the judge's predictive."""
        pred = judge.rows_predictive(x_batch, rows)
        logp = pred.mean.clamp_min(1e-30).log()
        r = rows.cpu()
        if judge.target is None:
            y = judge.y.cpu()[r]
            own = logp.gather(1, y[:, None]).squeeze(1)
            value = own - logp.scatter(1, y[:, None], float("-inf")).amax(1)
        else:
            value = -logp.gather(1, judge.target.cpu()[r][:, None]).squeeze(1)
        return value.to(x_batch.device), judge.reached(pred, rows).to(x_batch.device)

    def perturb(self, model, x, y, target, generator, judge):
        n, c, h, w = x.shape
        start = self._initial(x, generator)
        x_adv = start.clone()
        rows = torch.arange(n, device=x.device)
        best, finished = self.loss(judge, x_adv, rows)
        iterations = torch.ones(n, dtype=torch.long, device=x.device)
        for query in self.steps_bar(self.queries - 1):
            active = torch.nonzero(~finished).squeeze(1)
            if active.numel() == 0:
                break
            p = square_fraction(self.p_init, query, self.queries)
            side = min(max(int(round(math.sqrt(p * h * w))), 1), h - 1)
            candidate = self._proposal(x[active], x_adv[active], side, generator)
            value, done = self.loss(judge, x_adv.index_put((active,), candidate), active)
            better = (value < best[active]) | done
            x_adv[active[better]] = candidate[better]
            best[active] = torch.where(better, value, best[active])
            finished[active] = done
            iterations[active] += 1
        return x_adv, iterations, finished

    # --- the search's proposals -------------------------------------------------------------------
    def _windows(self, n: int, side: int, h: int, w: int, x: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random ``side``-square per example: its ``(n, 1, h, w)`` boolean mask and a unit-norm
        pseudo-Gaussian bump on it (concentric rings weighted 1/(ring + 1)², the paper's shape)."""
        top = torch.randint(0, h - side + 1, (n,), generator=generator, device=x.device)
        left = torch.randint(0, w - side + 1, (n,), generator=generator, device=x.device)
        centre = (side - 1) / 2
        dy = torch.arange(h, device=x.device, dtype=x.dtype)[None] - top[:, None] - centre  # (n, h)
        dx = torch.arange(w, device=x.device, dtype=x.dtype)[None] - left[:, None] - centre  # (n, w)
        ring = torch.maximum(dy.abs()[:, :, None], dx.abs()[:, None, :]).floor()
        mask = (dy.abs() <= centre)[:, :, None] & (dx.abs() <= centre)[:, None, :]
        bump = torch.where(mask, 1.0 / (ring + 1) ** 2, torch.zeros_like(ring))
        bump = bump / bump.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1)
        return mask[:, None], bump[:, None]

    def _signs(self, shape, x: torch.Tensor, generator) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1

    def _initial(self, x: torch.Tensor, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.norm == "Linf":  # vertical stripes of ±ε
            return (x + self.eps * self._signs((n, c, 1, w), x, generator)).clamp(0.0, 1.0)
        # L2: a grid of bumps of random sign, scaled to norm ε
        delta = torch.zeros_like(x)
        size = max(h // 5, 1)
        centre = (size - 1) / 2
        idx = torch.arange(size, dtype=x.dtype, device=x.device)
        ring = torch.maximum((idx[:, None] - centre).abs(), (idx[None] - centre).abs()).floor()
        shape = 1.0 / (ring + 1) ** 2
        for top in range(0, h - size + 1, size):
            for left in range(0, w - size + 1, size):
                delta[..., top: top + size, left: left + size] += shape * self._signs((n, c, 1, 1), x, generator)
        delta = delta * (self.eps / l2_norms(delta).clamp_min(1e-12)).view(-1, 1, 1, 1)
        return project(x + delta, x, self.eps, "L2")

    def _proposal(self, x: torch.Tensor, current: torch.Tensor, side: int, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        window, bump = self._windows(n, side, h, w, x, generator)
        if self.norm == "Linf":  # the window set to ±ε per channel around x
            signs = self._signs((n, c, 1, 1), x, generator)
            return torch.where(window, (x + self.eps * signs).clamp(0.0, 1.0), current)
        # L2: clear two windows and put the norm they free into a bump of random sign in the first
        other = self._windows(n, side, h, w, x, generator)[0]
        cleared = window | other
        delta = torch.where(cleared, torch.zeros_like(x), current - x)
        budget = (self.eps ** 2 - l2_norms(delta) ** 2).clamp_min(0).sqrt()  # the norm outside plus the bump's: ε
        bump = bump * self._signs((n, c, 1, 1), x, generator) / math.sqrt(c)
        return project(x + delta + bump * budget.view(-1, 1, 1, 1), x, self.eps, "L2")
