"""Kos, Fischer & Song (2017), "Adversarial examples for generative models": three attacks on a VAE.

Each finds x* = argmin L(x*) + λ‖x − x*‖₂ from x* = x, by Adam on the perturbation with x* projected
back into [0, 1] after every step, for a fixed number of steps (their optimiser, minus their L-BFGS):

- ``classifier``: L = CE(f_class(z*), t), z* the encoder mean of x* — push the code into the latent
  classifier's region of class t;
- ``latent``: L = ‖z_t − z*‖², z_t the encoder mean of a target image x_t of class t — move the code
  onto that image's code;
- ``vae``: L = −ELBO of x_t under q(z | x*), KL[q(z | x*) ‖ p(z)] − E_q log p(x_t | z) — make x*'s
  encoding reconstruct x_t (``eot_samples`` reparameterised draws of z per step).

Codes are posterior means (Kos et al. attack the mean, they do not sample), except where the VAE
loss needs the expectation over q. Success is the judge's: call the attack with the VAE in its
``feedback`` mode and success is Kos et al.'s — the *reconstruction* of x* classified as the target
(AS_target) — while ``predictive.predicted != labels`` gives AS_ignore-target. The attacks need the
VAE's encoder, decoder and latent classifier, so they run on VAE classifiers only; they are not in
the attack registry (their targets are images, not only classes) and are built by the Kos analysis.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from bayesrobust.attacks.base import Attack, check_positive
from bayesrobust.errors import InputError

LOSSES = ("classifier", "latent", "vae")


class KosAttack(Attack):
    """One of the three losses (``loss``) with weight ``lam`` on the L2 distortion; ``target_images``
    ``(10, 1, 28, 28)`` holds the target image x_t of each class (needed by ``latent`` and ``vae``).

    >>> KosAttack("latent", lam=1.0, target_images=bank)(vae.with_mode("feedback"), x, y, target=t)
    """

    norm = "L2"
    supports_untargeted = False
    name: ClassVar[str] = "kos"
    supports_penalty = False

    def __init__(self, loss: str = "classifier", lam: float = 1.0, steps: int = 200, lr: float = 0.01,
                 target_images: torch.Tensor | None = None, **common) -> None:
        super().__init__(**common)
        if loss not in LOSSES:
            raise InputError(f"loss must be one of {LOSSES}, got {loss!r}")
        if steps < 1:
            raise InputError(f"steps must be >= 1, got {steps}")
        if loss != "classifier" and (target_images is None or tuple(target_images.shape) != (10, 1, 28, 28)):
            raise InputError(f"the {loss} attack needs target_images of shape (10, 1, 28, 28): one target image per class")
        self.loss, self.steps = loss, int(steps)
        self.lam = check_positive("lam", lam)
        self.lr = check_positive("lr", lr, allow_zero=False)
        self._target_images = target_images

    def perturb(self, model, x, y, target, generator, judge):
        if not all(hasattr(model, part) for part in ("encoder", "decoder", "classifier")):
            raise InputError(f"the Kos et al. attacks need a VAE classifier (encoder, decoder, latent classifier); got {model.arch!r}")
        aim = self._aim(model, target)
        delta = torch.zeros_like(x, requires_grad=True)
        optimizer = torch.optim.Adam([delta], lr=self.lr)
        for _ in self.steps_bar(self.steps):
            x_adv = x + delta
            distance = (x_adv - x).flatten(1).pow(2).sum(1).add(1e-12).sqrt()
            objective = self.objective(model, x_adv, aim, target, generator) + self.lam * distance
            optimizer.zero_grad(set_to_none=True)
            objective.sum().backward()
            optimizer.step()
            with torch.no_grad():  # project x* back into the image box
                delta.copy_((x + delta).clamp(0.0, 1.0) - x)
        x_adv = (x + delta).detach()
        iterations = torch.full((x.shape[0],), self.steps, dtype=torch.long, device=x.device)
        return x_adv, iterations, judge.success(x_adv)

    @torch.no_grad()
    def _aim(self, model, target: torch.Tensor) -> torch.Tensor:
        """What the loss pulls towards: the target classes, the target images' codes, or the images."""
        if self.loss == "classifier":
            return target
        images = self._target_images.to(model.device)[target]
        return model.encoder(images)[0] if self.loss == "latent" else images

    def objective(self, model, x_adv: torch.Tensor, aim: torch.Tensor, target: torch.Tensor, generator) -> torch.Tensor:
        """The per-example attack loss ``(N,)`` (without the distortion term)."""
        loc, scale = model.encoder(x_adv)
        if self.loss == "classifier":
            return F.cross_entropy(model.classifier(loc), aim, reduction="none")
        if self.loss == "latent":
            return (loc - aim).pow(2).sum(1)
        from bayesrobust.models.vae import bernoulli_log_likelihood, gaussian_kl

        noise = torch.randn((self.eot_samples, *loc.shape), generator=generator,
                            device=generator.device if generator is not None else loc.device).to(loc.device)
        return gaussian_kl(loc, scale) - bernoulli_log_likelihood(model.decoder(loc + scale * noise), aim).mean(0)
