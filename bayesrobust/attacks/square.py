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

from bayesrobust.attacks.ball import check_norm, l2_norms
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
    random window of side s = round(√(p·H·W)) to ±ε per channel. L2 (the paper's Algorithm 3): start from
    a grid of split pseudo-Gaussian bumps (one half positive, one negative) of random signs scaled to
    norm ε; each query picks two random windows and, per channel, puts their norm plus the budget still
    unused into the first — a split bump of random sign added to the window's normalised old content —
    empties the second, and rescales the whole perturbation to norm ε (then the [0, 1] box). The loss is the margin log p̄(y) − max_{k≠y} log p̄(k)
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
        logp = pred.log_mean
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
            side = self._side(p, h, w)
            candidate = self._proposal(x[active], x_adv[active], side, generator)
            value, done = self.loss(judge, x_adv.index_put((active,), candidate), active)
            better = (value < best[active]) | done
            x_adv[active[better]] = candidate[better]
            best[active] = torch.where(better, value, best[active])
            finished[active] = done
            iterations[active] += 1
        return x_adv, iterations, finished

    def _side(self, p: float, h: int, w: int) -> int:
        """A window covering about p of the image; in L2 odd and at least 3 pixels (the split bump needs
        a centre and two halves), as in the paper's code."""
        side = max(int(round(math.sqrt(p * h * w))), 1)
        if self.norm == "L2":
            side = max(side, 3)
            side += 1 - side % 2
        return min(side, h - 1, w - 1)

    # --- the search's proposals -------------------------------------------------------------------
    def _corners(self, n: int, side: int, h: int, w: int, x: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random top-left corner per example for a ``side``-square window."""
        top = torch.randint(0, h - side + 1, (n,), generator=generator, device=x.device)
        left = torch.randint(0, w - side + 1, (n,), generator=generator, device=x.device)
        return top, left

    def _window(self, top, left, side: int, h: int, w: int) -> torch.Tensor:
        """The ``(n, 1, h, w)`` boolean mask of each example's window."""
        rows = torch.arange(h, device=top.device)[None] - top[:, None]
        cols = torch.arange(w, device=top.device)[None] - left[:, None]
        inside = lambda d: (d >= 0) & (d < side)  # noqa: E731
        return (inside(rows)[:, :, None] & inside(cols)[:, None, :])[:, None]

    def _place(self, patch: torch.Tensor, top, left, h: int, w: int) -> torch.Tensor:
        """``(n, c, s, s)`` patches put at each example's corner of an ``(n, c, h, w)`` zero image."""
        n, c, side, _ = patch.shape
        out = patch.new_zeros(n, c, h, w)
        i = top[:, None, None] + torch.arange(side, device=patch.device)[None, :, None]
        j = left[:, None, None] + torch.arange(side, device=patch.device)[None, None, :]
        out.permute(0, 2, 3, 1)[torch.arange(n, device=patch.device)[:, None, None], i, j] = patch.permute(0, 2, 3, 1)
        return out

    def _signs(self, shape, x: torch.Tensor, generator) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1

    def _split_bumps(self, n: int, c: int, side: int, x: torch.Tensor, generator) -> torch.Tensor:
        """The paper's L2 window shape, ``(n, c, side, side)``: the upper half a pseudo-Gaussian bump, the
        lower half its negative, unit norm, transposed for a random half of the examples, with a random
        sign per example and channel."""
        top = side // 2
        shape = torch.cat([pseudo_gaussian(top, side, x), -pseudo_gaussian(side - top, side, x)])
        shape = shape / shape.norm().clamp_min(1e-12)
        flip = torch.randint(0, 2, (n,), generator=generator, device=x.device).bool()
        shapes = torch.where(flip[:, None, None], shape.T, shape)
        return shapes[:, None] * self._signs((n, c, 1, 1), x, generator)

    def _initial(self, x: torch.Tensor, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        if self.norm == "Linf":  # vertical stripes of ±ε
            return (x + self.eps * self._signs((n, c, 1, w), x, generator)).clamp(0.0, 1.0)
        # L2: a grid of split bumps of random sign, the whole scaled to norm ε
        size = max(h // 5, 1)
        offset = (h - 5 * size) // 2 if h >= 5 else 0
        delta = torch.zeros_like(x)
        for top in range(offset, h - size + 1, size):
            for left in range(offset, w - size + 1, size):
                delta[..., top: top + size, left: left + size] += self._split_bumps(n, c, size, x, generator)
        return (x + delta * (self.eps / l2_norms(delta).clamp_min(1e-12)).view(-1, 1, 1, 1)).clamp(0.0, 1.0)

    def _proposal(self, x: torch.Tensor, current: torch.Tensor, side: int, generator) -> torch.Tensor:
        n, c, h, w = x.shape
        top, left = self._corners(n, side, h, w, x, generator)
        first = self._window(top, left, side, h, w)
        if self.norm == "Linf":  # the window set to ±ε per channel around x
            signs = self._signs((n, c, 1, 1), x, generator)
            return torch.where(first, (x + self.eps * signs).clamp(0.0, 1.0), current)
        # L2 (the paper's Algorithm 3): move the mass of two windows, plus the budget still unused, into
        # the first window as a split bump added to its normalised old content; empty the second; keep
        # the perturbation on the ε-sphere
        top2, left2 = self._corners(n, side, h, w, x, generator)
        second = self._window(top2, left2, side, h, w)
        delta = current - x
        both = (first | second).to(x.dtype)
        per_channel = lambda d: d.pow(2).sum((2, 3), keepdim=True).sqrt()  # noqa: E731  (n, c, 1, 1)
        unused_sq = (self.eps ** 2 - l2_norms(delta) ** 2).clamp_min(0).view(-1, 1, 1, 1)
        old = delta * first
        old = old / per_channel(old).clamp_min(1e-12)
        bump = self._place(self._split_bumps(n, c, side, x, generator), top, left, h, w) + old
        bump = bump / per_channel(bump).clamp_min(1e-12) * (unused_sq / c + per_channel(delta * both) ** 2).sqrt()
        delta = torch.where(first, bump, torch.where(second, torch.zeros_like(delta), delta))
        return (x + delta * (self.eps / l2_norms(delta).clamp_min(1e-12)).view(-1, 1, 1, 1)).clamp(0.0, 1.0)


def pseudo_gaussian(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """The paper's bump on a ``height`` × ``width`` window: nested rectangles around the centre, the k-th
    from it adding 1/(k + 1)², so a pixel at Chebyshev distance d from the centre holds
    Σ_{k ≥ d} 1/(k + 1)² (up to the window's largest distance)."""
    if height == 0:
        return like.new_zeros(0, width)
    dy = (torch.arange(height, device=like.device) - height // 2).abs()
    dx = (torch.arange(width, device=like.device) - width // 2).abs()
    distance = torch.maximum(dy[:, None], dx[None])
    reach = int(max(height // 2, width // 2))
    weights = 1.0 / (torch.arange(reach + 1, device=like.device, dtype=like.dtype) + 1) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = Σ_{k ≥ d} weights[k]
    return tail[distance]
