"""Predictive distributions: the one thing every model returns.

A :class:`Predictive` holds Monte-Carlo samples of class probabilities shaped ``(S, N, C)``
(sample dimension first, as in GPyTorch and Laplace). Deterministic models give ``S = 1``.
The uncertainty measures follow Gal (2016) and Houlsby et al. (2011, BALD); ``variance`` is the
per-example mean over classes of the across-sample standard deviation used by Alshemali et al.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from bayesrobust.errors import InputError

_EPS = 1e-12


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) over the last dimension, with 0·log 0 = 0."""
    return -(p * torch.log(p.clamp_min(_EPS))).sum(-1)


@dataclass(frozen=True, eq=False)
class Predictive:
    """Monte-Carlo samples of a classifier's predictive distribution.

    Args:
        probs: class probabilities ``(S, N, C)``; each ``probs[s, n]`` sums to one.
        log_probs: optional log-probabilities of the same shape (what :meth:`from_logits` keeps).
            With them the log-likelihood is exact however small the probability; without them it is
            computed from ``probs`` with a floor of 1e-12 (at most 27.6 nats per example).
        mean_log_probs: optional ``(N, C)`` log of the model's exact predictive, for models that have
            one (a GP's quadrature). ``mean`` and everything built on it (prediction, confidence,
            entropy, log-likelihood) then use it, and the draws give the expected entropy and the
            spread: a Rao–Blackwellised predictive, free of the draws' Monte-Carlo error.
    """

    probs: torch.Tensor
    log_probs: torch.Tensor | None = None
    mean_log_probs: torch.Tensor | None = None

    def __post_init__(self) -> None:
        p = self.probs
        if not isinstance(p, torch.Tensor) or p.dim() != 3:
            raise InputError(f"Predictive.probs must be a tensor (S, N, C), got {getattr(p, 'shape', type(p))}")
        if not torch.isfinite(p).all():
            raise InputError("Predictive.probs contains NaN or inf")
        object.__setattr__(self, "probs", p.detach())
        if self.log_probs is not None:
            lp = self.log_probs
            if not isinstance(lp, torch.Tensor) or lp.shape != p.shape:
                raise InputError(f"Predictive.log_probs must have the shape of probs {tuple(p.shape)}, got {getattr(lp, 'shape', type(lp))}")
            if torch.isnan(lp).any() or (lp > 0).any():
                raise InputError("Predictive.log_probs must be <= 0 and not NaN")
            object.__setattr__(self, "log_probs", lp.detach())
        if self.mean_log_probs is not None:
            m = self.mean_log_probs
            if not isinstance(m, torch.Tensor) or m.shape != p.shape[1:]:
                raise InputError(f"Predictive.mean_log_probs must have shape {tuple(p.shape[1:])}, got {getattr(m, 'shape', type(m))}")
            if torch.isnan(m).any() or (m > 1e-6).any():
                raise InputError("Predictive.mean_log_probs must be <= 0 and not NaN")
            object.__setattr__(self, "mean_log_probs", m.detach().clamp_max(0.0))

    @staticmethod
    def from_logits(logits: torch.Tensor, mean_log_probs: torch.Tensor | None = None) -> Predictive:
        """From logit samples ``(S, N, C)``: probabilities and exact log-probabilities (float32, CPU),
        with the model's exact log predictive ``(N, C)`` when it has one."""
        log_probs = torch.log_softmax(logits.detach().float(), -1).cpu()
        exact = None if mean_log_probs is None else mean_log_probs.detach().float().cpu()
        return Predictive(log_probs.exp(), log_probs, exact)

    # --- shapes -------------------------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        return self.probs.shape[0]

    @property
    def num_examples(self) -> int:
        return self.probs.shape[1]

    @property
    def num_classes(self) -> int:
        return self.probs.shape[2]

    # --- point summaries ----------------------------------------------------------------------
    @cached_property
    def mean(self) -> torch.Tensor:
        """Predictive class probabilities ``(N, C)``: the model's exact ones when held, else the MC average."""
        if self.mean_log_probs is not None:
            return self.mean_log_probs.exp()
        return self.probs.mean(0)

    @property
    def predicted(self) -> torch.Tensor:
        """Arg-max class of the mean probabilities ``(N,)``."""
        return self.mean.argmax(-1)

    @property
    def confidence(self) -> torch.Tensor:
        """Probability of the predicted class under the mean distribution ``(N,)``."""
        return self.mean.max(-1).values

    # --- uncertainty ------------------------------------------------------------------------
    @cached_property
    def entropy(self) -> torch.Tensor:
        """Predictive (total) entropy H[E_s p_s] in nats ``(N,)``."""
        return _entropy(self.mean)

    @cached_property
    def expected_entropy(self) -> torch.Tensor:
        """Aleatoric part E_s H[p_s] in nats ``(N,)``."""
        return _entropy(self.probs).mean(0)

    @property
    def mutual_information(self) -> torch.Tensor:
        """Epistemic part (BALD): entropy − expected entropy, clamped at 0 ``(N,)``."""
        return (self.entropy - self.expected_entropy).clamp_min(0.0)

    @property
    def variance(self) -> torch.Tensor:
        """Mean over classes of the across-sample standard deviation (Alshemali et al.) ``(N,)``.

        Uses the population standard deviation (divide by S), so S = 1 gives exactly 0.
        """
        return self.probs.std(0, correction=0).mean(-1)

    @property
    def variation_ratio(self) -> torch.Tensor:
        """1 − (fraction of samples whose arg-max is the modal class) ``(N,)``."""
        votes = torch.nn.functional.one_hot(self.probs.argmax(-1), self.num_classes).sum(0)
        return 1.0 - votes.max(-1).values.to(self.probs.dtype) / self.num_samples

    # --- scores against labels ------------------------------------------------------------
    def _check_labels(self, y: torch.Tensor) -> torch.Tensor:
        if y.shape != (self.num_examples,):
            raise InputError(f"labels must have shape ({self.num_examples},), got {tuple(y.shape)}")
        return y.to(self.probs.device).long()

    @cached_property
    def log_mean(self) -> torch.Tensor:
        """Log of the predictive class probabilities ``(N, C)``: the exact ones when held, else a
        log-sum-exp over the held log-probability samples, else floored at log 1e-30."""
        if self.mean_log_probs is not None:
            return self.mean_log_probs
        if self.log_probs is not None:
            return log_mean_prob(self.log_probs)
        return self.mean.clamp_min(1e-30).log()

    def log_likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """Per-example log of the MC-mean probability of the true class ``(N,)``: exact (a log-sum-exp
        over samples) when log-probabilities are held, else floored at log 1e-12."""
        y = self._check_labels(y)
        if self.mean_log_probs is not None:
            return self.mean_log_probs.gather(1, y[:, None]).squeeze(1)
        if self.log_probs is not None:
            chosen = self.log_probs.gather(2, y[None, :, None].expand(self.num_samples, -1, 1)).squeeze(2)
            return torch.logsumexp(chosen, 0) - math.log(self.num_samples)
        return torch.log(self.mean.gather(1, y[:, None]).squeeze(1).clamp_min(_EPS))

    def nll(self, y: torch.Tensor) -> float:
        """Mean negative log-likelihood of ``y`` under the mean distribution (nats)."""
        return float(-self.log_likelihood(y).mean())

    def accuracy(self, y: torch.Tensor) -> float:
        """Fraction of examples whose predicted class equals ``y``."""
        return float((self.predicted == self._check_labels(y)).float().mean())

    def summary(self, labels: torch.Tensor | None = None) -> dict[str, float]:
        """Aggregates, as ``AttackResult.summary()`` gives them: the mean of every per-example measure
        (:meth:`per_example`, the predicted class aside), the counts and, with ``labels``, accuracy and NLL."""
        out = {name: float(values.double().mean()) for name, values in self.per_example().items() if name != "predicted"}
        out.update(examples=float(self.num_examples), samples=float(self.num_samples))
        if labels is not None:
            out.update(accuracy=self.accuracy(labels), nll=self.nll(labels))
        return out

    def per_example(self) -> dict[str, torch.Tensor]:
        """Per-example uncertainty measures ``(N,)``, keyed by name (what a run folder saves)."""
        return {
            "predicted": self.predicted,
            "confidence": self.confidence,
            "entropy": self.entropy,
            "expected_entropy": self.expected_entropy,
            "mutual_information": self.mutual_information,
            "variance": self.variance,
            "variation_ratio": self.variation_ratio,
        }

    # --- composition and export ---------------------------------------------------------
    def __getitem__(self, index) -> Predictive:
        """Select examples (not samples): ``pred[mask]``, ``pred[:10]``."""
        return Predictive(self.probs[:, index], None if self.log_probs is None else self.log_probs[:, index],
                          None if self.mean_log_probs is None else self.mean_log_probs[index])

    @staticmethod
    def concat(parts: list[Predictive]) -> Predictive:
        """Join predictives over the example dimension (same S and C); log-probabilities are kept
        only when every part has them."""
        logs, exact = [p.log_probs for p in parts], [p.mean_log_probs for p in parts]
        return Predictive(torch.cat([p.probs for p in parts], dim=1),
                          None if any(lp is None for lp in logs) else torch.cat(logs, dim=1),
                          None if any(m is None for m in exact) else torch.cat(exact, dim=0))

    def to_inference_data(self, y: torch.Tensor | None = None):
        """Export as ArviZ ``InferenceData``: a posterior-predictive group ``probs`` with dims
        (chain, draw, example, class), plus ``observed_data`` when labels are given."""
        az = import_arviz()
        probs = self.probs.cpu().numpy()[None]
        coords = {"example": np.arange(self.num_examples), "class": np.arange(self.num_classes)}
        observed = {"label": y.cpu().numpy()} if y is not None else None
        return az.from_dict(
            posterior_predictive={"probs": probs},
            observed_data=observed,
            coords=coords,
            dims={"probs": ["example", "class"], "label": ["example"]},
        )

    def __repr__(self) -> str:
        return f"Predictive(S={self.num_samples}, N={self.num_examples}, C={self.num_classes})"


def import_arviz():
    """ArviZ, imported without the FutureWarning about its coming refactor that it prints at import."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az


def log_mean_prob(log_probs: torch.Tensor) -> torch.Tensor:
    """Differentiable log of the MC-mean probabilities from log-probability samples ``(S, N, C)``."""
    if log_probs.shape[0] == 1:
        return log_probs[0]
    return torch.logsumexp(log_probs, dim=0) - math.log(log_probs.shape[0])
