"""The one success criterion: what every attack decision and every reported success is judged by.

An attack on a stochastic model takes decisions about success while it runs — BIM-A's early stop,
C&W's and L-BFGS's best-example bookkeeping and binary search, JSMA's and the targeted attack's
stop. If those decisions look at the few dropout masks of the current gradient step while the
reported success looks at a fresh Monte-Carlo predictive, the two disagree at the decision boundary
and the report understates (or overstates) what the attack achieved. Here both use one
:class:`Judge`: the model's predictive over ``samples`` draws (for MC dropout the MC mean, default 50
draws) with *common random numbers* — the generator is re-seeded with the same seed at every
evaluation, so the judgement is a deterministic function of the batch. An example an attack marks as
finished is therefore exactly an example ``Attack.__call__`` reports as a success.

Because the masks are fixed for one attack call, an attack could in principle over-fit them;
``AttackResult.success_fresh`` re-judges the returned images on independent draws to show that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bayesrobust.errors import InputError
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import make_generator

UNCERTAINTY_MEASURES = ("mi", "entropy")


@dataclass(frozen=True)
class Goal:
    """What counts as success. The default is the classic one: misclassified (untargeted) or
    classified as the target. ``min_confidence`` (τ) and ``max_uncertainty`` add Grosse et al.'s
    high-confidence, low-uncertainty requirement ("The limitations of model uncertainty in adversarial
    settings", 2018): the MC-mean confidence of the predicted class must reach τ and the chosen
    ``uncertainty`` measure (mutual information or predictive entropy, nats) must not exceed the cap,
    typically the 95th percentile of the model's values on clean validation digits."""

    min_confidence: float = 0.0
    max_uncertainty: float = math.inf
    uncertainty: str = "mi"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise InputError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if not self.max_uncertainty >= 0.0:  # also refuses NaN
            raise InputError(f"max_uncertainty must be >= 0, got {self.max_uncertainty}")
        if self.uncertainty not in UNCERTAINTY_MEASURES:
            raise InputError(f"uncertainty must be one of {UNCERTAINTY_MEASURES}, got {self.uncertainty!r}")

    @property
    def constrained(self) -> bool:
        """True when the goal asks for more than a changed label."""
        return self.min_confidence > 0.0 or math.isfinite(self.max_uncertainty)

    def measure(self, pred: Predictive) -> torch.Tensor:
        return pred.mutual_information if self.uncertainty == "mi" else pred.entropy

    def reached(self, pred: Predictive, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Per-example success ``(N,)`` on the CPU."""
        predicted = pred.predicted
        hit = predicted == target.cpu() if target is not None else predicted != y.cpu()
        if self.min_confidence > 0.0:
            hit &= pred.confidence >= self.min_confidence
        if math.isfinite(self.max_uncertainty):
            hit &= self.measure(pred) <= self.max_uncertainty
        return hit


class Judge:
    """The success criterion of one attack call on one batch of ``N`` examples.

    ``success(x)`` and ``predictive(x)`` must be given the whole batch (all ``N`` rows, finished or
    not): the Monte-Carlo draws are assigned by position in the batch, so the same image in the same
    row is always judged the same way.
    """

    def __init__(self, model, y: torch.Tensor, target: torch.Tensor | None, *, samples: int, seed: int,
                 goal: Goal = Goal()) -> None:
        self.model, self.y, self.target = model, y, target
        self.samples, self.seed, self.goal = int(samples), int(seed), goal
        self.evaluations = 0

    def predictive(self, x: torch.Tensor) -> Predictive:
        """The model's predictive on the whole batch with this judge's fixed draws (on the CPU)."""
        self._count_whole(x)
        generator = make_generator(self.seed) if self.model.draws.random else None
        return self.model.predictive(x.detach(), self.samples, generator=generator)

    def _count_whole(self, x: torch.Tensor) -> None:
        """One evaluation of the whole batch (refused for anything else: draws go by position)."""
        if x.shape[0] != self.y.shape[0]:
            raise InputError(f"the judge needs the whole batch of {self.y.shape[0]} rows, got {x.shape[0]}")
        self.evaluations += 1

    def success(self, x: torch.Tensor, rows: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Success of the examples ``rows`` (default all) of the whole batch ``x``, on ``x``'s device.

        A deterministic model is judged on those rows alone, reusing ``logits`` (of ``x[rows]``) when
        the attack has just computed them; one with several draws (sampled or fixed) on those rows under
        the draws they get in the whole batch (``predictive_rows``: the same judgement, without the other
        rows' work)."""
        if rows is None and self.model.draws.several:
            return self.goal.reached(self.predictive(x), self.y, self.target).to(x.device)
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        if logits is not None and not self.model.draws.several:
            self.evaluations += 1
            pred = Predictive.from_logits(logits.detach()[None])
        else:
            pred = self.rows_predictive(x, rows)
        return self.reached(pred, rows).to(x.device)

    def rows_predictive(self, x: torch.Tensor, rows: torch.Tensor) -> Predictive:
        """The predictive of the examples ``rows`` of the whole batch ``x`` under this judge's draws (on
        the CPU): what a score-based attack ranks its queries by, so that what it accepts and what it
        reports are judged alike."""
        if self.model.draws.several:
            self._count_whole(x)
            return self.model.predictive_rows(x.detach(), rows, self.samples, generator=make_generator(self.seed))
        self.evaluations += 1
        return self.model.predictive(x.detach()[rows], 1)

    def restricted(self, rows: torch.Tensor, batch: torch.Tensor) -> RowsJudge:
        """This judge for an attack on the rows ``rows`` of ``batch`` alone."""
        return RowsJudge(self, rows, batch)

    def reached(self, pred: Predictive, rows: torch.Tensor) -> torch.Tensor:
        """The goal on the predictive ``pred`` of the examples ``rows`` (on the CPU)."""
        rows = rows.cpu()
        return self.goal.reached(pred, self.y.cpu()[rows], None if self.target is None else self.target.cpu()[rows])


class RowsJudge:
    """The judge of some rows of a batch, for an attack run on those rows alone (a stage of AutoAttack):
    its row ``i`` is the parent's row ``rows[i]``, judged in the parent's whole batch with the draws that
    row gets there, so a stage's decisions are the final report's."""

    def __init__(self, parent: Judge, rows: torch.Tensor, batch: torch.Tensor) -> None:
        self.parent, self.rows, self.batch = parent, rows, batch
        self.model, self.goal, self.samples, self.seed = parent.model, parent.goal, parent.samples, parent.seed
        self.y = parent.y[rows]
        self.target = None if parent.target is None else parent.target[rows]

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.rows):
            raise InputError(f"the judge needs the whole batch of {len(self.rows)} rows, got {x.shape[0]}")
        return self.batch.index_put((self.rows,), x.detach())

    def predictive(self, x: torch.Tensor) -> Predictive:
        return self.parent.rows_predictive(self._whole(x), self.rows)

    def success(self, x: torch.Tensor, rows: torch.Tensor | None = None, logits: torch.Tensor | None = None) -> torch.Tensor:
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        return self.parent.success(self._whole(x), rows=self.rows[rows], logits=logits)

    def rows_predictive(self, x: torch.Tensor, rows: torch.Tensor) -> Predictive:
        return self.parent.rows_predictive(self._whole(x), self.rows[rows])

    def reached(self, pred: Predictive, rows: torch.Tensor) -> torch.Tensor:
        return self.parent.reached(pred, self.rows[rows])


def draw_seed(generator: torch.Generator | None) -> int:
    """One seed for a judge, drawn from the attack call's generator (the global one when None)."""
    device = generator.device if generator is not None else "cpu"
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
