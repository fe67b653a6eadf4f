"""GPDNN: a CNN feature extractor feeding a sparse variational GP with a robust-max likelihood
(Bradshaw, Matthews & Ghahramani 2017), trained end to end on the variational ELBO with GPyTorch.

Meanings under the model contract (``models/base.py``):

- ``predictive(x, S)``: S joint draws of the C latent functions from q(f(x)) (independent across
  examples), each pushed through the likelihood — a draw's class probabilities are 1 − ε at its argmax
  and ε/(C − 1) elsewhere — together with the exact (quadrature) predictive as the ``Predictive``'s
  mean. Accuracy, confidence, entropy and log-likelihood are then exact; expected entropy (the
  likelihood's constant: every draw has the same entropy) and mutual information (entropy minus that
  constant: the spread of the posterior over f) mean what they mean for MC dropout.
- ``log_prob(x)``: the exact predictive by Gauss–Hermite quadrature (``robust_max.py``), smooth in x:
  what attacks ascend. ``samples`` is ignored (nothing to average), so EOT costs nothing.
- ``logits(x)``: the posterior mean of f, the scores Bradshaw et al. gave C&W's margin.

Far from the inducing points, in *feature* space, f reverts to its zero-mean prior and every class
becomes equally likely (log-likelihood → log 0.1): the "don't know" the paper claims for shifted and
adversarial inputs. Whether an unfamiliar image lands far from them is another matter. In the full-MNIST
ablation (docs/reproductions.md) every extractor keeps Fashion-MNIST and the other shifted sets farther from
the *training digits* than test digits are, yet they land *closer* to the inducing points: k-means centres
inside the shell of training features, where the shifted sets' shorter features fall. So the GP is
confident there. ``collapse_diagnostics`` measures both distances per image. ``extractor = "residual_sn"``
(DUE's bi-Lipschitz map) was built to stop the features collapsing; the ablation found no such collapse.
Features are used as they come out of the CNN — no batch min/max rescaling (GPyTorch's
``scale_to_bounds`` makes predictions depend on the batch) and no clamping to the training range
(``ScaleToBounds`` would flatten exactly the out-of-distribution features this model exists to flag).
"""

from __future__ import annotations

from typing import ClassVar

import gpytorch
import torch
from torch import nn

from bayesrobust.models.base import MODELS, BayesianClassifier, Draws
from bayesrobust.models.nets import conv_stack
from bayesrobust.models.residual import residual_sn_extractor
from bayesrobust.models.robust_max import RobustMax
from bayesrobust.models.spectral import tighten
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import derive_seed, isolated_rng

KERNELS = ("rbf", "linear")
EXTRACTORS = ("lenet", "residual_sn")


class LatentGP(gpytorch.models.ApproximateGP):
    """C independent latent functions over one shared set of M inducing points in feature space,
    zero prior mean, one kernel shared by the C functions (as GPflow's SVGP with ``num_latent = C``)."""

    def __init__(self, inducing: int, features: int, classes: int, kernel: str, ard: bool) -> None:
        distribution = gpytorch.variational.CholeskyVariationalDistribution(inducing, batch_shape=torch.Size([classes]))
        strategy = gpytorch.variational.IndependentMultitaskVariationalStrategy(
            gpytorch.variational.VariationalStrategy(self, torch.randn(inducing, features), distribution,
                                                     learn_inducing_locations=True),
            num_tasks=classes)
        super().__init__(strategy)
        # initialise q(u) now (GPyTorch would on the first call, from the global RNG): a saved and
        # reloaded model is then the same model whether or not it was ever called
        base = strategy.base_variational_strategy
        base._variational_distribution.initialize_variational_distribution(base.prior_distribution)
        base.variational_params_initialized.fill_(1)
        self.mean_module = gpytorch.means.ZeroMean()
        if kernel == "rbf":
            self.covar_module = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=features if ard else None))
        else:
            self.covar_module = gpytorch.kernels.LinearKernel()

    def forward(self, h: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(h), self.covar_module(h))

    @property
    def inducing_points(self) -> torch.Tensor:
        return self.variational_strategy.base_variational_strategy.inducing_points


@MODELS.register("gpdnn")
class GPDNN(BayesianClassifier):
    """CNN features → sparse variational GP (``inducing`` points, ``kernel`` "rbf" or "linear") →
    robust-max likelihood (``epsilon``). ``gp_lr`` is the learning rate of the GP's parameters (kernel,
    inducing points, variational distribution); the CNN uses the training section's ``lr``.

    ``extractor`` "lenet" (Bradshaw et al.'s): conv 5×5×32 → max-pool → conv 5×5×64 → max-pool → FC
    ``hidden`` → FC ``features``, no final activation. ``spectral_norm`` then normalises each of its
    convolution and linear layers by its largest singular value (Miyato et al. 2018; the Lipschitz half
    of DUE's bi-Lipschitz features — without residual connections nothing keeps distinct inputs apart, so
    it bounds how far features move, not how close they may collapse).

    ``extractor`` "residual_sn": DUE's distance-aware map (``models/residual.py``), residual blocks
    with every layer's operator norm bounded by ``coefficient`` (DUE's 3; ``power_iterations`` per training
    step; convolutions normalised as convolutions, not as reshaped matrices). ``feature_norm`` standardises
    the features (batch statistics in training, the training set's at test time), which lets the model
    train from a random extractor (``fit``)."""

    arch = "gpdnn"
    modes: ClassVar[tuple[str, ...]] = ("posterior",)
    tiny_params = {"channels": (4, 8), "hidden": 16, "features": 8, "inducing": 8, "kmeans_images": 200}

    def __init__(self, *, mode: str = "posterior", channels: tuple[int, int] | list[int] = (32, 64), hidden: int = 1024,
                 features: int = 100, inducing: int = 100, kernel: str = "rbf", ard: bool = False,
                 epsilon: float = 1e-3, learn_epsilon: bool = False, quadrature_points: int = 20,
                 gp_lr: float = 1e-2, kmeans_images: int = 5000, pretrain_epochs: int = 1,
                 spectral_norm: bool = False, extractor: str = "lenet", coefficient: float = 3.0,
                 power_iterations: int = 1, gp_warmup_epochs: int = 0, feature_norm: bool = False) -> None:
        c1, c2 = (int(c) for c in channels)
        super().__init__(mode=mode, channels=[c1, c2], hidden=hidden, features=features, inducing=inducing, kernel=kernel,
                         ard=ard, epsilon=epsilon, learn_epsilon=learn_epsilon, quadrature_points=quadrature_points,
                         gp_lr=gp_lr, kmeans_images=kmeans_images, pretrain_epochs=pretrain_epochs,
                         spectral_norm=spectral_norm, extractor=extractor, coefficient=coefficient,
                         power_iterations=power_iterations, gp_warmup_epochs=gp_warmup_epochs,
                         feature_norm=feature_norm)
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {EXTRACTORS}, got {extractor!r}")
        if extractor == "residual_sn" and spectral_norm:
            raise ValueError("extractor 'residual_sn' is spectrally normalised already: drop spectral_norm = true "
                             "(its bound is `coefficient`)")
        for name, value in (("hidden", hidden), ("features", features), ("inducing", inducing), ("kmeans_images", kmeans_images)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("pretrain_epochs", pretrain_epochs), ("gp_warmup_epochs", gp_warmup_epochs)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if gp_lr <= 0:
            raise ValueError(f"gp_lr must be > 0, got {gp_lr}")
        if extractor == "residual_sn":
            self.extractor = residual_sn_extractor(c1, c2, hidden, features, coefficient, power_iterations)
        else:
            self.extractor = nn.Sequential(*conv_stack(c1, c2), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
                                           nn.Linear(hidden, features))
        if spectral_norm:  # every weight's largest singular value held at 1: a Lipschitz-bounded feature map
            for layer in self.extractor:
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(layer)
        if feature_norm:  # the feature cloud's location and scale held fixed: batch statistics in training,
            self.extractor.append(nn.BatchNorm1d(features, affine=False))  # the training set's at test time
        # The extractor stays in the default (NCHW) memory format: channels-last sent the residual extractor's
        # strided 1×1 convolutions to oneDNN 1×1 backward-weights kernels that hang on the AVX2 path and
        # corrupt memory on the AVX-512 one (torch 2.13; tests/test_cpu_paths.py runs that loop on both paths).
        self.gp = LatentGP(inducing, features, self.num_classes, kernel, ard)
        self.likelihood = RobustMax(self.num_classes, epsilon, learn_epsilon, quadrature_points)
        if spectral_norm or extractor == "residual_sn":  # in training mode every forward pass runs a power
            self.train(False)  # iteration: predictions must not move the normalisation (``fit`` trains, then evaluates)

    @property
    def draws(self) -> Draws:
        return Draws.SAMPLED

    # --- latent marginals -------------------------------------------------------------------
    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN's feature vectors ``(N, features)``: the GP's inputs."""
        return self.extractor(x)

    def latent(self, x: torch.Tensor) -> gpytorch.distributions.MultitaskMultivariateNormal:
        """q(f(x)) on unvalidated images on the model's device: event shape ``(N, C)``.

        Out of training GPyTorch caches the inducing-point terms (K_ZZ's Cholesky factor…) at the first
        call. Filled under autograd, the cache would hold a graph that an attack's first backward frees,
        and its second step would fail ("backward through the graph a second time"); so it is filled
        without one. Input gradients do not need it; training (``self.training``) never caches."""
        features = self.extractor(x)
        if not self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.gp(features[:1].detach())
        return self.gp(features)

    def _marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.latent(x)
        return dist.mean, dist.variance.clamp_min(1e-10).sqrt()

    @torch.no_grad()
    def collapse_diagnostics(self, x: torch.Tensor, batch_size: int = 500,
                             reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per image, whether the GP can tell it is far from the data (feature collapse: an unfamiliar
        image mapped among the training features gets a confident posterior):

        - ``inducing_distance``: distance from its features to the nearest inducing point, in lengthscales
          (per dimension under ARD); RBF kernels only, the linear kernel has no lengthscale;
        - ``training_distance``: with ``reference`` (training images), the distance from its features to
          the nearest reference image's, in the same lengthscales: whether the *extractor* keeps the image
          apart from the training digits, which the GP sees only through the inducing points; RBF only;
        - ``latent_std_ratio``: the latent std over the prior std, averaged over classes: 1 = the GP
          reverts to its prior ("don't know"), small = the data pin f down;
        - ``latent_variance``: the latent variance averaged over classes, an OOD score beside entropy.
        """
        out: dict[str, list[torch.Tensor]] = {"inducing_distance": [], "training_distance": [],
                                              "latent_std_ratio": [], "latent_variance": []}
        rbf = self.params["kernel"] == "rbf"
        scale = self.gp.covar_module.base_kernel.lengthscale.reshape(1, -1) if rbf else None
        bank = None
        if rbf and reference is not None:
            bank = torch.cat([self.features(reference[i: i + batch_size]) for i in range(0, len(reference), batch_size)]) / scale
        for start in range(0, len(x), batch_size):
            h = self.features(x[start: start + batch_size])
            variance = self.gp(h).variance.clamp_min(1e-12)  # (N, C)
            prior = self.gp.covar_module(h, diag=True).clamp_min(1e-12)  # (N,), one kernel for every class
            out["latent_std_ratio"].append((variance / prior[:, None]).sqrt().mean(1).cpu())
            out["latent_variance"].append(variance.mean(1).cpu())
            if rbf:
                out["inducing_distance"].append(torch.cdist(h / scale, self.gp.inducing_points / scale).min(1).values.cpu())
            if bank is not None:
                out["training_distance"].append(torch.cdist(h / scale, bank).min(1).values.cpu())
        return {key: torch.cat(parts) for key, parts in out.items() if parts}

    # --- the contract -----------------------------------------------------------------------
    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.latent(x).mean

    def raw_log_prob(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        return self.likelihood.log_predictive(*self._marginals(x))

    def raw_log_prob_and_draws(self, x: torch.Tensor, samples: int,
                               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The quadrature predictive with draws of the same marginals: every draw's entropy is the
        likelihood's constant, so the mutual information's gradient comes from the predictive alone."""
        mean, std = self._marginals(x)
        return self.likelihood.log_predictive(mean, std), self._draws(mean, std, samples, generator)

    def raw_predictive(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> Predictive:
        """Draws for the spread (expected entropy, MI, variance) and the quadrature predictive for the
        mean: accuracy, confidence, entropy and log-likelihood carry no Monte-Carlo error."""
        log_prob, draws = self.raw_log_prob_and_draws(x, samples, generator)
        return Predictive.from_logits(draws, mean_log_probs=log_prob)

    def raw_predictive_rows(self, x: torch.Tensor, rows: torch.Tensor, samples: int,
                            generator: torch.Generator | None) -> Predictive:
        """The marginals of those rows alone (each image's q(f(x)) is its own), under the noise they get
        in the whole batch."""
        mean, std = self._marginals(x[rows])
        draws = self._draws(mean, std, samples, generator, rows=(rows, x.shape[0]))
        return Predictive.from_logits(draws, mean_log_probs=self.likelihood.log_predictive(mean, std))

    def point_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    def margin_logits(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """The posterior mean of f, as Bradshaw et al. gave C&W (draws through the robust max are
        piecewise constant in x)."""
        return self.logits(x)

    def raw_sample_logits(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        return self._draws(*self._marginals(x), samples, generator)

    def _draws(self, mean: torch.Tensor, std: torch.Tensor, samples: int, generator: torch.Generator | None,
               rows: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
        """Draws through the likelihood; ``rows`` = (row indices, batch size) when ``mean`` and ``std`` are
        those rows of a batch: the batch's noise is drawn and theirs used."""
        device = generator.device if generator is not None else mean.device
        shape = (samples, *mean.shape) if rows is None else (samples, rows[1], *mean.shape[1:])
        noise = torch.randn(shape, generator=generator, device=device).to(mean.device)
        if rows is not None:
            noise = noise[:, rows[0].to(noise.device)]
        return self.likelihood.log_prob_of_samples(mean + std * noise)

    # --- training -----------------------------------------------------------------------------
    def objective(self, num_data: int) -> gpytorch.mlls.VariationalELBO:
        """The ELBO per example (mini-batch estimate), GPyTorch's object."""
        return gpytorch.mlls.VariationalELBO(self.likelihood, self.gp, num_data=num_data)

    def parameter_groups(self, lr: float) -> list[dict]:
        """CNN weights at ``lr``; the GP's and the likelihood's parameters at ``gp_lr``."""
        return [{"params": list(self.extractor.parameters()), "lr": lr},
                {"params": [*self.gp.parameters(), *self.likelihood.parameters()], "lr": self.params["gp_lr"]}]

    @torch.no_grad()
    def initialise_gp(self, images: torch.Tensor, seed: int) -> None:
        """Inducing points by k-means on the features of ``images`` (random initialisation is a known
        cause of chance-level deep-kernel GPs); the RBF lengthscale at the mean pairwise feature
        distance, the linear kernel's variance so that the prior variance of f is about 1."""
        from sklearn.cluster import KMeans

        chunks = [images[i: i + 1000].to(self.device) for i in range(0, len(images), 1000)]
        norm = self.extractor[-1] if isinstance(self.extractor[-1], nn.BatchNorm1d) else None
        trunk = self.extractor[:-1] if norm is not None else self.extractor
        mode = self.extractor.training
        self.extractor.train(False)
        feats = torch.cat([trunk(chunk) for chunk in chunks])
        if norm is not None:  # k-means sees the features as the GP will: standardised by their own statistics
            self._fit_feature_statistics(feats)
            feats = norm(feats)
        self.extractor.train(mode)
        feats = feats.cpu()
        m = self.params["inducing"]
        if len(feats) < m:
            raise ValueError(f"k-means needs at least inducing = {m} training images, got {len(feats)}")
        centres = KMeans(n_clusters=m, n_init=3, random_state=seed % 2**32).fit(feats.double().numpy()).cluster_centers_
        self.gp.inducing_points.copy_(torch.as_tensor(centres, dtype=feats.dtype))
        sub = feats[:1000]
        if self.params["kernel"] == "rbf":
            distance = torch.pdist(sub).mean().clamp_min(1e-3)
            self.gp.covar_module.base_kernel.lengthscale = torch.full_like(self.gp.covar_module.base_kernel.lengthscale, float(distance))
        else:
            self.gp.covar_module.variance = torch.tensor(1.0 / float(sub.pow(2).sum(1).mean().clamp_min(1e-6)))
        self.clear_caches()

    def _fit_feature_statistics(self, raw: torch.Tensor) -> None:
        """``feature_norm``'s running mean and variance set to those of the raw features ``raw`` (they start
        at 0 and 1, whatever the extractor gives); the variance unbiased, as BatchNorm keeps it."""
        norm = self.extractor[-1]
        norm.reset_running_stats()
        norm.running_mean.copy_(raw.mean(0))
        norm.running_var.copy_(raw.var(0, unbiased=True))

    def clear_caches(self) -> None:
        """GPyTorch memoises Cholesky factors of K_ZZ while not training; drop them whenever the
        parameters change outside an optimiser step (initialisation, loading weights)."""
        for module in self.modules():
            if hasattr(module, "_clear_cache"):
                module._clear_cache()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.clear_caches()
        return result

    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> GPDNN:
        """``pretrain_epochs`` of the CNN with a temporary linear softmax head on its features, k-means
        inducing points on the features of ``kmeans_images`` training digits, ``gp_warmup_epochs`` of the
        GP alone on those features, then end to end on the negative ELBO with the training loop the nets
        use (progress bar, seed, early stopping on the validation NLL of the quadrature predictive).

        Why the pre-training (measured): from a random CNN the features' scale runs away from the
        lengthscale. Random features are small (norm 0.4, pairwise distance 0.13 for the residual
        extractor); the ELBO's gradient with respect to them has a consistent outward part (cosine
        +0.05 to +0.09 with h itself, measured after the GP was fitted to them), and every weight moves,
        so within 100–300 steps the features are 5–60× larger — with Adam at 1e-3 or 1e-4 and with SGD — while
        the lengthscale, one parameter at ``gp_lr``, stays put. Once k(x, Z) ≈ 0 the latent functions sit
        at their prior, every class has P = 0.1, and the ELBO's gradient vanishes: chance accuracy with a
        loss of 8.195, the prior's expected log-likelihood. One epoch of softmax pre-training gives
        features worth clustering at a scale that then barely changes. ``feature_norm`` (the features
        standardised by batch statistics in training, the training set's at test time, as DUE's batch
        norm does) holds the scale fixed instead, so that with ``gp_warmup_epochs`` the model trains from
        a random extractor (docs/reproductions.md, the GPDNN ablation)."""
        from dataclasses import replace

        import torch.nn.functional as F

        from bayesrobust.models.training import pretrain, train_model

        if self.params["pretrain_epochs"]:
            with isolated_rng(derive_seed(seed, "gpdnn", "head")):  # the seed, not the global RNG, draws the head
                head = nn.Linear(self.params["features"], self.num_classes).to(self.device)
            pretrain([self.extractor, head], lambda x, y: F.cross_entropy(head(self.extractor(x)), y), train, config,
                     epochs=self.params["pretrain_epochs"], seed=seed, progress=progress, desc="gpdnn features")
        subset = train.head(min(self.params["kmeans_images"], len(train)), seed=seed)
        self.initialise_gp(subset.images, seed)
        elbo = self.objective(len(train))
        if self.params["gp_warmup_epochs"]:  # the GP fits the extractor's features as they are before both move
            def frozen_features(x: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return self.extractor(x)

            pretrain([self.gp, self.likelihood], lambda x, y: -elbo(self.gp(frozen_features(x)), y), train,
                     replace(config, lr=self.params["gp_lr"]), epochs=self.params["gp_warmup_epochs"], seed=seed,
                     progress=progress, desc="gpdnn GP warm-up")
        train_model(self, train, config, val=val, seed=seed, progress=progress,
                    loss=lambda x, y: -elbo(self.latent(x), y), parameters=self.parameter_groups(config.lr),
                    penalised=list(self.extractor.parameters()))
        tighten(self.extractor)  # the spectral bounds' estimates caught up with the final weights
        self.clear_caches()
        return self

