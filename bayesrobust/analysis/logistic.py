"""Goodfellow et al. (2015) on logistic regression: two digit classes (3 vs 7), a linear model, for
which the fast gradient sign perturbation is the exact worst case inside the ε-box (published: ε 0.25
takes the plain model to 99% error). The same model trained three ways on the same digits: plain,
L1-regularised, and on the exact adversarial objective

    E ζ(ε‖w‖₁ − y(wᵀx + b)),  ζ(z) = log(1 + exp(z)),  y ∈ {−1, +1},

the expected softplus loss at the worst perturbation. (The slides print ζ(y(ε‖w‖₁ − wᵀx − b)), which for
y = −1 *subtracts* the penalty; the form above is the worst case for both labels.) Like L1 it penalises
‖w‖₁, but only while the margin is small: the penalty vanishes where ζ saturates.

Pixels are clipped to [0, 1] after the perturbation; for a linear model the clipped sign step is still
the exact worst case of the box ∩ ε-ball (the problem separates per pixel), while the training
objective, as in the paper, ignores the clipping (an upper bound on the clipped worst case).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bayesrobust.data import Dataset
from bayesrobust.errors import ConfigError
from bayesrobust.keys import Key


@dataclass(frozen=True)
class LogisticSection:
    """``[calibration.logistic]``: the classes, the attack's ε and the three trainings."""

    classes: tuple[int, ...] = (3, 7)  # the first is y = −1, the second y = +1
    eps: float = 0.25  # FGSM at evaluation
    train_eps: float = 0.25  # ε of the adversarial objective
    l1: tuple[float, ...] = (0.0005, 0.0025)  # coefficients of the L1-regularised models (mean loss + λ‖w‖₁)
    epochs: int = 30
    lr: float = 0.01
    batch_size: int = 128


def validate_logistic(section: LogisticSection) -> None:
    if len(section.classes) != 2 or len(set(section.classes)) != 2 or not all(0 <= c <= 9 for c in section.classes):
        raise ConfigError(f"calibration.logistic.classes must be two different digits, got {list(section.classes)}")
    if section.eps <= 0 or section.train_eps < 0 or any(v < 0 for v in section.l1):
        raise ConfigError("calibration.logistic: eps must be > 0, train_eps and l1 >= 0")
    if section.epochs < 1 or section.batch_size < 1 or section.lr <= 0:
        raise ConfigError("calibration.logistic: epochs, batch_size and lr must be positive")


def two_class(data: Dataset, classes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened images of the two classes and labels in {−1, +1} (the second class is +1)."""
    keep = (data.labels == classes[0]) | (data.labels == classes[1])
    if int(keep.sum()) == 0 or not all(bool((data.labels == c).any()) for c in classes):
        raise ConfigError(f"calibration.logistic: the {data.info.split} split has no digits of class "
                          f"{[c for c in classes if not bool((data.labels == c).any())]}")
    x = data.images[keep].flatten(1).double()
    y = torch.where(data.labels[keep] == classes[1], 1.0, -1.0).double()
    return x, y


def logistic_objective(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *, l1: float = 0.0,
                       adversarial_eps: float = 0.0) -> torch.Tensor:
    """Mean ζ(ε‖w‖₁ − y(wᵀx + b)) + λ‖w‖₁ (ε = 0: the plain logistic loss)."""
    norm = w.abs().sum()
    return F.softplus(adversarial_eps * norm - y * (x @ w + b)).mean() + l1 * norm


def fit_logistic(x: torch.Tensor, y: torch.Tensor, section: LogisticSection, *, l1: float = 0.0,
                 adversarial_eps: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias by Adam on mini-batches (seeded order), from zero."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.Adam([w, b], lr=section.lr)
    for _ in range(section.epochs):
        for rows in torch.randperm(len(x), generator=generator).split(section.batch_size):
            optimizer.zero_grad()
            logistic_objective(w, b, x[rows], y[rows], l1=l1, adversarial_eps=adversarial_eps).backward()
            optimizer.step()
    return w.detach(), b.detach()


def linear_fgsm(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    """x − ε·y·sign(w), clipped to [0, 1]: the fast gradient sign step, exact for a linear model."""
    return (x - eps * y[:, None] * torch.sign(w)[None]).clamp(0.0, 1.0)


def logistic_metrics(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float) -> dict[str, float]:
    """Clean error and NLL, error under the worst-case ε perturbation, and the mean confidence σ(|z|) of
    the adversarial examples it gets wrong (Goodfellow et al.'s 'confidently wrong')."""
    z = x @ w + b
    z_adv = linear_fgsm(x, y, w, eps) @ w + b
    wrong = y * z_adv <= 0
    confidence = torch.sigmoid(z_adv.abs())
    return {"clean_error": float((y * z <= 0).double().mean()), "nll": float(F.softplus(-y * z).mean()),
            "adv_error": float(wrong.double().mean()),
            "adv_confidence_wrong": float(confidence[wrong].mean()) if bool(wrong.any()) else float("nan"),
            "w_l1": float(w.abs().sum()), "w_zero_fraction": float((w.abs() < 1e-3).double().mean())}


def variants(section: LogisticSection) -> dict[str, dict[str, float]]:
    """Name → training options: plain, each L1 coefficient, the adversarial objective."""
    out = {"plain": {}}
    out.update({f"l1={v:g}": {"l1": v} for v in section.l1})
    if section.train_eps > 0:
        out[f"adversarial eps={section.train_eps:g}"] = {"adversarial_eps": section.train_eps}
    return out


LOGISTIC = Key("logistic/{variant}/{measure}")  # one trained variant (plain, l1=…, adversarial eps=…)
LOGISTIC_RUN = Key("logistic/{measure}")  # test_digits
LOGISTIC_KEYS = (LOGISTIC, LOGISTIC_RUN)
WEIGHTS = Key("logistic/{variant}/weights")  # arrays, beside logistic/examples and logistic/examples_adv
EXAMPLES, EXAMPLES_ADV = "logistic/examples", "logistic/examples_adv"


def run_logistic(train: Dataset, test: Dataset, section: LogisticSection, seed: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Every variant trained on ``train``'s two classes, measured on ``test``'s: metrics
    ``logistic/<variant>/…`` and each variant's weights (for Goodfellow et al.'s Figure 2 layout)."""
    x, y = two_class(train, section.classes)
    x_test, y_test = two_class(test, section.classes)
    metrics: dict[str, float] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, options in variants(section).items():
        w, b = fit_logistic(x, y, section, seed=seed, **options)
        metrics.update({LOGISTIC(variant=name, measure=k): v for k, v in logistic_metrics(w, b, x_test, y_test, section.eps).items()})
        arrays[WEIGHTS(variant=name)] = w.reshape(28, 28).numpy()
    arrays[EXAMPLES] = x_test[:8].reshape(-1, 28, 28).numpy()
    arrays[EXAMPLES_ADV] = linear_fgsm(x_test[:8], y_test[:8], torch.from_numpy(arrays[WEIGHTS(variant="plain")]).flatten(),
                                       section.eps).reshape(-1, 28, 28).numpy()
    metrics[LOGISTIC_RUN(measure="test_digits")] = float(len(x_test))
    return metrics, arrays
