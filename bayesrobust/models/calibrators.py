"""Post-hoc calibrators beside temperature scaling (``models/temperature.py``), each fitted on the
*validation* split and applied to every draw of a softmax model's logits:

- ``vector`` — vector scaling (Guo et al. 2017): z'_k = w_k · z_k + b_k, with w and b minimising the
  predictive NLL (L-BFGS from w = 1, b = 0; convex for a deterministic model).
- ``histogram`` — histogram binning (Zadrozny & Elkan 2001), one class against the rest: p_k is
  replaced by the frequency of class k among the validation draws whose p_k lies in the same of
  ``bins`` equal-width bins [a, b) (the last one closed); an empty bin maps to its centre; the row is
  then renormalised.
- ``isotonic`` — isotonic regression (Zadrozny & Elkan 2002), one class against the rest: p_k → the
  non-decreasing least-squares fit of 1[y = k] on p_k (scikit-learn's pool-adjacent-violators, linear
  between its points, clipped to its range outside), renormalised.

These are netcal's definitions (``LogisticCalibration``'s vector scaling, which takes log-probabilities
as its logits; ``HistogramBinning`` with equal intervals; ``IsotonicRegression``), cross-checked on the
same probabilities in ``tests/models/test_calibrators.py``. One difference: before renormalising, every
calibrated probability is floored at 1e-12, so a row that all classes' maps send to 0 becomes uniform
(netcal divides by zero there).

Stochastic models (MC dropout, ensembles): the maps are fitted on the validation draws pooled (each
draw with its digit's label) and applied to each draw; the predictive is the mean of calibrated draws,
so mutual information and every other summary keep their meaning.

Gradients: the binning and isotonic maps are flat almost everywhere, so an attack's gradient through
them would be zero — gradient masking, not robustness. Locally they are therefore treated as a constant
offset of the logits, log p̃ − z (a straight-through estimate, Athalye et al. 2018's BPDA): the values
are the calibrated ones, and the gradients those of softmax(z + offset), i.e. d log p̃_y / dx =
dz_y/dx − Σ_k p̃_k dz_k/dx with the network's own logit gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayesrobust.errors import CheckpointError, ConfigError
from bayesrobust.models.temperature import minimise_nll, predictive_nll, validation_logits

FLOOR = 1e-12  # calibrated probabilities are floored here before renormalising


def _renormalised_logits(logits: torch.Tensor, calibrated: torch.Tensor) -> torch.Tensor:
    """Log of the renormalised calibrated probabilities as logits that move with the network's: locally
    the calibrator is a constant offset log p̃ − z, so gradients are those of softmax(z + offset)."""
    calibrated = calibrated.detach().clamp_min(FLOOR)
    return torch.log(calibrated / calibrated.sum(-1, keepdim=True)) + (logits - logits.detach())


@dataclass
class VectorScaling:
    """z'_k = w_k · z_k + b_k on every draw's logits."""

    scale: list[float]
    bias: list[float]
    kind = "vector"

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        w, b = (torch.tensor(v, dtype=logits.dtype, device=logits.device) for v in (self.scale, self.bias))
        return logits * w + b

    def to_dict(self) -> dict:
        return {"kind": self.kind, "scale": self.scale, "bias": self.bias}


@dataclass
class HistogramBinning:
    """p_k → ``values[k][bin of p_k]`` over ``bins`` equal-width bins, renormalised."""

    values: list[list[float]]  # (C, bins)
    kind = "histogram"

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.detach(), -1)
        values = torch.tensor(self.values, dtype=probs.dtype, device=probs.device)
        bins = values.shape[1]
        index = (probs * bins).floor().long().clamp(0, bins - 1)
        classes = torch.arange(values.shape[0], device=probs.device).expand_as(index)
        return _renormalised_logits(logits, values[classes, index])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "values": self.values}


@dataclass
class IsotonicCalibration:
    """p_k → the isotonic fit of class k (``x[k]``, ``y[k]``: its points), renormalised."""

    x: list[list[float]]
    y: list[list[float]]
    kind = "isotonic"

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.detach(), -1)
        calibrated = torch.stack([_interp(probs[..., k], torch.tensor(xk, dtype=probs.dtype, device=probs.device),
                                          torch.tensor(yk, dtype=probs.dtype, device=probs.device))
                                  for k, (xk, yk) in enumerate(zip(self.x, self.y))], -1)
        return _renormalised_logits(logits, calibrated)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "x": self.x, "y": self.y}


def _interp(values: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` in torch: linear between the points ``(xp, fp)`` (xp increasing), constant outside."""
    if len(xp) == 1:
        return fp.expand_as(values).clone()
    right = torch.searchsorted(xp, values.contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    t = ((values - x0) / (x1 - x0).clamp_min(torch.finfo(values.dtype).tiny)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


def fit_vector_scaling(logits: torch.Tensor, labels: torch.Tensor, **_) -> VectorScaling:
    """w and b minimising the predictive NLL of ``logits`` ``(S, N, C)``."""
    classes = logits.shape[-1]
    w = torch.ones(classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    minimise_nll([w, b], lambda: predictive_nll(logits * w + b, labels, torch.ones((), dtype=torch.float64)))
    return VectorScaling(scale=w.detach().tolist(), bias=b.detach().tolist())


def _pooled(logits: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Every draw's probabilities ``(S·N, C)`` with its digit's label."""
    probs = torch.softmax(logits, -1).reshape(-1, logits.shape[-1]).numpy()
    return probs, labels.repeat(logits.shape[0]).numpy()


def fit_histogram_binning(logits: torch.Tensor, labels: torch.Tensor, *, bins: int = 15) -> HistogramBinning:
    """Each class's bin frequencies on the pooled validation draws (an empty bin: its centre)."""
    probs, y = _pooled(logits, labels)
    index = np.clip(np.floor(probs * bins).astype(np.int64), 0, bins - 1)
    centres = (np.arange(bins) + 0.5) / bins
    values = []
    for k in range(probs.shape[1]):
        count = np.bincount(index[:, k], minlength=bins)
        hits = np.bincount(index[:, k], weights=(y == k).astype(np.float64), minlength=bins)
        values.append(np.where(count > 0, hits / np.maximum(count, 1), centres).tolist())
    return HistogramBinning(values=values)


def fit_isotonic(logits: torch.Tensor, labels: torch.Tensor, **_) -> IsotonicCalibration:
    """Each class's isotonic fit of 1[y = k] on p_k, on the pooled validation draws."""
    from sklearn.isotonic import IsotonicRegression

    probs, y = _pooled(logits, labels)
    xs, ys = [], []
    for k in range(probs.shape[1]):
        fit = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(probs[:, k], y == k)
        xs.append(fit.X_thresholds_.tolist())
        ys.append(fit.y_thresholds_.tolist())
    return IsotonicCalibration(x=xs, y=ys)


FITTERS = {"vector": fit_vector_scaling, "histogram": fit_histogram_binning, "isotonic": fit_isotonic}
KINDS = {"vector": VectorScaling, "histogram": HistogramBinning, "isotonic": IsotonicCalibration}
NAMES = {"temperature": "temperature scaling", "vector": "vector scaling", "histogram": "histogram binning",
         "isotonic": "isotonic regression"}  # every value of a model section's ``calibrate``


def fit_calibrator(model, kind: str, images: torch.Tensor, labels: torch.Tensor, *, samples: int | None = None,
                   seed: int = 0, bins: int = 15):
    """Fit a ``kind`` calibrator on the validation images and set it as ``model.calibrator`` (T = 1);
    return it."""
    if kind not in FITTERS:
        raise ConfigError(f"unknown calibrator {kind!r}; known: temperature, {', '.join(FITTERS)}")
    logits, labels = validation_logits(model, images, labels, samples=samples, seed=seed, what=NAMES[kind])
    model.calibrator = FITTERS[kind](logits, labels, bins=bins)
    return model.calibrator


def calibrator_from_dict(data: dict | None):
    """A calibrator as a checkpoint's metadata holds it (None: none)."""
    if data is None:
        return None
    kind = data.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"checkpoint metadata names an unknown calibrator {kind!r}")
    return KINDS[kind](**{k: v for k, v in data.items() if k != "kind"})


def calibration_label(model) -> str:
    """How a model was calibrated after training, for tables and figure titles ("" when it was not)."""
    if model.calibrator is not None:
        return NAMES[model.calibrator.kind]
    return f"T = {model.temperature:.3f}" if model.temperature != 1.0 else ""
