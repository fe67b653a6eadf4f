"""Contract tests every registered model must pass, plus exact checks of MC dropout."""

from __future__ import annotations

import pytest
import torch

from bayesrobust.config import TrainSection
from bayesrobust.errors import CheckpointError, ConfigError, InputError
from bayesrobust.models import MODELS, BayesianClassifier, MCDropout, build_model
from tests.conftest import gen, model_inputs, tiny_models

MODELS_UNDER_TEST = tiny_models()


def test_every_registered_family_declares_a_tiny_instance_in_every_mode():
    """The contract tests cover a family by its own ``tiny()``; the wrapper (which is built from a user's
    network) by the user networks of tests/user_nets.py."""
    for arch in MODELS.names():
        family = MODELS.get(arch)
        assert "tiny_params" in vars(family), f"{arch} declares no tiny_params"
        if family.tiny_params is None:
            assert any(name.startswith(arch) for name in MODELS_UNDER_TEST)
            continue
        for mode in family.modes:
            assert f"{arch}-{mode}" in MODELS_UNDER_TEST and family.tiny(mode).mode == mode


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_predictive_contract(name, images):
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    pred = model.predictive(images, samples=7, generator=gen())
    expected_s = model.draw_count(7)
    assert pred.probs.shape == (expected_s, len(images), model.num_classes)
    assert torch.allclose(pred.probs.sum(-1), torch.ones(expected_s, len(images)), atol=1e-5)
    if model.draws.several:
        assert float(pred.mutual_information.mean()) > 0
    else:
        assert torch.all(pred.mutual_information == 0)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_outputs_mean_what_the_contract_says(name, images):
    """``sample_logits`` are draws whose softmax are class probabilities; ``log_prob`` is the log of
    their mean (exactly, for Monte-Carlo families with the same generator; a closed form or quadrature
    must agree with 4,096 draws to 0.04, five standard errors); ``logits`` are per-class scores;
    ``describe`` rebuilds the model."""
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    assert isinstance(model, BayesianClassifier) and model.arch in MODELS and model.mode in model.modes
    monte_carlo = type(model).raw_log_prob is BayesianClassifier.raw_log_prob
    samples = 256 if monte_carlo else 4096
    draws = model.sample_logits(images, samples, generator=gen(1))
    assert draws.shape == (model.draw_count(samples), len(images), model.num_classes)
    mean = torch.softmax(draws, -1).mean(0)
    log_prob = model.log_prob(images, samples, generator=gen(1))
    assert torch.allclose(log_prob.exp(), mean, atol=1e-5 if monte_carlo else 0.04)
    joint, joint_draws = model.log_prob_and_draws(images, samples, generator=gen(1))
    assert torch.allclose(joint, log_prob, atol=1e-5) and torch.allclose(joint_draws, torch.log_softmax(draws, -1), atol=1e-5)
    assert model.logits(images).shape == (len(images), model.num_classes)
    assert model.margin_logits(images, 3, generator=gen(1)).shape == (len(images), model.num_classes)
    features = model.features(images)
    assert features.dim() == 2 and features.shape[0] == len(images) and torch.isfinite(features).all()
    described = model.describe()
    rebuilt = build_model(described["arch"], mode=described["mode"], **described["params"])
    assert type(rebuilt) is type(model) and set(rebuilt.state_dict()) == set(model.state_dict())


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_modes_are_untouched(name, images):
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    for training in (True, False):
        model.train(training)
        model.predictive(images[:2], samples=3)
        model.log_prob(images[:2], samples=3).sum().backward()
        model.logits(images[:2])
        assert model.training is training
        assert all(m.active is None and m.generator is None for m in model.modules() if isinstance(m, MCDropout))


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_same_generator_same_numbers(name, images):
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    a = model.predictive(images, 5, generator=gen(3)).probs
    b = model.predictive(images, 5, generator=gen(3)).probs
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_some_rows_get_the_draws_they_get_in_the_whole_batch(name, images):
    """``predictive_rows`` (what attacks' judges ask for the few examples in question) is the whole
    batch's predictive at those rows — same draws, whichever rows and in whatever order."""
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    whole = model.predictive(images, 6, generator=gen(4))
    for rows in (torch.tensor([3, 0, 7]), torch.arange(len(images)), torch.tensor([len(images) - 1])):
        part = model.predictive_rows(images, rows, 6, generator=gen(4))
        assert torch.allclose(part.probs, whole.probs[:, rows], atol=1e-6, rtol=1e-5), rows
    assert model.predictive_rows(images, torch.tensor([], dtype=torch.long), 6, generator=gen(4)).num_examples == 0
    mask = torch.arange(len(images)) % 3 == 1  # a boolean mask selects rows, it is not a list of indices 0/1
    part = model.predictive_rows(images, mask, 6, generator=gen(4))
    assert torch.allclose(part.probs, whole.probs[:, mask], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_gradient_steps_follow_each_other_on_a_fresh_model(name, images):
    """Two input-gradient steps in a row on a model that has not predicted yet (a loaded checkpoint
    attacked first thing): GPyTorch's prediction cache must not keep the first step's graph."""
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    model.train(False)
    for _ in range(2):
        x = images[:4].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.margin_logits(x, 2, generator=gen())[:, 0].sum(), x)
        assert torch.isfinite(grad).all()


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_log_prob_is_differentiable_in_the_input(name, images):
    model = MODELS_UNDER_TEST[name]()
    images = model_inputs(model, images)
    x = images[:4].clone().requires_grad_(True)
    lp = model.log_prob(x, samples=4, generator=gen())
    assert lp.shape == (4, model.num_classes)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4), atol=1e-5)
    lp[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_save_load_round_trip(name, images, tmp_path):
    model = MODELS_UNDER_TEST[name]().train(False)  # as loaded: GPyTorch's eval-mode path differs in the last bits
    images = model_inputs(model, images)
    path = model.save(tmp_path / "m.pt")
    loaded = BayesianClassifier.load(path)
    assert type(loaded) is type(model) and loaded.mode == model.mode
    assert torch.equal(model.logits(images), loaded.logits(images))
    assert torch.equal(model.predictive(images, 4, generator=gen()).probs, loaded.predictive(images, 4, generator=gen()).probs)
    assert (tmp_path / "m.json").exists()


def test_bad_inputs_give_clear_errors(images):
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16)
    bad = images.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        model.predictive(bad)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        model.predictive(images * 2)
    with pytest.raises(InputError, match="shape"):
        model.predictive(images[:, :, :20])
    with pytest.raises(InputError, match="floating"):
        model.predictive((images * 255).to(torch.uint8))


def test_corrupt_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        BayesianClassifier.load(tmp_path / "absent.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        BayesianClassifier.load(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a bayesrobust model"):
        BayesianClassifier.load(foreign)
    # weights of one architecture under another's metadata
    small = build_model("mlp", hidden=(8,))
    path = small.save(tmp_path / "small.pt")
    payload = torch.load(path, weights_only=True)
    payload["metadata"] = payload["metadata"].replace("[8]", "[9]")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="do not fit"):
        BayesianClassifier.load(path)
    from bayesrobust.models.nets import LeNet

    with pytest.raises(CheckpointError, match="not 'lenet'"):
        LeNet.load(build_model("mlp", hidden=(8,)).save(tmp_path / "mlp.pt"))


def test_config_errors_for_models():
    with pytest.raises(ConfigError, match="unknown parameter 'width'"):
        build_model("lenet", width=3)
    with pytest.raises(ConfigError, match="needs dropout"):
        build_model("mlp", mode="mc_dropout", hidden=(), input_dropout=0.0)
    with pytest.raises(ConfigError, match="mode"):
        build_model("lenet", mode="bayes")


def test_any_floating_dtype_is_accepted_and_computed_in_float32(images):
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16)
    ref = model.predictive(images, 4, generator=gen(2))
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        x = images.to(dtype)
        pred = model.predictive(x, 4, generator=gen(2))
        assert pred.probs.dtype == torch.float32
        tol = 0 if dtype == torch.float64 else 0.05
        assert torch.allclose(pred.probs, ref.probs, atol=tol + 1e-6)
    x = images.double().requires_grad_(True)
    model.log_prob(x, 2, generator=gen(0))[:, 0].sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float64
    from bayesrobust.attacks import build_attack

    result = build_attack("fgsm", eps=0.1)(model, images.double(), torch.zeros(len(images), dtype=torch.long), generator=gen(0))
    assert result.x_adv.dtype == torch.float32


def test_checkpoint_is_made_to_match_its_config(tmp_path):
    from bayesrobust.config import ModelSection
    from bayesrobust.errors import ConfigError
    from bayesrobust.experiment import conform

    path = build_model("lenet", mode="plain", channels=(4, 8), hidden=16).save(tmp_path / "m.pt")
    loaded = BayesianClassifier.load(path)
    mc = conform(loaded, ModelSection(arch="lenet", mode="mc_dropout", checkpoint=str(path)), "models.m")
    assert mc.mode == "mc_dropout" and torch.equal(mc.head[-1].weight, loaded.head[-1].weight)
    assert conform(loaded, ModelSection(arch="lenet", mode="plain", params={"channels": [4, 8]}, checkpoint=str(path)), "m") is loaded
    with pytest.raises(ConfigError, match="is a 'lenet' model"):
        conform(loaded, ModelSection(arch="mlp", mode="plain", checkpoint=str(path)), "models.m")
    with pytest.raises(ConfigError, match=r"models.m.params.hidden = 64, but checkpoint"):
        conform(loaded, ModelSection(arch="lenet", mode="plain", params={"hidden": 64}, checkpoint=str(path)), "models.m")


def test_training_learns_and_early_stopping_restores_best(digits5k):
    train, test = digits5k
    model = build_model("mlp", mode="plain", hidden=(64,), input_dropout=0.0, hidden_dropout=0.0, bias=True, init_std=0.0)
    tr, val = train.split(0.2, seed=0)
    model.fit(tr, TrainSection(optimizer="sgd", lr=0.1, epochs=4, batch_size=64, patience=1, l1=1e-5, l2=1e-4),
              val=val, seed=0, progress=False)
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]
    assert model.predictive(test.images).accuracy(test.labels) > 0.8
    best = min(h["val_nll"] for h in model.history_)
    from bayesrobust.models.training import evaluate_nll

    assert evaluate_nll(model, val)[0] == pytest.approx(best, rel=1e-5)


def test_trained_lenet_is_accurate(trained_lenet, digits5k):
    pred = trained_lenet.predictive(digits5k[1].images, 20, generator=gen())
    assert pred.accuracy(digits5k[1].labels) > 0.85


def test_temperature_scaling_recovers_an_overconfident_models_temperature(small_lenet, digits5k):
    """The same net with its last layer's weights x4 (logits x4, four times overconfident): the fitted
    temperature is four times the original net's and its NLL drops to the original's best (a fit that
    left T at 1 would fail); the plain model's labels never move; T survives with_mode."""
    import copy

    from bayesrobust.models.temperature import fit_temperature

    x, y = digits5k[1].images[:200], digits5k[1].labels[:200]
    plain = small_lenet.with_mode("plain")
    t0 = fit_temperature(plain, x, y)
    best = plain.predictive(x).nll(y)
    hot = copy.deepcopy(plain)
    last = [m for m in hot.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(4)
        last.bias.mul_(4)
    hot.temperature = 1.0
    assert hot.predictive(x).nll(y) > best + 0.05
    t = fit_temperature(hot, x, y)
    assert hot.temperature == t and t == pytest.approx(4 * t0, rel=1e-3)
    assert hot.predictive(x).nll(y) == pytest.approx(best, abs=1e-5)
    assert torch.equal(hot.predictive(x).predicted, plain.predictive(x).predicted)
    mc = hot.with_mode("mc_dropout")
    assert mc.temperature == t
    before = mc.predictive(x, 8, generator=torch.Generator().manual_seed(0)).nll(y)
    fit_temperature(mc, x, y, samples=8, seed=0)  # the same masks: the fitted T is at least as good
    assert mc.predictive(x, 8, generator=torch.Generator().manual_seed(0)).nll(y) <= before + 1e-6


def test_temperature_round_trips_through_a_checkpoint(small_lenet, tmp_path, images):
    from bayesrobust.models import BayesianClassifier

    model = small_lenet.with_mode("plain")
    model.temperature = 2.5
    loaded = BayesianClassifier.load(model.save(tmp_path / "m.pt"))
    assert loaded.temperature == 2.5 and torch.allclose(loaded.logits(images), model.logits(images))
    model.temperature = 1.0
    assert BayesianClassifier.load(model.save(tmp_path / "n.pt")).temperature == 1.0
    assert "temperature" not in model.describe()  # checkpoints without it load at T = 1


def test_temperature_scaling_refuses_a_gpdnn():
    from bayesrobust.errors import ConfigError
    from bayesrobust.models.temperature import fit_temperature
    from tests.conftest import TINY_GPDNN

    with pytest.raises(ConfigError, match="softmax logits"):
        fit_temperature(build_model("gpdnn", **TINY_GPDNN), torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long))


def test_adversarial_objective_by_hand():
    """α·J(x) + (1 − α)·J(x + ε·sign ∇ₓJ), the FGSM image clipped to [0, 1] and not differentiated."""
    from bayesrobust.models.training import adversarial_objective

    w = torch.tensor([[1.0, -2.0]], requires_grad=True)
    x, y = torch.tensor([[0.5, 0.95]]), torch.tensor([0.0])
    loss = lambda x, y: ((x @ w.T).squeeze(1) - y).pow(2).mean()  # noqa: E731  ∇ₓ = 2(wᵀx − y)·w
    value = adversarial_objective(loss, x, y, eps=0.1, alpha=0.25)
    x_adv = torch.tensor([[0.4, 1.0]])  # 2(−1.4)·w = (−2.8, 5.6): sign (−, +); 0.95 + 0.1 clipped to 1
    assert value.item() == pytest.approx(0.25 * 1.4 ** 2 + 0.75 * 1.6 ** 2)
    value.backward()  # the weights' gradient flows through both terms
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert torch.equal(x_adv, (x + 0.1 * torch.tensor([[-1.0, 1.0]])).clamp(0, 1))


def test_adversarial_training_lowers_fgsm_error(digits5k):
    """Goodfellow et al.'s objective (ε = 0.25, α = 0.5) as a training option: the same MLP trained with
    it errs far less on FGSM examples at the same ε."""
    from bayesrobust.attacks import build_attack

    train, test = digits5k
    errors = {}
    for eps in (0.0, 0.25):
        torch.manual_seed(0)
        model = build_model("mlp", mode="plain", hidden=(64,))
        model.fit(train, TrainSection(epochs=4, batch_size=32, adversarial_eps=eps), seed=0, progress=False)
        result = build_attack("fgsm", eps=0.25)(model, test.images[:200], test.labels[:200])
        errors[eps] = result.summary()["error_rate"]
    assert errors[0.25] < errors[0.0] - 0.1, errors  # measured: 0.985 → 0.795 after four epochs on 1,500 digits


SEEDED_BUILDS = {
    **{f"{arch}-{mode}": (arch, mode, MODELS.get(arch).tiny_params)
       for arch in MODELS.names() if MODELS.get(arch).tiny_params is not None for mode in MODELS.get(arch).modes},
    "user-network-by-import-path": ("tests.user_nets:DropoutBatchNormCNN", "mc_dropout", {"width": 3}),
}


@pytest.mark.parametrize("name", SEEDED_BUILDS)
def test_one_seed_fixes_the_trained_model_whatever_ran_before(name, digits5k):
    """``build_model(..., seed=s).fit(..., seed=s)`` twice in one process, with unrelated and unequal use of
    the global RNGs before each, gives identical weights; the seed of the build leaves the global RNGs as
    it found them."""
    import random

    import numpy as np

    arch, mode, params = SEEDED_BUILDS[name]
    train = digits5k[0].head(200, seed=0)

    def build_and_fit(unrelated_draws: int):
        torch.rand(unrelated_draws), np.random.rand(unrelated_draws), random.random()
        return build_model(arch, mode=mode, seed=5, **params).fit(train, TrainSection(epochs=1, batch_size=50), seed=5,
                                                                  progress=False)

    first, second = build_and_fit(3).state_dict(), build_and_fit(11).state_dict()
    assert first.keys() == second.keys()
    differ = [k for k in first if not torch.equal(first[k], second[k])]
    assert not differ, f"weights differ between two seed-5 builds and fits: {differ[:5]}"
    state = torch.get_rng_state()
    build_model(arch, mode=mode, seed=5, **params)
    assert torch.equal(torch.get_rng_state(), state)
