"""GPDNN and its robust-max likelihood: quadrature against Monte Carlo, GPyTorch protocol, learning,
gradients, persistence and attacks. (The model contract itself is checked in test_models.py.)"""

from __future__ import annotations

import math

import gpytorch
import pytest
import torch

from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.config import TrainSection
from bayesrobust.models import BayesianClassifier, build_model
from bayesrobust.models.robust_max import RobustMax, argmax_probabilities
from bayesrobust.seeding import seed_everything
from tests.conftest import TINY_GPDNN, gen, tiny_attack


def _gaussians(n: int = 40, classes: int = 10, seed: int = 0):
    g = gen(seed)
    return torch.randn(n, classes, generator=g) * 2, torch.rand(n, classes, generator=g) + 0.5, g


def test_quadrature_matches_monte_carlo():
    """P(c = argmax f) and E[log p(y | f)] by 20-point Gauss–Hermite against 200,000 draws of f.
    Tolerance 0.006: the draws' standard error is ≤ 0.0011 per entry, and with σ in [0.5, 1.5] the
    quadrature's own error is below that (it grows when one class's σ is ≫ another's)."""
    mean, std, g = _gaussians()
    f = mean + std * torch.randn(200_000, *mean.shape, generator=g)
    hits = torch.nn.functional.one_hot(f.argmax(-1), 10).double().mean(0)
    quad = argmax_probabilities(mean, std, 20)
    assert (quad - hits).abs().max() < 0.006
    assert torch.allclose(quad.sum(-1), torch.ones(len(mean)), atol=2e-3)

    likelihood = RobustMax(10, epsilon=0.05)
    y = torch.arange(len(mean)) % 10
    expected = likelihood.expected_log_prob(y, _independent(mean, std))
    sampled = likelihood.log_prob_of_samples(f[:20_000]).gather(-1, y.expand(20_000, -1)[..., None])[..., 0].mean(0)
    assert torch.allclose(expected, sampled, atol=0.05)  # 20,000 draws: standard error ≤ 0.033


def test_the_elbo_term_with_unequal_class_variances_matches_monte_carlo():
    """σ spread over 0.05–5 (100×): the raw quadrature's Σ_c P_c drifts from 1 (by 0.08 here), and the
    ELBO's E[log p(y | f)], on the predictive's normalised P, is closer to 200,000 draws of f than the
    unnormalised P: mean error 0.019 against 0.025 nats. What is left is the 20-point rule's own error on
    near-step integrands (worst example 0.23 nats against 0.29 at ε 0.05), stated, not hidden."""
    g = gen(3)
    mean = torch.randn(40, 10, generator=g) * 2
    std = torch.exp(torch.empty(40, 10).uniform_(math.log(0.05), math.log(5.0), generator=g))
    f = mean + std * torch.randn(200_000, *mean.shape, generator=g)
    likelihood = RobustMax(10, epsilon=0.05)
    y = torch.arange(40) % 10
    raw = argmax_probabilities(mean, std, 20)
    assert float((raw.sum(-1) - 1).abs().max()) > 0.05  # the drift the normalisation removes
    hit, miss = likelihood._log_levels()
    sampled = (f.argmax(-1) == y).double().mean(0) * (hit - miss) + miss
    expected = likelihood.expected_log_prob(y, _independent(mean, std))
    unnormalised = raw.gather(1, y[:, None])[:, 0].clamp(0, 1) * (hit - miss) + miss
    assert float((expected - sampled).abs().mean()) < 0.022
    assert float((expected - sampled).abs().mean()) < float((unnormalised - sampled).abs().mean())
    assert float((expected - sampled).abs().max()) < float((unnormalised - sampled).abs().max())
    assert torch.allclose(likelihood.class_probabilities(mean, std).sum(-1), torch.ones(40), atol=1e-6)


def _independent(mean: torch.Tensor, std: torch.Tensor) -> gpytorch.distributions.MultitaskMultivariateNormal:
    """Independent marginals N(mean[n, c], std[n, c]²) as GPyTorch's multitask latent."""
    batch = gpytorch.distributions.MultivariateNormal(mean.T.contiguous(), torch.diag_embed(std.T.pow(2)))
    return gpytorch.distributions.MultitaskMultivariateNormal.from_batch_mvn(batch, task_dim=-1)


def test_likelihood_follows_the_gpytorch_protocol():
    mean, std, _ = _gaussians(8)
    likelihood = RobustMax(10, epsilon=1e-3)
    assert float(likelihood.epsilon) == pytest.approx(1e-3)
    marginal = likelihood(_independent(mean, std))
    assert isinstance(marginal, torch.distributions.Categorical)
    assert torch.allclose(marginal.probs.sum(-1), torch.ones(8), atol=1e-6)
    assert torch.allclose(marginal.probs.log(), likelihood.log_predictive(mean, std), atol=1e-5)
    # the floor: no class is ever less likely than ε/(C − 1), so the NLL is bounded by log((C − 1)/ε)
    assert float(marginal.probs.min()) >= 1e-3 / 9 * (1 - 1e-4)
    samples = likelihood(mean)  # latent samples → the robust-max Categorical of each
    assert torch.allclose(samples.probs.max(-1).values, torch.full((8,), 1 - 1e-3))
    learnable = RobustMax(10, epsilon=0.01, learn_epsilon=True)
    learnable.expected_log_prob(torch.zeros(8, dtype=torch.long), _independent(mean, std)).sum().backward()
    assert learnable.raw_epsilon.grad is not None
    for bad in (0.0, 0.95):
        with pytest.raises(ValueError, match="epsilon"):
            RobustMax(10, epsilon=bad)


def test_far_from_the_data_the_model_does_not_know():
    """Features far from every inducing point: f reverts to its zero-mean prior and every class is
    equally likely (log-likelihood log 0.1), the behaviour Bradshaw et al. report on shifted data."""
    torch.manual_seed(0)
    model = build_model("gpdnn", **TINY_GPDNN)
    far = torch.full((4, TINY_GPDNN["features"]), 1e4)
    dist = model.gp(far)
    probs = model.likelihood(dist).probs
    assert torch.allclose(probs, torch.full_like(probs, 0.1), atol=0.01)


@pytest.fixture(scope="module")
def trained_gpdnn(digits5k):
    """A small GPDNN: one softmax pre-training epoch, then 3 epochs (90 steps) on 1,500 real digits."""
    seed_everything(0)
    model = build_model("gpdnn", channels=(8, 16), hidden=64, features=16, inducing=20, kmeans_images=1000)
    model.fit(digits5k[0], TrainSection(epochs=3, batch_size=50, lr=1e-3), seed=0, progress=False)
    return model


def test_a_few_dozen_steps_beat_chance_by_far(trained_gpdnn, digits5k):
    pred = trained_gpdnn.predictive(digits5k[1].images, 50, generator=gen())
    assert pred.accuracy(digits5k[1].labels) > 0.8
    assert trained_gpdnn.history_[-1]["train_loss"] < trained_gpdnn.history_[0]["train_loss"]
    # the inducing points moved away from their k-means start only by learning, and sit among the features
    feats = trained_gpdnn.features(digits5k[0].images[:500])
    z = trained_gpdnn.gp.inducing_points
    assert torch.cdist(z, feats).min(1).values.median() < torch.pdist(feats).median()


def test_gradients_reach_every_part(digits5k):
    torch.manual_seed(0)
    model = build_model("gpdnn", **TINY_GPDNN, learn_epsilon=True)
    x, y = digits5k[0].images[:32], digits5k[0].labels[:32]
    model.initialise_gp(digits5k[0].images[:200], seed=0)
    loss = -model.objective(len(digits5k[0]))(model.latent(x), y)
    loss.backward()
    named = dict(model.named_parameters())
    for part in ("extractor.1.weight", "gp.covar_module.raw_outputscale", "gp.covar_module.base_kernel.raw_lengthscale",
                 "gp.variational_strategy.base_variational_strategy.inducing_points",
                 "gp.variational_strategy.base_variational_strategy._variational_distribution.variational_mean",
                 "gp.variational_strategy.base_variational_strategy._variational_distribution.chol_variational_covar",
                 "likelihood.raw_epsilon"):
        assert named[part].grad is not None and float(named[part].grad.abs().sum()) > 0, part


def test_initialisation_uses_kmeans_centres_and_feature_distances(digits5k):
    torch.manual_seed(0)
    model = build_model("gpdnn", **TINY_GPDNN)
    images = digits5k[0].images[:200]
    model.initialise_gp(images, seed=0)
    feats = model.features(images).detach()
    z = model.gp.inducing_points.detach()
    assert torch.cdist(z, feats).min(1).values.max() < torch.pdist(feats).mean()  # centres sit among the features
    lengthscale = float(model.gp.covar_module.base_kernel.lengthscale.detach())
    assert lengthscale == pytest.approx(float(torch.pdist(feats[:1000]).mean()), rel=1e-4)
    with pytest.raises(ValueError, match="k-means needs"):
        model.initialise_gp(images[:3], seed=0)


def test_trained_model_round_trips_through_a_checkpoint(trained_gpdnn, digits5k, tmp_path):
    x = digits5k[1].images[:50]
    loaded = BayesianClassifier.load(trained_gpdnn.save(tmp_path / "gp.pt"))
    # not bit for bit: the two instances' float32 paths through GPyTorch's cached K_ZZ factors differ in the
    # last digits (up to ~1e-4 on log-probabilities of −7, 1.5e-5 relative; not traced further)
    assert torch.allclose(loaded.log_prob(x), trained_gpdnn.log_prob(x), atol=0, rtol=1e-4)
    assert torch.equal(loaded.gp.inducing_points, trained_gpdnn.gp.inducing_points)
    assert torch.allclose(loaded.predictive(x, 8, generator=gen(2)).probs, trained_gpdnn.predictive(x, 8, generator=gen(2)).probs, atol=1e-4)


@pytest.mark.parametrize("name", sorted(ATTACKS.names()))
def test_every_attack_runs_on_a_gpdnn(name, trained_gpdnn, images, labels):
    attack = build_attack(name, **{**tiny_attack(name), "eval_samples": 8})
    target = (labels + 1) % 10 if not attack.supports_untargeted else None
    result = attack(trained_gpdnn, images, labels, target=target, generator=gen(0))
    assert result.x_adv.shape == images.shape and 0 <= float(result.x_adv.min()) and float(result.x_adv.max()) <= 1
    assert result.predictive.num_samples == 8 and bool(result.success[result.claimed].all())
    assert all(p.grad is None for p in trained_gpdnn.parameters())
    if name in ("fgsm", "bim"):
        assert float(result.success.float().mean()) > 0  # the quadrature gradient is informative


def test_uncertainty_aware_attack_gets_a_gradient_from_the_quadrature(trained_gpdnn, images, labels):
    """The GP's draws are piecewise constant in x, yet the mutual information an uncertainty-aware
    attack penalises has an input gradient (through the quadrature predictive), and the attack runs."""
    from bayesrobust.attacks.base import uncertainty_of

    x = images.clone().requires_grad_(True)
    log_prob, draws = trained_gpdnn.log_prob_and_draws(x, 16, generator=gen(0))
    assert not draws.requires_grad
    (grad,) = torch.autograd.grad(uncertainty_of(draws, log_prob, "mi").sum(), x)
    assert float(grad.abs().sum()) > 0
    attack = build_attack("bim", eps=0.3, alpha=0.05, steps=5, variant="B", eval_samples=16, min_confidence=0.3,
                          max_uncertainty=1.0)
    result = attack(trained_gpdnn, images, labels, generator=gen(0))
    assert bool(result.success[result.claimed].all()) and result.x_adv.shape == images.shape


def test_bad_parameters_are_config_errors():
    from bayesrobust.errors import ConfigError

    with pytest.raises(ConfigError, match="kernel"):
        build_model("gpdnn", kernel="matern")
    with pytest.raises(ConfigError, match="mode"):
        build_model("gpdnn", mode="mc_dropout")
    assert math.isfinite(float(build_model("gpdnn", **TINY_GPDNN).likelihood.epsilon))


def test_softmax_pretraining_keeps_the_gp_out_of_its_prior(digits5k):
    """The failure it fixes: from a random CNN, Adam's first steps move the features away from the
    inducing points, k(x, Z) → 0, every class gets P = 0.1 and the ELBO's gradient vanishes — the model
    stays at chance with the prior's loss (≈ 8.195). One epoch of softmax pre-training avoids it."""
    accuracy, first_loss = {}, {}
    for epochs in (0, 1):
        seed_everything(0)
        model = build_model("gpdnn", channels=(8, 16), hidden=64, features=16, inducing=20, kmeans_images=1000,
                            pretrain_epochs=epochs)
        model.fit(digits5k[0], TrainSection(epochs=2, batch_size=50, lr=3e-3), seed=0, progress=False)
        accuracy[epochs] = model.predictive(digits5k[1].images, 8, generator=gen()).accuracy(digits5k[1].labels)
        first_loss[epochs] = model.history_[-1]["train_loss"]
    assert accuracy[0] < 0.2 and first_loss[0] == pytest.approx(-(0.1 * math.log(0.999) + 0.9 * math.log(1e-3 / 9)), abs=0.01)
    assert accuracy[1] > 0.8


def test_a_standardised_feature_scale_trains_from_a_random_extractor(digits5k):
    """No pre-training, a GP warm-up on the random features: without ``feature_norm`` the two epochs stay at
    chance (the features' scale runs away from the lengthscale, as in the test above); with it they learn
    (measured: 0.100 against 0.927)."""
    accuracy = {}
    for feature_norm in (False, True):
        seed_everything(0)
        model = build_model("gpdnn", channels=(8, 16), hidden=64, features=16, inducing=20, kmeans_images=1000,
                            pretrain_epochs=0, gp_warmup_epochs=1, feature_norm=feature_norm)
        model.fit(digits5k[0], TrainSection(epochs=2, batch_size=50, lr=3e-3), seed=0, progress=False)
        accuracy[feature_norm] = model.predictive(digits5k[1].images, 8, generator=gen()).accuracy(digits5k[1].labels)
    assert accuracy[False] < 0.2 and accuracy[True] > 0.85


def test_collapse_diagnostics_on_a_hand_built_gp():
    """Features = the first 8 pixels, inducing points z_j = 0.8·e_j, lengthscale 0.2, prior variance 1,
    whitened q(u) with covariance 0.1²·I: at an inducing point the latent variance is 0.1²·k(z, z) (std
    ratio 0.1, distance 0; GPyTorch's 1e-4 jitter on K_ZZ adds about 1e-4); at the origin, 4 lengthscales from every z_j, k(x, Z) = e⁻⁸ and the GP
    is back at its prior (std ratio → 1)."""
    model = build_model("gpdnn", **TINY_GPDNN)
    selector = torch.nn.Linear(784, 8, bias=False)
    with torch.no_grad():
        selector.weight.zero_()
        selector.weight[:, :8] = torch.eye(8)
    model.extractor = torch.nn.Sequential(torch.nn.Flatten(), selector)
    strategy = model.gp.variational_strategy.base_variational_strategy
    with torch.no_grad():
        strategy.inducing_points.copy_(0.8 * torch.eye(8))
        strategy._variational_distribution.chol_variational_covar.copy_(0.1 * torch.eye(8).expand(10, 8, 8))
        strategy._variational_distribution.variational_mean.zero_()
    model.gp.covar_module.base_kernel.lengthscale = torch.tensor(0.2)
    model.gp.covar_module.outputscale = torch.tensor(1.0)
    model.clear_caches()
    images = torch.zeros(3, 1, 28, 28)
    images[0, 0, 0, 2] = 0.8  # on z_2
    images[2, 0, 0, 0] = 0.4  # halfway to z_0: distance 2 lengthscales to it
    d = model.collapse_diagnostics(images)
    assert torch.allclose(d["inducing_distance"], torch.tensor([0.0, 4.0, 2.0]), atol=1e-3)
    assert float(d["latent_std_ratio"][0]) == pytest.approx(0.1, rel=0.02)
    assert float(d["latent_variance"][0]) == pytest.approx(0.01, rel=0.03)
    assert float(d["latent_std_ratio"][1]) == pytest.approx(1.0, abs=1e-3)
    assert 0.1 < float(d["latent_std_ratio"][2]) < 1.0
    assert "training_distance" not in d  # no reference digits given
    # training digits with features 0.4·e_0 and 0.6·e_1: from 0.8·e_2 the nearest is √(0.8² + 0.4²) = 0.894
    # away (4.47 lengthscales), from the origin 0.4 (2), and the third image is the first reference (0)
    reference = torch.zeros(2, 1, 28, 28)
    reference[0, 0, 0, 0], reference[1, 0, 0, 1] = 0.4, 0.6
    d = model.collapse_diagnostics(images, batch_size=2, reference=reference)
    assert torch.allclose(d["training_distance"], torch.tensor([(0.8**2 + 0.4**2) ** 0.5 / 0.2, 2.0, 0.0]), atol=1e-3)
    assert torch.allclose(d["inducing_distance"], torch.tensor([0.0, 4.0, 2.0]), atol=1e-3)  # unchanged by the reference
    linear = build_model("gpdnn", **TINY_GPDNN, kernel="linear").collapse_diagnostics(images, reference=reference)
    assert set(linear) == {"latent_std_ratio", "latent_variance"}  # no lengthscale to measure distances in


def test_feature_norm_standardises_the_features_with_training_statistics(digits5k):
    """``feature_norm``: k-means and the lengthscale see standardised features (the running statistics are
    fitted on the k-means digits first, not left at 0 and 1); at test time an image's prediction does not
    depend on the batch it comes in."""
    torch.manual_seed(0)
    model = build_model("gpdnn", **TINY_GPDNN, feature_norm=True, pretrain_epochs=0)
    images = digits5k[0].images[:400]
    model.initialise_gp(images, seed=0)
    model.train(False)
    feats = model.features(images).detach()
    with torch.no_grad():
        raw = model.extractor[:-1](images)
    assert torch.allclose(feats.mean(0), torch.zeros(feats.shape[1]), atol=1e-4)
    # unit variance up to BatchNorm's ε = 1e-5, which is not small beside a random tiny extractor's raw
    # variances (~1e-4 to 1e-3): the standardised std is exactly sqrt(var_biased / (var_unbiased + ε))
    expected = (raw.var(0, unbiased=False) / (raw.var(0, unbiased=True) + 1e-5)).sqrt()
    assert torch.allclose(feats.std(0, unbiased=False), expected, atol=1e-4)
    assert bool((expected > 0.5).all())  # the statistics were fitted, not left at 0 and 1
    lengthscale = float(model.gp.covar_module.base_kernel.lengthscale.detach())
    assert lengthscale == pytest.approx(float(torch.pdist(feats).mean()), rel=1e-3)
    x = digits5k[1].images[:20]
    with torch.no_grad():
        assert torch.allclose(model.log_prob(x[:1]), model.log_prob(x)[:1], atol=1e-5)
