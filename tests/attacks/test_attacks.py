"""Invariants every registered attack must satisfy, and exact checks where the answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from bayesrobust.attacks import ATTACKS, AttackResult, build_attack
from bayesrobust.config import TrainSection
from bayesrobust.errors import ConfigError, InputError
from bayesrobust.models import build_model
from tests.conftest import gen, tiny_attack

# Each registered attack's own tiny settings (``tiny_params``, conftest.tiny_attack): a new attack is in
# every contract test below by registering it, with no table here to extend.
FAST = {name: tiny_attack(name) for name in ATTACKS.names()}
EPS_BOUNDED = {name for name in ATTACKS.names() if ATTACKS.get(name).norm == "Linf"}


def test_every_attack_declares_tiny_settings_that_build():
    for name in ATTACKS.names():
        assert isinstance(ATTACKS.get(name).__dict__.get("tiny_params"), dict), f"{name} declares no tiny_params"
        build_attack(name, **FAST[name])


def run(name, model, x, y, **extra):
    attack = build_attack(name, **{**FAST[name], **extra})
    target = (y + 1) % 10 if not attack.supports_untargeted else None
    return attack(model, x, y, target=target, generator=gen(0))


@pytest.mark.parametrize("name", sorted(FAST))
def test_invariants(name, small_lenet, images, labels):
    small_lenet.train(False)
    before = [m.active for m in small_lenet.dropouts()]
    result = run(name, small_lenet, images, labels, eval_samples=5)
    assert isinstance(result, AttackResult)
    assert result.x_adv.shape == images.shape and result.x_adv.dtype == images.dtype
    assert float(result.x_adv.min()) >= 0.0 and float(result.x_adv.max()) <= 1.0
    assert result.success.dtype == torch.bool and result.success.shape == (len(images),)
    assert result.predictive.num_samples == 5 and result.predictive.num_examples == len(images)
    assert small_lenet.training is False and [m.active for m in small_lenet.dropouts()] == before
    if name in EPS_BOUNDED:
        assert float(result.linf.max()) <= FAST[name]["eps"] + 1e-6
    if name == "jsma":
        assert int(result.l0.max()) <= math.floor(784 * FAST["jsma"]["gamma"])
    summary = result.summary()
    assert 0.0 <= summary["success_rate"] <= 1.0 and summary["entropy"] >= 0.0
    assert result.params["attack"] == name and result.params["model_mode"] == "mc_dropout"


@pytest.mark.parametrize("name", sorted(FAST))
def test_deterministic_for_a_seed(name, small_lenet, images, labels):
    a = run(name, small_lenet, images[:6], labels[:6], eval_samples=3)
    b = run(name, small_lenet, images[:6], labels[:6], eval_samples=3)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.success, b.success)


@pytest.mark.parametrize("name", sorted(FAST))
def test_bad_arguments(name, small_lenet, images, labels):
    attack = build_attack(name, **FAST[name])
    target = (labels + 1) % 10 if not attack.supports_untargeted else None
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        attack(small_lenet, images * 1.5, labels, target=target)
    bad = images.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        attack(small_lenet, bad, labels, target=target)
    with pytest.raises(InputError, match="shape"):
        attack(small_lenet, images[:, 0], labels, target=target)
    with pytest.raises(InputError, match="shape"):
        attack(small_lenet, images, labels[:3], target=target)
    if attack.supports_targeted:
        with pytest.raises(InputError, match="target equals the true label"):
            attack(small_lenet, images, labels, target=labels.clone())
    if not attack.supports_untargeted:
        with pytest.raises(InputError, match="targeted attack"):
            attack(small_lenet, images, labels)


def test_negative_and_unknown_hyperparameters():
    for name in ("fgsm", "sign_noise", "bim"):
        with pytest.raises(ConfigError, match="eps must be >= 0"):
            build_attack(name, eps=-0.1)
    with pytest.raises(ConfigError, match="unknown parameter 'epsilon'"):
        build_attack("fgsm", epsilon=0.1)
    with pytest.raises(ConfigError, match="variant"):
        build_attack("bim", variant="C")
    with pytest.raises(ConfigError, match="gamma"):
        build_attack("jsma", gamma=0.0)



def test_run_parameters_override_suite_defaults():
    """A run that sets its own ``eot_samples`` (the adaptive form spelled out) must not collide with the
    suite-wide default passed beside it."""
    attack = build_attack("cw_l2", {"eval_samples": 5, "eot_samples": 1}, eot_samples=10, kappa=5.0)
    assert (attack.eot_samples, attack.eval_samples, attack.kappa) == (10, 5, 5.0)
    assert build_attack("fgsm", {"eot_samples": 3}, eps=0.1).eot_samples == 3
    with pytest.raises(ConfigError, match="unknown parameter 'epsilon'"):
        build_attack("fgsm", {"epsilon": 0.1})

def softmax_regression(weight: torch.Tensor, bias: torch.Tensor):
    model = build_model("mlp", mode="plain", hidden=(), input_dropout=0.0, bias=True, init_std=0.0)
    linear = model.head[-1] if len(model.head) else model.trunk[-1]
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return model


def test_fgsm_on_linear_softmax_equals_closed_form(images, labels):
    """For logits Wx + b, ∇ₓ CE = Wᵀ(softmax(Wx + b) − onehot(y)), so FGSM has a closed form."""
    g = gen(4)
    w, b = torch.randn(10, 784, generator=g) * 0.05, torch.randn(10, generator=g) * 0.1
    model = softmax_regression(w, b)
    eps = 0.1
    flat = images.flatten(1)
    p = torch.softmax(flat @ w.T + b, -1)
    grad = (p - torch.nn.functional.one_hot(labels, 10).float()) @ w
    expected = (flat + eps * grad.sign()).clamp(0, 1).view_as(images)
    result = build_attack("fgsm", eps=eps)(model, images, labels)
    assert torch.allclose(result.x_adv, expected, atol=1e-6)
    targeted = build_attack("fgsm", eps=eps)(model, images, labels, target=(labels + 3) % 10)
    grad_t = (p - torch.nn.functional.one_hot((labels + 3) % 10, 10).float()) @ w
    assert torch.allclose(targeted.x_adv, (flat - eps * grad_t.sign()).clamp(0, 1).view_as(images), atol=1e-6)


@pytest.mark.slow
def test_fgsm_breaks_logistic_regression_as_goodfellow_reports():
    """Goodfellow et al.: a shallow softmax classifier has ~99.9% error at ε = 0.25 on MNIST."""
    from bayesrobust.data import load_dataset

    train, test = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    torch.manual_seed(0)
    model = build_model("mlp", mode="plain", hidden=(), input_dropout=0.0, bias=True, init_std=0.0)
    model.fit(train, TrainSection(optimizer="adam", lr=1e-2, epochs=10, batch_size=100), seed=0, progress=False)
    clean = model.predictive(test.images)
    assert clean.accuracy(test.labels) > 0.85
    result = build_attack("fgsm", eps=0.25)(model, test.images, test.labels)
    error = 1 - result.predictive.accuracy(test.labels)
    assert error > 0.97


def test_eot_samples_average_dropout_gradients(small_lenet, images, labels):
    """With more dropout masks per gradient the FGSM direction is more stable across seeds."""
    def direction(samples, seed):
        attack = build_attack("fgsm", eps=0.1, eot_samples=samples, eval_samples=2)
        return (attack(small_lenet, images[:4], labels[:4], generator=gen(seed)).x_adv - images[:4]).sign()

    agree_1 = (direction(1, 1) == direction(1, 2)).float().mean()
    agree_64 = (direction(64, 1) == direction(64, 2)).float().mean()
    assert agree_64 > agree_1


def test_bim_a_stops_at_first_success_and_b_runs_all_steps(small_lenet, images, labels):
    a = build_attack("bim", eps=0.3, alpha=0.05, steps=8, variant="A", eval_samples=2)(small_lenet, images, labels, generator=gen())
    b = build_attack("bim", eps=0.3, alpha=0.05, steps=8, variant="B", eval_samples=2)(small_lenet, images, labels, generator=gen())
    assert torch.all(b.iterations == 8)
    assert float(a.iterations.float().mean()) < 8
    assert float(a.linf.mean()) <= float(b.linf.mean())


def test_cw_moves_pixels_that_start_at_zero_or_one(small_lenet, images, labels):
    """The scale inside the tanh keeps atanh finite at 0 and 1, so Adam can move those pixels."""
    attack = build_attack("cw_l2", steps=200, binary_search_steps=3, initial_const=100.0, lr=0.1)
    result = attack(small_lenet.with_mode("plain"), images[:4], labels[:4])
    assert bool(result.success.all())
    x, delta = images[:4], (result.x_adv - images[:4]).abs()
    at_bounds = (x == 0) | (x == 1)
    assert float(at_bounds.float().mean()) > 0.5
    assert float(delta[at_bounds].max()) > 0.1  # stuck pixels (infinite atanh) would not move at all
    assert float((delta[at_bounds] > 1e-3).float().mean()) > 0.05


def test_sign_noise_is_exactly_eps_where_not_clipped(small_lenet, images, labels):
    result = build_attack("sign_noise", eps=0.2)(small_lenet, images, labels, generator=gen(3))
    delta = (result.x_adv - images).abs()
    interior = (images + 0.2 <= 1) & (images - 0.2 >= 0)
    assert torch.allclose(delta[interior], torch.full_like(delta[interior], 0.2), atol=1e-6)


def test_a_penalty_keeps_another_models_score_under_its_cap(small_lenet, images, labels):
    """A detector-aware attack: with a penalty on a differentiable score of x* (here the distance to a
    blurred copy of each digit, standing in for a VAE's reconstruction error), BIM's successful examples
    score lower on it than without the penalty, and success is still judged on the classifier alone."""
    from bayesrobust.attacks.base import Penalty

    model = small_lenet.with_mode("plain")
    blurred = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1)

    def reconstruction_error(x):
        return (x - blurred[: len(x)]).flatten(1).pow(2).sum(1)

    plain = build_attack("bim", eps=0.3, alpha=0.01, steps=40, variant="B")(model, images, labels)
    cap = float(reconstruction_error(images).quantile(0.95))
    aware_attack = build_attack("bim", eps=0.3, alpha=0.01, steps=40, variant="B")
    aware = aware_attack.with_penalty(Penalty("blur distance", reconstruction_error, cap, weight=5.0))(model, images, labels)
    both = plain.success & aware.success
    assert int(both.sum()) >= 10
    assert reconstruction_error(aware.x_adv)[both].mean() < 0.8 * reconstruction_error(plain.x_adv)[both].mean()
    assert aware_attack.hyperparameters()["penalty"] == "blur distance"


def test_an_iterative_attack_call_shows_progress_only_when_slow_and_never_when_asked_not(monkeypatch, capsys):
    """From Python, an iterative attack shows a bar over its steps once the call has run PROGRESS_DELAY
    seconds (here 0), none for a quick call at the default delay, none with progress=False or quiet."""
    from bayesrobust import progress, wrap
    from bayesrobust.attacks import base
    from tests.user_nets import PlainMLP

    monkeypatch.setattr(progress, "_QUIET", {"value": False})
    torch.manual_seed(0)
    model = wrap(PlainMLP(), "deterministic")  # a network the toolkit did not define
    x, y = torch.rand(8, 1, 28, 28, generator=gen(0)), torch.arange(8) % 10
    bim = build_attack("bim", eps=0.1, alpha=0.01, steps=4)
    bim(model, x, y)
    assert "bim steps" not in capsys.readouterr().err  # quick: under the 3 s delay
    monkeypatch.setattr(base, "PROGRESS_DELAY", 0.0)
    bim(model, x, y)
    assert "bim steps" in capsys.readouterr().err
    bim(model, x, y, progress=False)
    assert capsys.readouterr().err == ""
    with progress.quiet_unless(False):
        bim(model, x, y)
    assert capsys.readouterr().err == ""
