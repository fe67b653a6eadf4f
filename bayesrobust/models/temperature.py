"""Post-hoc temperature scaling (Guo et al. 2017): one scalar T > 0 divides a softmax model's logits,
fitted by minimising the negative log-likelihood of the *validation* split (never the test split).

For an MC-dropout model every draw's logits are divided by T and the predictive is the mean of the
tempered softmaxes, so T is fitted on exactly that predictive, with the draws' masks fixed while T
moves. The argmax of a single pass is unchanged by T; the MC mean's argmax can change, rarely.
"""

from __future__ import annotations

import math

import torch

from bayesrobust.errors import ConfigError
from bayesrobust.seeding import make_generator


def predictive_nll(logits: torch.Tensor, labels: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """Mean NLL of the predictive ``mean_s softmax(logits_s / T)``; ``logits`` ``(S, N, C)``."""
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    picked = log_probs.gather(-1, labels.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(-1)
    return -(torch.logsumexp(picked, dim=0) - math.log(logits.shape[0])).mean()


def validation_logits(model, images: torch.Tensor, labels: torch.Tensor, *, samples: int | None, seed: int,
                      batch_size: int = 1000, what: str = "temperature scaling") -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, N, C)`` float64 logits of the validation images, computed once with T = 1 and no calibrator
    (``samples`` MC draws for stochastic models, fixed masks), and the labels: what every post-hoc
    calibrator is fitted on."""
    if not model.supports_temperature:
        raise ConfigError(f"{what} needs softmax logits; a {model.arch!r} model has none")
    if len(images) == 0:
        raise ConfigError(f"{what} needs validation data: set data.val_fraction > 0")
    samples = model.draw_count(samples or model.default_samples)
    model.temperature, model.calibrator = 1.0, None
    generator = make_generator(seed)
    with torch.no_grad():
        logits = torch.cat([model.sample_logits(images[i: i + batch_size], samples, generator=generator).cpu()
                            for i in range(0, len(images), batch_size)], dim=1).double()
    return logits, labels.cpu()


def minimise_nll(parameters: list[torch.Tensor], loss) -> None:
    """L-BFGS (strong Wolfe line search) on ``loss()`` over ``parameters``: smooth, low-dimensional
    calibration maps converge in a few steps."""
    optimizer = torch.optim.LBFGS(parameters, lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        value = loss()
        value.backward()
        return value

    optimizer.step(closure)


def fit_temperature(model, images: torch.Tensor, labels: torch.Tensor, *, samples: int | None = None, seed: int = 0,
                    bounds: tuple[float, float] = (0.05, 20.0), batch_size: int = 1000) -> float:
    """Set ``model.temperature`` to the T in ``bounds`` that minimises the validation NLL and return it.

    One-dimensional and smooth in log T, so L-BFGS on log T from T = 1 converges in a few steps; the
    logits are computed once (``samples`` MC draws for stochastic models, fixed masks)."""
    logits, labels = validation_logits(model, images, labels, samples=samples, seed=seed, batch_size=batch_size)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    minimise_nll([log_t], lambda: predictive_nll(logits, labels, log_t.exp()))
    low, high = bounds
    model.temperature = float(min(max(log_t.exp().item(), low), high))
    return model.temperature
