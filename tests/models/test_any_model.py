"""Any model in: the draw protocol, wrapped user networks and deep ensembles, checked on every family
(the contract tests in test_models.py run on the same list) and on plain networks the toolkit did not
define (tests/user_nets.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bayesrobust import Draws, wrap
from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.config import TrainSection
from bayesrobust.errors import CheckpointError, ConfigError, InputError
from bayesrobust.models import BayesianClassifier, DeepEnsemble, build_model
from bayesrobust.models.temperature import fit_temperature
from tests.conftest import gen, model_inputs, tiny_attack, tiny_models
from tests.user_nets import ColourCNN, DropoutBatchNormCNN, PlainMLP

MODELS_UNDER_TEST = tiny_models()


def _labels(model, n: int) -> torch.Tensor:
    return torch.arange(n) % model.num_classes


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_draw_protocol_says_how_many_draws_every_path_gives(name, images):
    """S is what the protocol says — for a full batch, for some rows, for no rows, and in what an
    attack's judge records — whatever the caller asks for."""
    model = MODELS_UNDER_TEST[name]()
    x = model_inputs(model, images)[:6]
    for asked in (1, 3, 9):
        expected = {Draws.SAMPLED: asked, Draws.FIXED: model.draw_count(1), Draws.NONE: 1}[model.draws]
        assert model.draw_count(asked) == expected
        assert model.predictive(x, asked, generator=gen()).num_samples == expected
        assert model.predictive_rows(x, torch.tensor([1, 4]), asked, generator=gen()).num_samples == expected
        assert model.predictive_rows(x, torch.tensor([], dtype=torch.long), asked, generator=gen()).num_samples == expected
        assert model.sample_logits(x, asked, generator=gen()).shape[0] == expected
    if model.draws is Draws.FIXED:
        assert model.draw_count(50) == len(model.members)
    result = build_attack("fgsm", eps=0.05, eval_samples=4)(model, x, _labels(model, len(x)), generator=gen())
    assert result.params["judge_samples"] == result.predictive.num_samples == model.draw_count(4)
    if not model.draws.random:  # no other draws to re-judge on
        assert torch.equal(result.success, result.success_fresh)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_every_submodule_keeps_its_training_flag_and_no_gradient_is_touched(name, images):
    """Whatever mix of train/eval flags the user left on the modules, predicting, differentiating and
    attacking leave every flag as it was and every parameter's ``.grad`` None."""
    model = MODELS_UNDER_TEST[name]()
    x = model_inputs(model, images)[:4]
    modules = list(model.modules())
    for i, m in enumerate(modules):
        m.training = i % 3 == 0
    before = [m.training for m in modules]
    model.predictive(x, 3, generator=gen())
    model.logits(x)
    xg = x.clone().requires_grad_(True)
    torch.autograd.grad(model.log_prob(xg, 3, generator=gen())[:, 0].sum(), xg)
    build_attack("bim", eps=0.05, alpha=0.02, steps=2, eot_samples=2, eval_samples=3)(
        model, x, _labels(model, len(x)), generator=gen())
    assert [m.training for m in modules] == before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", [n for n in MODELS_UNDER_TEST if n.startswith(("wrapped", "ensemble"))])
def test_bad_inputs_for_a_brought_model_are_clear_errors(name, images):
    model = MODELS_UNDER_TEST[name]()
    x = model_inputs(model, images)[:4]
    wrong_shape = torch.rand(4, 1, 20, 20) if tuple(model.input_shape) != (1, 20, 20) else torch.rand(4, 3, 32, 32)
    with pytest.raises(InputError, match="shape"):
        model.predictive(wrong_shape)
    with pytest.raises(InputError, match=rf"\[0, {model.num_classes}\)"):
        build_attack("fgsm", eps=0.1)(model, x, torch.full((4,), model.num_classes))
    with pytest.raises(InputError, match="NaN"):
        model.predictive(x.clone().index_fill_(0, torch.tensor([0]), float("nan")))


def test_a_network_of_another_shape_or_class_count_is_refused_clearly():
    with pytest.raises(InputError, match=r"failed on inputs of shape \(2, 1, 28, 28\).*input_shape"):
        wrap(ColourCNN())  # an SVHN-shaped network under the default digit shape
    model = wrap(ColourCNN(classes=7), input_shape=(3, 32, 32))
    assert model.num_classes == 7 and model.input_shape == (3, 32, 32)
    with pytest.raises(InputError, match=r"must return logits \(4, 10\), returned \(4, 7\)"):
        wrap(ColourCNN(classes=7), input_shape=(3, 32, 32), num_classes=10).logits(torch.rand(4, 3, 32, 32))
    with pytest.raises(ConfigError, match="has none with p > 0"):
        wrap(PlainMLP(), "mc_dropout")
    with pytest.raises(InputError, match="torch.nn.Module"):
        wrap(lambda x: x)


def test_wrapped_mc_dropout_uses_the_users_dropout_and_keeps_batchnorm_in_evaluation():
    """Dropout alone is random inside the predictive: the deterministic logits are the network's own
    evaluation-mode output, the MC draws differ from one another and from row to row, average to the
    deterministic logits (inverted dropout is unbiased before a linear layer), and the caller's global
    RNG is left as it was."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(784), nn.Dropout(0.5), nn.Linear(784, 10))
    with torch.no_grad():
        net[1].running_mean.uniform_(0.0, 0.3)
    x = torch.rand(8, 1, 28, 28, generator=gen(1))
    model = wrap(net, "mc_dropout")
    net.train(True)  # a fresh user module is in training mode: the predictive must not care
    reference = net.eval()(x)
    net.train(True)
    assert torch.allclose(model.logits(x), reference, atol=1e-6)
    state = torch.get_rng_state()
    draws = model.sample_logits(x, 4000, generator=gen(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert net.training and all(m.training for m in net.modules())
    assert not torch.allclose(draws[0], draws[1]) and not torch.allclose(draws[0, 0], draws[0, 1])
    spread = draws.std(0) / math.sqrt(draws.shape[0])
    assert torch.all((draws.mean(0) - reference).abs() < 5 * spread + 1e-4)
    assert torch.equal(draws, model.sample_logits(x, 4000, generator=gen(2)))  # same generator, same masks


def test_generic_mc_dropout_chunks_give_the_same_distribution(monkeypatch):
    """The replicated batch is chunked to bound memory; small chunks give a predictive of the same
    draws' shape and (for many draws) the same mean."""
    from bayesrobust.models import wrapped

    model = wrap(DropoutBatchNormCNN(), "mc_dropout")
    x = torch.rand(5, 1, 28, 28, generator=gen(3))
    whole = model.predictive(x, 400, generator=gen(4)).mean
    monkeypatch.setattr(wrapped, "MC_CHUNK_INPUT_ELEMENTS", 5 * 784 * 7)  # 7 draws a chunk
    chunked = model.predictive(x, 400, generator=gen(4))
    assert chunked.num_samples == 400 and torch.allclose(chunked.mean, whole, atol=0.05)


def test_external_state_dict_errors_list_the_keys(tmp_path):
    net = DropoutBatchNormCNN(width=3)
    path = tmp_path / "weights.pt"
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["classifier.5.bias"]
    torch.save(state, path)
    model = build_model("tests.user_nets:DropoutBatchNormCNN", width=3)
    with pytest.raises(CheckpointError, match=r"missing keys classifier\.5\.bias; unexpected keys extra\.weight"):
        model.load_network_weights(path)
    torch.save({"state_dict": net.state_dict()}, path)  # Lightning-style nesting
    assert torch.equal(model.load_network_weights(path).logits(torch.zeros(1, 1, 28, 28)), wrap(net).logits(torch.zeros(1, 1, 28, 28)))
    with pytest.raises(CheckpointError, match="not found"):
        model.load_network_weights(tmp_path / "absent.pt")
    ours = model.save(tmp_path / "ours.pt")
    with pytest.raises(CheckpointError, match="is a bayesrobust checkpoint"):
        model.load_network_weights(ours)
    with pytest.raises(CheckpointError, match="load_network_weights"):  # the hint from the other side
        BayesianClassifier.load(path)


def test_a_network_defined_in_a_function_loads_with_an_instance(tmp_path):
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    model = wrap(Local())
    path = model.save(tmp_path / "local.pt")
    with pytest.raises(ConfigError, match=r"load\(path, network=net\)"):
        BayesianClassifier.load(path)
    loaded = BayesianClassifier.load(path, network=Local())
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded.logits(x), model.logits(x))


def test_ensemble_members_train_with_their_own_seeds_and_temperature_applies(digits5k):
    train, test = digits5k
    torch.manual_seed(0)
    model = build_model("ensemble", members=3, member={"arch": "tests.user_nets:PlainMLP", "params": {"hidden": 16}})
    model.fit(train, TrainSection(epochs=3, batch_size=32), val=test, seed=1, progress=False)
    assert [r["member"] for r in model.history_] == [0, 0, 0, 1, 1, 1, 2, 2, 2] and model.epochs_run() == 3.0
    pred = model.predictive(test.images)
    assert pred.num_samples == 3 and pred.accuracy(test.labels) > 0.8
    assert float(pred.mutual_information.mean()) > 0  # the members disagree somewhere
    members = model.members
    assert not torch.allclose(members[0].network.net[1].weight, members[1].network.net[1].weight)
    t = fit_temperature(model, test.images[:150], test.labels[:150])
    assert t != 1.0 and torch.allclose(model.sample_logits(test.images[:4]) * t,
                                       torch.stack([m.logits(test.images[:4]) for m in members]), atol=1e-4)
    single = DeepEnsemble(models=[members[0]])
    assert single.draw_count(9) == 1 and single.describe()["params"]["members"] == 1


def test_ensembles_of_disagreeing_members_refuse_mixed_shapes():
    with pytest.raises(ConfigError, match="members must agree"):
        DeepEnsemble(models=[wrap(PlainMLP()), wrap(ColourCNN(), input_shape=(3, 32, 32))])
    with pytest.raises(ConfigError, match="cannot itself be an ensemble"):
        build_model("ensemble", members=2, member={"arch": "ensemble"})
    with pytest.raises(ConfigError, match="a member is"):
        build_model("ensemble", members=2, member={"arch": "lenet", "depth": 3})


def test_the_triptych_capability_is_asked_of_the_model():
    """Choi's MC-dropout check asks the model for its dropout twin, not for a mode or architecture."""
    assert wrap(DropoutBatchNormCNN()).mc_dropout_twin().draws is Draws.SAMPLED
    assert wrap(PlainMLP()).mc_dropout_twin() is None
    assert build_model("lenet", mode="plain", channels=(4, 8), hidden=16).mc_dropout_twin().draws is Draws.SAMPLED
    assert build_model("ensemble", members=2, member={"arch": "tests.user_nets:PlainMLP"}).mc_dropout_twin() is None


def test_wrapping_never_moves_batchnorm_statistics():
    """Inferring the class count, predicting and attacking run BatchNorm on its running statistics
    even when the user left the network in training mode."""
    net = DropoutBatchNormCNN()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    model = wrap(net, "mc_dropout")
    x = torch.rand(6, 1, 28, 28, generator=gen(5))
    model.predictive(x, 5, generator=gen())
    build_attack("bim", eps=0.05, alpha=0.02, steps=2, eot_samples=2)(model, x, torch.zeros(6, dtype=torch.long))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.fixture(scope="module")
def colour_model():
    """A 3×32×32, 7-class user CNN (SVHN's shape), wrapped with MC dropout."""
    torch.manual_seed(3)
    return wrap(ColourCNN(classes=7), "mc_dropout", input_shape=(3, 32, 32), samples=8)


def _colour_batch(n: int = 12):
    g = gen(11)
    return torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 7, (n,), generator=g)


@pytest.mark.parametrize("attack", ATTACKS.names())  # every registered attack: a new one is here by registering
def test_every_attack_runs_on_a_colour_network_of_seven_classes(attack, colour_model):
    x, y = _colour_batch()
    a = build_attack(attack, **tiny_attack(attack), eot_samples=2, eval_samples=4)
    target = (y + 1) % 7 if not a.supports_untargeted else None
    result = a(colour_model, x, y, target=target, generator=gen())
    assert result.x_adv.shape == x.shape and 0 <= float(result.x_adv.min()) and float(result.x_adv.max()) <= 1
    assert result.predictive.probs.shape == (4, len(x), 7)
    summary = result.summary()
    assert 0 <= summary["l0_fraction"] <= 1 and math.isfinite(summary["mi"])


def test_every_detector_scores_a_colour_network(colour_model):
    """Uncertainty scores, Alshemali's hybrid (its five crops of a 32×32 image), Feinman's KD + BU on
    the features the wrapper reads from the last linear layer's input, and one-class SVMs."""
    from bayesrobust.detection import HybridDetector, KernelDensityUncertainty, OneClassSVMDetector, UncertaintyDetector

    x, y = _colour_batch(70)
    train_y = torch.arange(len(x)) % 7  # KD needs training images of every class
    clean, suspicious = x[:20], (x[20:40] * 0.2 + 0.8).clamp(0, 1)
    detectors = [UncertaintyDetector(colour_model, "mi", samples=8), HybridDetector(colour_model, samples=8, crop=28),
                 KernelDensityUncertainty(colour_model, x, train_y, samples=8, bandwidth=1.0),
                 OneClassSVMDetector(colour_model, x, train_y, per_class=20, samples=8)]
    for detector in detectors:
        detector.fit(clean, suspicious)
        scores = detector.score(x[40:])
        assert scores.shape == (30,) and bool(torch.isfinite(torch.as_tensor(scores)).all()), type(detector).__name__
        assert detector.decide(x[40:]).shape == (30,)
    with pytest.raises(InputError, match=r"shape \(N, 3, 32, 32\)"):
        detectors[0].score(torch.rand(4, 1, 28, 28))


def test_calibration_metrics_take_any_class_count(colour_model):
    from bayesrobust.metrics.calibration import classwise_ece, expected_calibration_error

    x, y = _colour_batch(40)
    pred = colour_model.predictive(x, 8, generator=gen())
    conf = pred.confidence.numpy()
    correct = (pred.predicted == y).numpy()
    assert 0 <= float(expected_calibration_error(conf, correct)[0]) <= 1
    assert 0 <= float(classwise_ece(pred.mean.numpy(), y.numpy())[0]) <= 1
    assert pred.probs.shape[-1] == 7 and math.isfinite(pred.nll(y))


@pytest.mark.slow
def test_ensemble_members_train_as_parallel_ray_tasks_to_the_same_weights(digits5k):
    """``executor = "ray"``: members trained as Ray tasks (one core each) with their derived seeds are
    the members serial training with one thread gives."""
    pytest.importorskip("ray")
    train = digits5k[0].head(300, seed=0)
    spec = {"arch": "tests.user_nets:PlainMLP", "params": {"hidden": 8}}
    config = TrainSection(epochs=1, batch_size=50)
    models = {}
    for executor in ("serial", "ray"):
        torch.manual_seed(0)
        models[executor] = build_model("ensemble", members=2, member=spec, executor=executor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models["serial"].fit(train, config, seed=4, progress=False)
    finally:
        torch.set_num_threads(threads)
    models["ray"].fit(train, config, seed=4, progress=False)
    serial, parallel = models["serial"].state_dict(), models["ray"].state_dict()
    assert all(torch.allclose(serial[k], parallel[k], atol=1e-6) for k in serial)
    assert [r["member"] for r in models["ray"].history_] == [0, 1]
    assert not torch.equal(serial["members.0.network.net.1.weight"], serial["members.1.network.net.1.weight"])
