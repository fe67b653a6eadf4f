"""Contract tests every registered model must pass, plus exact checks of MC dropout."""

from __future__ import annotations

import pytest
import torch

from bayesrobust.config import TrainSection
from bayesrobust.errors import CheckpointError, ConfigError, InputError
from bayesrobust.models import MODELS, BayesianClassifier, MCDropout, build_model
from tests.conftest import gen, tiny_models

MODELS_UNDER_TEST = tiny_models()


def test_every_architecture_is_covered():
    assert {name.split("-")[0] for name in MODELS_UNDER_TEST} >= set(MODELS.names()) - {"softmax"}


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_predictive_contract(name, images):
    model = MODELS_UNDER_TEST[name]()
    pred = model.predictive(images, samples=7, generator=gen())
    expected_s = 7 if model.stochastic else 1
    assert pred.probs.shape == (expected_s, len(images), 10)
    assert torch.allclose(pred.probs.sum(-1), torch.ones(expected_s, len(images)), atol=1e-5)
    if model.stochastic:
        assert float(pred.mutual_information.mean()) > 0
    else:
        assert torch.all(pred.mutual_information == 0)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_modes_are_untouched(name, images):
    model = MODELS_UNDER_TEST[name]()
    for training in (True, False):
        model.train(training)
        model.predictive(images[:2], samples=3)
        model.log_prob(images[:2], samples=3).sum().backward()
        model.logits(images[:2])
        assert model.training is training
        assert all(m.active is None and m.generator is None for m in model.dropouts())


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_same_generator_same_numbers(name, images):
    model = MODELS_UNDER_TEST[name]()
    a = model.predictive(images, 5, generator=gen(3)).probs
    b = model.predictive(images, 5, generator=gen(3)).probs
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_log_prob_is_differentiable_in_the_input(name, images):
    model = MODELS_UNDER_TEST[name]()
    x = images[:4].clone().requires_grad_(True)
    lp = model.log_prob(x, samples=4, generator=gen())
    assert lp.shape == (4, 10)
    assert torch.allclose(lp.exp().sum(-1), torch.ones(4), atol=1e-5)
    lp[:, 0].sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


@pytest.mark.parametrize("name", MODELS_UNDER_TEST)
def test_save_load_round_trip(name, images, tmp_path):
    model = MODELS_UNDER_TEST[name]()
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


def test_batched_mc_equals_naive_loop_with_identical_masks(images, monkeypatch):
    """The shared-trunk replicated head gives exactly the outputs of S full forward passes when
    both see the same dropout masks."""
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16)
    s, x = 6, images[:5]
    recorded: dict[int, list[torch.Tensor]] = {}
    original = MCDropout.sample_keep

    def record(self, shape, device):
        keep = original(self, shape, device)
        recorded.setdefault(id(self), []).append(keep.reshape(s, x.shape[0], -1))
        return keep

    monkeypatch.setattr(MCDropout, "sample_keep", record)
    batched = model.sample_logits(x, s, generator=gen())
    masks = {k: torch.cat(v, 0) for k, v in recorded.items()}
    monkeypatch.setattr(MCDropout, "sample_keep", original)

    naive = []
    for i in range(s):
        def replay(self, shape, device, i=i):
            return masks[id(self)][i].reshape(shape)

        monkeypatch.setattr(MCDropout, "sample_keep", replay)
        with model.dropout_sampling(True):
            naive.append(model(x))
    assert torch.allclose(batched, torch.stack(naive), atol=1e-5)


def test_mc_chunking_happens_and_is_exact(images, monkeypatch):
    """Forcing several chunks: the head really runs chunk by chunk, and the predictive is bit-identical
    to the single-chunk one (each dropout layer draws sample by sample from its own stream)."""
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16)
    whole = model.predictive(images, 9, generator=gen(1)).probs
    import bayesrobust.models.base as base

    calls = []
    original = model.head[0].replicate
    monkeypatch.setattr(model.head[0], "replicate", lambda h, s: calls.append(s) or original(h, s))
    monkeypatch.setattr(base, "MC_CHUNK_ELEMENTS", 8 * 7 * 7 * len(images) * 2)  # two samples per chunk
    chunked = model.predictive(images, 9, generator=gen(1)).probs
    assert calls == [2, 2, 2, 2, 1]
    assert torch.equal(chunked, whole)
    assert len(model.dropouts()) == 2  # both the replicated and the later dropout layer are covered
    again = model.predictive(images, 9, generator=gen(2)).probs
    assert not torch.equal(again, whole)  # and the masks do depend on the generator


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


def test_dropout_probability_too_close_to_one_is_refused():
    from bayesrobust.models.layers import MCDropout

    assert MCDropout(1 - 2.0**-16).p < 1
    for p in (1 - 2.0**-18, 1.0, -0.1):
        with pytest.raises(ValueError, match="dropout probability"):
            MCDropout(p)


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


def test_dropout_rate_and_scaling_are_exact_in_expectation():
    layer = MCDropout(0.2)
    layer.active, layer.generator = True, gen(0)
    x = torch.ones(200_000)
    out = layer(x)
    assert abs(float((out == 0).float().mean()) - 0.2) < 0.005
    assert abs(float(out.mean()) - 1.0) < 0.01


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


def test_training_is_deterministic_for_a_seed(digits5k):
    train = digits5k[0].head(300)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mlp", mode="mc_dropout", hidden=(16,))
        model.fit(train, TrainSection(optimizer="rmsprop", epochs=1, batch_size=50), seed=5, progress=False)
        outs.append(model.logits(train.images[:8]))
    assert torch.equal(outs[0], outs[1])


def test_trained_lenet_is_accurate(trained_lenet, digits5k):
    pred = trained_lenet.predictive(digits5k[1].images, 20, generator=gen())
    assert pred.accuracy(digits5k[1].labels) > 0.85


def test_autoencoder_pretraining_reduces_reconstruction_loss(digits5k):
    from bayesrobust.models.training import pretrain_autoencoder

    torch.manual_seed(0)
    model = build_model("ae_softmax", mode="plain", code=32, pretrain_epochs=3)
    losses = pretrain_autoencoder(model.encoder(), model.decoder, digits5k[0], TrainSection(batch_size=64),
                                  epochs=3, seed=0, progress=False)
    assert losses[-1] < losses[0]
    model.fit(digits5k[0], TrainSection(lr=1e-2, epochs=4, batch_size=64), seed=0, progress=False)
    assert model.predictive(digits5k[1].images).accuracy(digits5k[1].labels) > 0.7


def test_with_mode_shares_weights(images):
    model = build_model("lenet", mode="plain", channels=(4, 8), hidden=16)
    twin = model.with_mode("mc_dropout")
    assert model.with_mode("plain") is model and twin.stochastic and not model.stochastic
    assert torch.equal(twin.logits(images), model.logits(images))
    assert twin.predictive(images, 5, generator=gen()).num_samples == 5
