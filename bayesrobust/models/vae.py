"""A variational autoencoder written in Pyro, as a Bayesian classifier (Kos, Fischer & Song 2017).

The generative model p(z) p(x | z) (standard normal prior, Bernoulli pixels) and its amortised guide
q(z | x) = N(μ(x), σ(x)²) are a Pyro ``model`` / ``guide`` pair trained with ``SVI`` and
``Trace_ELBO``; a small MLP, the *latent classifier*, is then trained on the encoder mean with the VAE
frozen — the classifier Kos et al. attack.

Meanings under the model contract (``models/base.py``):

- mode ``posterior``: ``predictive(x, S)`` draws z ~ q(z | x) S times and classifies each draw, so the
  entropy and mutual information are the classifier's uncertainty under the posterior over z;
  ``logits`` classify the encoder mean.
- mode ``feedback``: the reconstruction-feedback classifier ŷ = f_class(f_enc(x̂)) of Kos et al.'s
  evaluation — x is encoded, decoded and the reconstruction encoded and classified again (each draw
  decodes a different z ~ q(z | x)); ``logits`` use the posterior means throughout. This is the model
  Kos et al.'s attacks are judged on: it sees what the receiver of the reconstruction would see.

The pixel likelihood is the Bernoulli log-probability extended to grey pixels (binary cross-entropy),
as in Pyro's VAE example; its ELBOs are *not* comparable with published binarised-MNIST numbers (Pyro
issue #529). ``binarize = true`` trains on dynamically binarised digits (a fresh Bernoulli draw of
every pixel per batch) and evaluates on a fixed seeded binarisation: that ELBO is comparable.
Pyro's support check rejects grey observations, so the observed site switches off argument validation
on its own distribution only; ``pyro.enable_validation`` stays on for everything else.

Every Pyro parameter is a parameter of the encoder, decoder or classifier modules (``pyro.module``),
so the model's ``state_dict`` is the whole of Pyro's parameter state: checkpoints load through the
contract's ``weights_only`` path, nothing unpickled. Training runs in its own parameter-store scope,
so two VAEs in one process never share parameters.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bayesrobust.models.base import MODELS, BayesianClassifier, Draws
from bayesrobust.seeding import derive_seed, make_generator

ENCODERS = ("mlp", "conv")
PIXELS = 28 * 28


class Encoder(nn.Module):
    """Images → (μ, σ) of q(z | x). ``mlp``: 784 → hidden → z (Kos et al., Pyro's example); ``conv``:
    conv 4×4/2 ×32 → conv 4×4/2 ×64 → FC hidden → z."""

    def __init__(self, kind: str, hidden: int, latent: int) -> None:
        super().__init__()
        if kind == "mlp":
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                                      nn.Flatten(), nn.Linear(64 * 7 * 7, hidden), nn.ReLU())
        self.loc = nn.Linear(hidden, latent)
        self.log_scale = nn.Linear(hidden, latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return self.loc(h), self.log_scale(h).clamp(-10.0, 5.0).exp()


class Decoder(nn.Module):
    """z → pixel logits ``(N, 784)``, the mirror of the encoder."""

    def __init__(self, kind: str, hidden: int, latent: int) -> None:
        super().__init__()
        if kind == "mlp":
            self.body = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS))
        else:
            self.body = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64 * 7 * 7), nn.ReLU(),
                                      nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                                      nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Flatten())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


def bernoulli_log_likelihood(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ over pixels of x log p + (1 − x) log(1 − p), for pixels in [0, 1]: ``(..., N)``."""
    return -F.binary_cross_entropy_with_logits(logits, x.flatten(1).expand_as(logits), reduction="none").sum(-1)


def gaussian_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL[N(loc, scale²) ‖ N(0, I)] per example ``(N,)``, in closed form."""
    return 0.5 * (loc.pow(2) + scale.pow(2) - 1.0 - 2.0 * scale.log()).sum(-1)


@MODELS.register("vae")
class VAEClassifier(BayesianClassifier):
    """A Pyro VAE (``encoder`` "mlp" or "conv", ``hidden`` units, ``latent`` dimensions) and a latent
    classifier (``classifier_hidden`` units) on its encoder mean, trained for ``classifier_epochs``.
    ``binarize``: dynamic binarisation of the training digits."""

    arch = "vae"
    modes: ClassVar[tuple[str, ...]] = ("posterior", "feedback")
    tiny_params = {"hidden": 32, "latent": 8, "classifier_hidden": 16, "classifier_epochs": 1}

    def __init__(self, *, mode: str = "posterior", encoder: str = "mlp", hidden: int = 512, latent: int = 50,
                 classifier_hidden: int = 128, classifier_epochs: int = 10, binarize: bool = False) -> None:
        super().__init__(mode=mode, encoder=encoder, hidden=hidden, latent=latent, classifier_hidden=classifier_hidden,
                         classifier_epochs=classifier_epochs, binarize=binarize)
        if encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
        for name, value in (("hidden", hidden), ("latent", latent), ("classifier_hidden", classifier_hidden)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if classifier_epochs < 1:
            raise ValueError(f"classifier_epochs must be >= 1, got {classifier_epochs}")
        self.encoder = Encoder(encoder, hidden, latent)
        self.decoder = Decoder(encoder, hidden, latent)
        self.classifier = nn.Sequential(nn.Linear(latent, classifier_hidden), nn.ReLU(),
                                        nn.Linear(classifier_hidden, self.num_classes))

    @property
    def draws(self) -> Draws:
        return Draws.SAMPLED

    # --- the generative pieces ------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, σ) of q(z | x), each ``(N, latent)``, on validated images."""
        return self.encoder(self._inputs(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities ``(N, 1, 28, 28)`` of p(x | z)."""
        return torch.sigmoid(self.decoder(z)).view(-1, 1, 28, 28)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction through the posterior mean, dec(μ(x)): what a receiver would see."""
        return self.decode(self.encode(x)[0])

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Squared L2 distance ``(N,)`` between each image and its reconstruction (MagNet's score)."""
        x = self._inputs(x)
        return (self.reconstruct(x) - x).flatten(1).pow(2).sum(1)

    def elbo(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-example ELBO ``(N,)`` in nats: E_q[log p(x | z)] (``samples`` reparameterised draws) −
        KL[q(z | x) ‖ p(z)] (closed form). Differentiable in x."""
        x = self._inputs(x)
        loc, scale = self.encoder(x)
        z = loc + scale * self._noise((samples, *loc.shape), loc, generator)
        return bernoulli_log_likelihood(self.decoder(z), x).mean(0) - gaussian_kl(loc, scale)

    def importance_weighted_bound(self, x: torch.Tensor, samples: int = 64, *,
                                  generator: torch.Generator | None = None) -> torch.Tensor:
        """The importance-weighted bound (IWAE, Burda et al. 2016) per example ``(N,)``: tighter than
        the ELBO, the log-likelihood estimate to report."""
        x = self._inputs(x)
        loc, scale = self.encoder(x)
        z = loc + scale * self._noise((samples, *loc.shape), loc, generator)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_w = bernoulli_log_likelihood(self.decoder(z), x) + log_prior - log_q
        return torch.logsumexp(log_w, 0) - math.log(samples)

    @staticmethod
    def _noise(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        device = generator.device if generator is not None else like.device
        return torch.randn(shape, generator=generator, device=device).to(like.device)

    # --- the contract -----------------------------------------------------------------------------
    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder mean μ(x): the latent code the classifier reads."""
        return self.encoder(x)[0]

    def _classify_codes(self, z: torch.Tensor) -> torch.Tensor:
        """Class scores of latent codes ``(..., latent)``; in feedback mode through dec → enc first."""
        if self.mode == "feedback":
            shape = z.shape[:-1]
            z = self.encoder(torch.sigmoid(self.decoder(z.reshape(-1, z.shape[-1]))).view(-1, 1, 28, 28))[0].view(*shape, -1)
        return self.classifier(z)

    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self._classify_codes(self.encoder(x)[0])

    def raw_sample_logits(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        loc, scale = self.encoder(x)
        return self._classify_codes(loc + scale * self._noise((samples, *loc.shape), loc, generator))

    # --- Pyro -------------------------------------------------------------------------------------
    def model(self, x: torch.Tensor) -> None:
        """p(z) p(x | z): z ~ N(0, I), every pixel Bernoulli(sigmoid(decoder(z)))."""
        import pyro
        import pyro.distributions as dist

        pyro.module("decoder", self.decoder)
        n, latent = x.shape[0], self.params["latent"]
        with pyro.plate("data", n):
            z = pyro.sample("z", dist.Normal(x.new_zeros(n, latent), x.new_ones(n, latent)).to_event(1))
            # grey pixels are outside the Bernoulli's support: its own validation off, the rest on
            pyro.sample("x", dist.Bernoulli(logits=self.decoder(z), validate_args=False).to_event(1), obs=x.flatten(1))

    def guide(self, x: torch.Tensor) -> None:
        """q(z | x) = N(μ(x), diag σ(x)²), amortised by the encoder."""
        import pyro
        import pyro.distributions as dist

        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            loc, scale = self.encoder(x)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    @torch.no_grad()
    def mean_elbo(self, data, *, samples: int = 1, seed: int = 0, batch_size: int = 1000) -> float:
        """The mean per-example ELBO (nats) on a Dataset, on a fixed binarisation when ``binarize``."""
        generator = make_generator(seed)
        total = 0.0
        for start in range(0, len(data), batch_size):
            x = self._training_view(data.images[start: start + batch_size].to(self.device), generator)
            total += float(self.elbo(x, samples, generator=generator).sum())
        return total / len(data)

    def _training_view(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The digits as the likelihood sees them: binarised by a Bernoulli draw when ``binarize``."""
        if not self.params["binarize"]:
            return x
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)

    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> VAEClassifier:
        """SVI on the ELBO for ``config.epochs`` (Pyro's optimiser of ``config.optimizer`` at ``config.lr``;
        early stopping on the validation ELBO with ``config.patience``), then the latent classifier on
        the frozen encoder mean for ``classifier_epochs`` with the nets' training loop."""
        import pyro

        from bayesrobust.models.training import train_model
        from bayesrobust.progress import progress_bar

        optimizers = {"adam": pyro.optim.Adam, "rmsprop": pyro.optim.RMSprop, "sgd": pyro.optim.SGD}
        options = {"lr": config.lr, **({"momentum": config.momentum} if config.optimizer == "sgd" else {})}
        shuffle = make_generator(derive_seed(seed, "vae", "shuffle"))
        binarise = make_generator(derive_seed(seed, "vae", "binarize"))
        self.history_ = []
        best_state, best_elbo, stale = None, -math.inf, 0
        with torch.random.fork_rng(devices=[]), pyro.get_param_store().scope():
            torch.manual_seed(derive_seed(seed, "vae", "svi"))  # Pyro draws z from torch's global generator
            svi = pyro.infer.SVI(self.model, self.guide, optimizers[config.optimizer](options), loss=pyro.infer.Trace_ELBO())
            for epoch in range(1, config.epochs + 1):
                start = time.perf_counter()
                order = torch.randperm(len(train), generator=shuffle)
                total = 0.0
                for i in progress_bar(range(0, len(train), config.batch_size), desc=f"vae epoch {epoch}/{config.epochs}",
                                      enabled=progress, leave=False):
                    x = self._training_view(train.images[order[i: i + config.batch_size]].to(self.device), binarise)
                    total += svi.step(x)
                record = {"epoch": epoch, "train_elbo": -total / len(train), "seconds": time.perf_counter() - start}
                if val is not None and len(val):
                    record["val_elbo"] = self.mean_elbo(val, seed=derive_seed(seed, "vae", "val"))
                self.history_.append(record)
                if val is not None and len(val) and config.patience > 0:
                    if record["val_elbo"] > best_elbo + 1e-3:
                        best_elbo, stale, best_state = record["val_elbo"], 0, copy.deepcopy(self.state_dict())
                    else:
                        stale += 1
                        if stale >= config.patience:
                            break
        if best_state is not None:
            self.load_state_dict(best_state)
        vae_history = self.history_
        classifier_config = dataclasses.replace(config, epochs=self.params["classifier_epochs"])
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            p.requires_grad_(False)
        try:
            train_model(self, train, classifier_config, val=val, seed=derive_seed(seed, "vae", "classifier"), progress=progress,
                        loss=lambda x, y: F.cross_entropy(self.classifier(self.encoder(x)[0]), y),
                        parameters=list(self.classifier.parameters()), penalised=list(self.classifier.parameters()))
        finally:
            for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
                p.requires_grad_(True)
        self.history_ = [*vae_history, *({"stage": "classifier", **r} for r in self.history_)]
        return self.train(False)

    def point_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """The latent classifier on the encoder mean (posterior mode's ``logits``) while training it."""
        return torch.log_softmax(self.classifier(self.encoder(self._inputs(x))[0]), -1)
