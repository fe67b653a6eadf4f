"""The attack protocol: ``attack(model, x, y, target=None, generator=None) -> AttackResult``.

Attacks see stochastic models honestly: gradients come from ``model.log_prob`` / ``sample_logits``
with ``eot_samples`` dropout masks per step (expectation over transformation), and no attack ever
changes a model's train/eval mode. Every decision an attack takes about success, and the success it
reports, come from one :class:`~bayesrobust.attacks.criterion.Judge`: the model's predictive on the
batch over ``eval_samples`` Monte-Carlo draws with fixed draws per call (see ``criterion.py``), under
the attack's :class:`~bayesrobust.attacks.criterion.Goal`. The same predictive gives the attacked
model's confidence, entropy and mutual information for every example.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bayesrobust.attacks.criterion import Goal, Judge, draw_seed
from bayesrobust.errors import InputError
from bayesrobust.predictive import Predictive
from bayesrobust.registry import Registry
from bayesrobust.validation import check_labels

PROGRESS_DELAY = 3.0  # seconds an attack call runs before its progress bar appears


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Adversarial images and everything measured on them (all tensors on the CPU)."""

    x_adv: torch.Tensor          # (N, 1, 28, 28) in [0, 1]
    success: torch.Tensor        # (N,) bool: the goal reached under the attack's judge
    l0: torch.Tensor             # (N,) number of changed pixels
    l2: torch.Tensor             # (N,) Euclidean distortion
    linf: torch.Tensor           # (N,) largest absolute pixel change
    iterations: torch.Tensor     # (N,) optimisation steps spent on each example
    predictive: Predictive       # the model's predictive on x_adv (the judge's draws)
    labels: torch.Tensor         # (N,) true labels
    target: torch.Tensor | None  # (N,) target classes for targeted attacks
    params: dict[str, Any] = field(default_factory=dict)
    claimed: torch.Tensor | None = None        # (N,) bool: examples the attack itself judged successful
    success_fresh: torch.Tensor | None = None  # (N,) bool: the goal on independent draws (= success if deterministic)
    broken_by: torch.Tensor | None = None  # (N,) int: a composite attack's stage that broke each example (−1: none)

    def summary(self) -> dict[str, float]:
        """Aggregates: success rate, distortions over all and over successful examples, and the
        model's uncertainty on the adversarial examples."""
        ok = self.success
        pred = self.predictive
        fresh = self.success if self.success_fresh is None else self.success_fresh
        out = {
            "success_rate": float(ok.float().mean()),
            "success_rate_fresh": float(fresh.float().mean()),
            "error_rate": float((pred.predicted != self.labels).float().mean()),
            "confidence": float(pred.confidence.mean()),
            "entropy": float(pred.entropy.mean()),
            "mi": float(pred.mutual_information.mean()),
            "variance": float(pred.variance.mean()),
            "iterations": float(self.iterations.float().mean()),
        }
        pixels = self.x_adv[0].numel()
        for name, values in (("l0", self.l0), ("l2", self.l2), ("linf", self.linf)):
            out[f"{name}"] = float(values.float().mean())
            out[f"{name}_success"] = float(values[ok].float().mean()) if ok.any() else float("nan")
        out["l0_fraction"] = out["l0"] / pixels
        out["l0_fraction_success"] = out["l0_success"] / pixels
        if self.broken_by is not None:  # a composite attack: the robust accuracy left after each stage
            for i, stage in enumerate(self.params.get("stages", [])):
                out[f"robust_accuracy_after_{stage}"] = float(((self.broken_by < 0) | (self.broken_by > i)).float().mean())
        return out


def distortions(x: torch.Tensor, x_adv: torch.Tensor, tol: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-example L0 (pixels changed by more than ``tol``), L2 and L∞ of ``x_adv − x``."""
    delta = (x_adv - x).flatten(1)
    return (delta.abs() > tol).sum(1), delta.norm(dim=1), delta.abs().amax(1)


class Attack(ABC):
    """Base class. Subclasses set ``name``, ``norm``, ``targeted`` support and implement :meth:`perturb`.

    Args (common to every attack):
        eot_samples: dropout masks averaged per gradient evaluation on MC-dropout models (plain
            models ignore it).
        eval_samples: Monte-Carlo draws of the predictive that judge success — inside the attack and
            in the result — and report uncertainty (default: the model's own default, 50 for MC dropout).
        min_confidence, max_uncertainty, uncertainty: the :class:`Goal` (default: any misclassification
            or the target). With a confidence or uncertainty requirement the gradient attacks (FGSM,
            BIM, targeted L2, L-BFGS) descend −log p̄(aim) + ``uncertainty_weight``·max(U − cap, 0),
            with U computed differentiably from the ``eot_samples`` draws (needs ``eot_samples`` ≥ 2
            for mutual information); C&W and JSMA keep their margin objectives and honour the goal in
            their stopping and bookkeeping.
    """

    name: ClassVar[str]
    tiny_params: ClassVar[dict[str, Any]]  # settings for a tiny model in well under a second (contract tests)
    norm: ClassVar[str]
    supports_untargeted: ClassVar[bool] = True
    supports_targeted: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = True  # False: nothing for an adaptive (EOT) form to change
    supports_penalty: ClassVar[bool] = True  # False: the objective has no place for a detector's score
    kappa_unit: ClassVar[str | None] = None  # "logits" or "nats" where the attack takes a margin ``kappa``

    def __init__(self, *, eot_samples: int = 1, eval_samples: int | None = None, min_confidence: float = 0.0,
                 max_uncertainty: float = math.inf, uncertainty: str = "mi", uncertainty_weight: float = 10.0) -> None:
        if eot_samples < 1:
            raise InputError(f"eot_samples must be >= 1, got {eot_samples}")
        if eval_samples is not None and eval_samples < 1:
            raise InputError(f"eval_samples must be >= 1, got {eval_samples}")
        self.eot_samples = int(eot_samples)
        self.eval_samples = eval_samples
        self.goal = Goal(float(min_confidence), float(max_uncertainty), uncertainty)
        self.uncertainty_weight = check_positive("uncertainty_weight", uncertainty_weight)
        self.penalty: Penalty | None = None

    def with_penalty(self, penalty: Penalty) -> Attack:
        """Make the gradient attacks (FGSM, BIM, targeted L2, L-BFGS) and C&W also keep a differentiable
        score of x* under a cap (a detector-aware attack against, e.g., a VAE's reconstruction error or
        a kernel density; Carlini & Wagner 2017). The judge still looks at the classifier alone; C&W
        also keeps only iterates under the cap."""
        if not self.supports_penalty:
            raise InputError(f"{self.name} cannot take a detector's penalty: use one of {', '.join(penalised_attacks())}")
        self.penalty = penalty
        return self

    def hyperparameters(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items()
               if not k.startswith("_") and not k.endswith("_") and k not in ("goal", "penalty")}  # x_: diagnostics
        if self.penalty is not None:
            out.update(penalty=self.penalty.name, penalty_cap=self.penalty.cap, penalty_weight=self.penalty.weight)
        out.update(min_confidence=self.goal.min_confidence, max_uncertainty=self.goal.max_uncertainty,
                   uncertainty=self.goal.uncertainty)
        return out

    # --- entry points ---------------------------------------------------------------------------
    def generate(self, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the adversarial images (on the model's device, clipped to [0, 1]) and the iterations
        per example — what peer libraries return; ``__call__`` adds the evaluation."""
        x_adv, iterations, _, _ = self._run(model, x, y, target, generator, progress)
        return x_adv, iterations

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, progress: bool = True) -> AttackResult:
        """Attack and evaluate: adversarial images, success, distortions and the model's predictive.

        ``progress``: a bar over an iterative attack's steps, shown only once the call has run for
        ``PROGRESS_DELAY`` seconds (a quick call prints nothing); False, ``--quiet`` or
        ``run_experiment(progress=False)`` turn it off."""
        x_adv, iterations, claimed, judge = self._run(model, x, y, target, generator, progress)
        pred = judge.predictive(x_adv)
        success = judge.goal.reached(pred, judge.y, judge.target)
        fresh = success  # a deterministic model has no other draws
        if model.draws.random:  # the same goal on independent draws: shows any over-fitting to the judge's draws
            fresh = judge.goal.reached(model.predictive(x_adv, judge.samples, generator=generator), judge.y, judge.target)
        l0, l2, linf = distortions(x.cpu(), x_adv.cpu())
        params = {"attack": self.name, "norm": self.norm, **self.hyperparameters(),
                  "model_mode": getattr(model, "mode", None), "targeted": target is not None,
                  "judge_samples": judge.samples, "judge_seed": judge.seed}
        return AttackResult(x_adv.cpu(), success, l0, l2, linf, iterations.cpu(), pred, judge.y.cpu(),
                            None if judge.target is None else judge.target.cpu(), params, claimed.cpu(), fresh)

    def _run(self, model, x, y, target, generator, progress: bool = True):
        self._progress = progress
        x, y, target = self._validated(model, x, y, target)
        samples = self.eval_samples if self.eval_samples is not None else model.default_samples
        judge = Judge(model, y, target, samples=model.draw_count(samples), seed=draw_seed(generator), goal=self.goal)
        x_adv, iterations, claimed = self.perturb(model, x, y, target, generator, judge)
        return x_adv.detach().clamp(0.0, 1.0), iterations, claimed, judge

    def _validated(self, model, x, y, target):
        x = model.check_inputs(x)  # any floating dtype, float32 from here on; the model's input shape
        y = check_labels(y, x.shape[0], model.num_classes)
        if target is None and not self.supports_untargeted:
            raise InputError(f"{self.name} is a targeted attack: pass target=")
        if target is not None:
            if not self.supports_targeted:
                raise InputError(f"{self.name} is untargeted only")
            target = check_labels(target, x.shape[0], model.num_classes, name="target")
            if bool((target == y).any()):
                raise InputError(f"target equals the true label for {int((target == y).sum())} example(s)")
        device = model.device
        return x.to(device), y.to(device), (target.to(device) if target is not None else None)

    @abstractmethod
    def perturb(self, model, x, y, target, generator, judge: Judge) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (adversarial images, iterations per example, examples the attack judged successful).

        Inputs arrive validated, on the model's device. Every decision about success must go through
        ``judge`` (given the whole batch), so what the attack claims is what ``__call__`` reports."""

    def steps_bar(self, steps: int, desc: str = "") -> Iterable[int]:
        """``range(steps)`` for an iterative attack's main loop, with the call's delayed progress bar."""
        from bayesrobust.progress import progress_bar

        return progress_bar(range(steps), desc=desc or f"{self.name} steps", enabled=getattr(self, "_progress", True),
                            leave=False, delay=PROGRESS_DELAY)

    # --- helpers shared by gradient attacks --------------------------------------------------
    def objective_and_grad(self, model, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                           generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A per-example objective to *descend*, its input gradient and the log MC-mean probabilities.

        Plain goal: log p̄(y) untargeted (descending it raises the cross-entropy of the true class),
        −log p̄(t) targeted, with p̄ the mean over ``eot_samples`` dropout masks (EOT). Constrained goal
        (confidence / uncertainty): −log p̄(aim) + ``uncertainty_weight``·max(U − cap, 0), aiming at the
        target or at the most probable wrong class; the penalty applies once p̄ already predicts the aim."""
        x = x.detach().requires_grad_(True)
        if self.goal.constrained:
            logp, log_samples = model.log_prob_and_draws(x, self.eot_samples, generator=generator)
            aim = aimed_class(logp.detach(), y, target)
            objective = -logp.gather(1, aim[:, None]).squeeze(1)
            if math.isfinite(self.goal.max_uncertainty):
                # only once the aim is the prediction: before that, lowering the uncertainty would pull
                # the example back towards its confident true class
                excess = (uncertainty_of(log_samples, logp, self.goal.uncertainty) - self.goal.max_uncertainty).clamp(min=0)
                objective = objective + self.uncertainty_weight * excess * (logp.detach().argmax(1) == aim)
        else:
            logp = model.log_prob(x, self.eot_samples, generator=generator)
            chosen = logp.gather(1, (y if target is None else target)[:, None]).squeeze(1)
            objective = chosen if target is None else -chosen
        if self.penalty is not None:  # as the uncertainty cap: only once the goal's class is predicted
            predicted = logp.detach().argmax(1)
            reached = predicted != y if target is None else predicted == target
            aim = aimed_class(logp.detach(), y, target)
            objective = objective + self.penalty.weight * self.penalty.excess(x, aim) * reached
        (grad,) = torch.autograd.grad(objective.sum(), x)
        return objective.detach(), grad, logp.detach()

    def margin_logits(self, model, x: torch.Tensor, generator) -> torch.Tensor:
        """The model's differentiable margin scores (C&W, JSMA) with ``eot_samples`` draws."""
        return model.margin_logits(x, self.eot_samples, generator=generator)


def judge_iterate(model, judge, x_adv: torch.Tensor, best_loss: torch.Tensor, finished: torch.Tensor,
                  active: torch.Tensor, current: torch.Tensor, loss: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """One iterate of a norm-bounded attack (PGD, APGD) on the rows ``active``: keep it as the row's
    answer where the judge accepts it or where its loss is the row's highest so far (the answer of a row
    never broken), mark the accepted rows finished, and return them. A plain model is judged on the
    gradient pass's own outputs ``logp`` and needs no batch; one with several draws sees its whole batch."""
    higher = loss > best_loss[active]
    best_loss[active] = torch.maximum(best_loss[active], loss)
    several = model.draws.several
    done = judge.success(x_adv.index_put((active,), current) if several else x_adv, rows=active,
                         logits=None if several else logp)
    kept = higher | done
    if bool(kept.any()):
        x_adv[active[kept]] = current[kept]
    finished[active] |= done
    return done


def aimed_class(scores: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """The class an attack steers towards: the target, else the highest-scoring wrong class."""
    return target if target is not None else scores.scatter(1, y[:, None], float("-inf")).argmax(1)


@dataclass(frozen=True)
class Penalty:
    """A differentiable per-example score of the input by a detector (``score(x) -> (N,)``, or
    ``score(x, classes)`` with ``per_class``: scored as if ``x`` were of the class the attack aims at),
    the cap it must stay under (the detector's threshold) and the weight of the excess in the objective."""

    name: str
    score: Callable[..., torch.Tensor]
    cap: float
    weight: float = 1.0
    per_class: bool = False

    def excess(self, x: torch.Tensor, aim: torch.Tensor) -> torch.Tensor:
        value = self.score(x, aim) if self.per_class else self.score(x)
        return (value.to(x.device, x.dtype) - self.cap).clamp(min=0)


def uncertainty_of(log_samples: torch.Tensor, log_mean: torch.Tensor, measure: str) -> torch.Tensor:
    """Differentiable predictive entropy or mutual information ``(N,)`` from log-probability samples
    ``(S, N, C)`` and the log of their mean ``(N, C)``."""
    entropy = -(log_mean.exp() * log_mean).sum(-1)
    if measure == "entropy":
        return entropy
    expected = -(log_samples.exp() * log_samples).sum(-1).mean(0)
    return entropy - expected


def choose_targets(mode: str, y: torch.Tensor, seed: int) -> torch.Tensor | None:
    """Target classes for ``mode``: none (untargeted: None), next ((y + 1) mod 10) or random (seeded,
    uniform over the nine other classes)."""
    if mode == "none":
        return None
    if mode == "next":
        return (y + 1) % 10
    shift = torch.randint(1, 10, y.shape, generator=torch.Generator().manual_seed(seed))
    return (y + shift) % 10


def adversarial_margin(scores: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """How far past the decision boundary each example is ``(N,)``, in the units of ``scores`` (logits
    or log-probabilities, ``(N, C)``): untargeted, the best wrong class minus the true class; targeted,
    the target minus the best other class. Differentiable; C&W's f₆ is its negative."""
    own = scores.gather(1, (y if target is None else target)[:, None]).squeeze(1)
    other = scores.scatter(1, (y if target is None else target)[:, None], float("-inf")).amax(1)
    return other - own if target is None else own - other


ATTACKS: Registry[type[Attack]] = Registry("attack", package="bayesrobust.attacks")  # each attack module registers itself


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    if value != value or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


def penalised_attacks() -> list[str]:
    """The registered attacks whose objective can take a detector's score (``supports_penalty``)."""
    return [name for name in ATTACKS.names() if ATTACKS.get(name).supports_penalty]


def no_claims(x: torch.Tensor) -> torch.Tensor:
    """For attacks that take no decision about success (one-step and random attacks)."""
    return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)


def run_batched(attack: Attack, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                batch_size: int = 250, generator: torch.Generator | None = None, progress: bool = False,
                desc: str = "") -> AttackResult:
    """Apply ``attack`` in batches (bounded memory) and join the results."""
    from bayesrobust.progress import progress_bar

    parts = []
    for start in progress_bar(range(0, x.shape[0], batch_size), desc=desc or attack.name, enabled=progress, leave=False):
        sl = slice(start, start + batch_size)
        parts.append(attack(model, x[sl], y[sl], target=None if target is None else target[sl], generator=generator,
                            progress=False))  # this bar over the batches is the call's
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else torch.cat(values)

    params = {k: v for k, v in parts[0].params.items() if k != "judge_seed"}
    return AttackResult(cat("x_adv"), cat("success"), cat("l0"), cat("l2"), cat("linf"), cat("iterations"),
                        Predictive.concat([p.predictive for p in parts]), cat("labels"), cat("target"), params,
                        cat("claimed"), cat("success_fresh"), cat("broken_by"))
