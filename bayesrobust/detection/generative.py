"""A VAE's own view of an input as a detector (the MagNet idea, Meng & Chen 2017): inputs far from the
data manifold reconstruct badly and have a low ELBO, whichever classifier they were crafted against."""

from __future__ import annotations

import numpy as np
import torch

from bayesrobust.detection.base import DETECTORS, Detector, DetectorKind, check_max_fpr, choose_threshold, images
from bayesrobust.errors import ConfigError
from bayesrobust.models.base import Reconstructs
from bayesrobust.seeding import make_generator

GENERATIVE_SCORES = ("reconstruction", "elbo")


class GenerativeDetector(Detector):
    """Flags inputs whose ``kind`` of score under a VAE classifier ``vae`` exceeds a threshold fitted
    on validation data: ``reconstruction`` = ‖x − dec(μ(x))‖₂², ``elbo`` = −ELBO(x) in nats (``samples``
    draws of z from a generator seeded with ``seed`` at every call, so a score is a function of x)."""

    def __init__(self, vae, kind: str = "reconstruction", *, samples: int = 8, seed: int = 0, max_fpr: float | None = None,
                 batch_size: int = 1000) -> None:
        if kind not in GENERATIVE_SCORES:
            raise ConfigError(f"unknown generative score {kind!r}; known: {', '.join(GENERATIVE_SCORES)}")
        if not isinstance(vae, Reconstructs):
            raise ConfigError(f"the {kind} detector needs a VAE (arch = 'vae'), got {getattr(vae, 'arch', type(vae).__name__)!r}")
        self.vae, self.kind, self.samples, self.seed, self.max_fpr = vae, kind, samples, seed, check_max_fpr(max_fpr)
        self.batch_size = batch_size
        self.name = f"vae:{kind}"
        self.threshold_ = None

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> np.ndarray:
        x = images(x, self.vae)
        generator = make_generator(self.seed)
        parts = []
        for start in range(0, len(x), self.batch_size):
            chunk = x[start: start + self.batch_size]
            value = (self.vae.reconstruction_error(chunk) if self.kind == "reconstruction"
                     else -self.vae.elbo(chunk, self.samples, generator=generator))
            parts.append(value.double().cpu())
        return torch.cat(parts).numpy()

    def fit(self, clean_val: torch.Tensor, adv_val: torch.Tensor | None = None) -> GenerativeDetector:
        adv = None if adv_val is None or len(adv_val) == 0 else self.score(adv_val)
        self.threshold_ = choose_threshold(self.score(clean_val), adv, max_fpr=self.max_fpr)
        return self


def _surprise(kind: str) -> DetectorKind:
    """A VAE's surprise at the input (MagNet), whichever model is defended."""
    return DetectorKind(lambda model, data, section, seed, vae, built: GenerativeDetector(vae, kind, seed=seed), needs_vae=True)


DETECTORS.add("reconstruction", _surprise("reconstruction"))
DETECTORS.add("elbo", _surprise("elbo"))
