"""The attack protocol: ``attack(model, x, y, target=None, generator=None) -> AttackResult``.

Attacks see stochastic models honestly: gradients come from ``model.log_prob`` / ``sample_logits``
with ``eot_samples`` dropout masks per step (expectation over transformation), and no attack ever
changes a model's train/eval mode. Success is judged on the model's predictive distribution on the
adversarial batch (``eval_samples`` Monte-Carlo draws for MC-dropout models), which also gives the
attacked model's confidence, entropy and mutual information for every example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from bayesrobust.errors import InputError
from bayesrobust.predictive import Predictive
from bayesrobust.registry import Registry
from bayesrobust.validation import check_images, check_labels


@dataclass(frozen=True, eq=False)
class AttackResult:
    """Adversarial images and everything measured on them (all tensors on the CPU)."""

    x_adv: torch.Tensor          # (N, 1, 28, 28) in [0, 1]
    success: torch.Tensor        # (N,) bool: misclassified (untargeted) or classified as target
    l0: torch.Tensor             # (N,) number of changed pixels
    l2: torch.Tensor             # (N,) Euclidean distortion
    linf: torch.Tensor           # (N,) largest absolute pixel change
    iterations: torch.Tensor     # (N,) optimisation steps spent on each example
    predictive: Predictive       # the model's predictive on x_adv
    labels: torch.Tensor         # (N,) true labels
    target: torch.Tensor | None  # (N,) target classes for targeted attacks
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """Aggregates: success rate, distortions over all and over successful examples, and the
        model's uncertainty on the adversarial examples."""
        ok = self.success
        pred = self.predictive
        out = {
            "success_rate": float(ok.float().mean()),
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
        eval_samples: Monte-Carlo draws of the predictive used to judge success and report
            uncertainty (default: the model's own default, 50 for MC dropout).
    """

    name: ClassVar[str]
    norm: ClassVar[str]
    supports_untargeted: ClassVar[bool] = True
    supports_targeted: ClassVar[bool] = True

    def __init__(self, *, eot_samples: int = 1, eval_samples: int | None = None) -> None:
        if eot_samples < 1:
            raise InputError(f"eot_samples must be >= 1, got {eot_samples}")
        self.eot_samples = eot_samples
        self.eval_samples = eval_samples

    def hyperparameters(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    # --- entry points ---------------------------------------------------------------------------
    def generate(self, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Only the adversarial images (on the model's device, clipped to [0, 1]) and the iterations
        per example — what peer libraries return; ``__call__`` adds the evaluation."""
        x, y, target = self._validated(model, x, y, target)
        x_adv, iterations = self.perturb(model, x, y, target, generator)
        return x_adv.detach().clamp(0.0, 1.0), iterations

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> AttackResult:
        """Attack and evaluate: adversarial images, success, distortions and the model's predictive."""
        x_adv, iterations = self.generate(model, x, y, target=target, generator=generator)
        pred = model.predictive(x_adv, self.eval_samples, generator=generator)
        y_cpu = y.cpu().long()
        target_cpu = target.cpu().long() if target is not None else None
        success = pred.predicted == target_cpu if target is not None else pred.predicted != y_cpu
        l0, l2, linf = distortions(x.cpu(), x_adv.cpu())
        params = {"attack": self.name, "norm": self.norm, **self.hyperparameters(),
                  "model_mode": model.mode, "targeted": target is not None}
        return AttackResult(x_adv.cpu(), success, l0, l2, linf, iterations.cpu(), pred, y_cpu, target_cpu, params)

    def _validated(self, model, x, y, target):
        check_images(x)
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
    def perturb(self, model, x, y, target, generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (adversarial images, iterations per example); inputs arrive validated, on the
        model's device."""

    # --- helpers shared by gradient attacks --------------------------------------------------
    def loss_and_grad(self, model, x: torch.Tensor, labels: torch.Tensor, generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example cross-entropy of ``labels`` under the MC-averaged predictive, its input
        gradient (EOT over ``eot_samples`` dropout masks for MC models) and the log-probabilities."""
        x = x.detach().requires_grad_(True)
        logp = model.log_prob(x, self.eot_samples, generator=generator)
        loss = -logp.gather(1, labels[:, None]).squeeze(1)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), grad, logp.detach()

    def margin_logits(self, model, x: torch.Tensor, generator) -> torch.Tensor:
        """Logits for margin objectives (C&W, JSMA): deterministic for plain models, the mean of
        ``eot_samples`` dropout draws for MC models. Differentiable."""
        if not model.stochastic:
            return model.logits(x)
        return model.sample_logits(x, self.eot_samples, generator=generator).mean(0)


ATTACKS: Registry[type[Attack]] = Registry("attack")


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    if value != value or value < 0 or (value == 0 and not allow_zero):
        raise InputError(f"{name} must be {'>=' if allow_zero else '>'} 0, got {value}")
    return float(value)


def run_batched(attack: Attack, model, x: torch.Tensor, y: torch.Tensor, *, target: torch.Tensor | None = None,
                batch_size: int = 250, generator: torch.Generator | None = None, progress: bool = False,
                desc: str = "") -> AttackResult:
    """Apply ``attack`` in batches (bounded memory) and join the results."""
    from bayesrobust.progress import progress_bar

    parts = []
    for start in progress_bar(range(0, x.shape[0], batch_size), desc=desc or attack.name, enabled=progress, leave=False):
        sl = slice(start, start + batch_size)
        parts.append(attack(model, x[sl], y[sl], target=None if target is None else target[sl], generator=generator))
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(p, name) for p in parts])

    return AttackResult(cat("x_adv"), cat("success"), cat("l0"), cat("l2"), cat("linf"), cat("iterations"),
                        Predictive.concat([p.predictive for p in parts]), cat("labels"),
                        None if target is None else cat("target"), parts[0].params)
