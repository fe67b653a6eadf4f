"""The dropout family: exact checks of Monte-Carlo dropout (masks, chunking, rate), modes and training."""

from __future__ import annotations

import pytest
import torch

from bayesrobust.config import TrainSection
from bayesrobust.models import MCDropout, build_model
from tests.conftest import gen


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
    import bayesrobust.models.dropout as base

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


def test_dropout_probability_too_close_to_one_is_refused():
    from bayesrobust.models.layers import MCDropout

    assert MCDropout(1 - 2.0**-16).p < 1
    for p in (1 - 2.0**-18, 1.0, -0.1):
        with pytest.raises(ValueError, match="dropout probability"):
            MCDropout(p)


def test_dropout_rate_and_scaling_are_exact_in_expectation():
    layer = MCDropout(0.2)
    layer.active, layer.generator = True, gen(0)
    x = torch.ones(200_000)
    out = layer(x)
    assert abs(float((out == 0).float().mean()) - 0.2) < 0.005
    assert abs(float(out.mean()) - 1.0) < 0.01


def test_training_is_deterministic_for_a_seed(digits5k):
    train = digits5k[0].head(300)
    outs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("mlp", mode="mc_dropout", hidden=(16,))
        model.fit(train, TrainSection(optimizer="rmsprop", epochs=1, batch_size=50), seed=5, progress=False)
        outs.append(model.logits(train.images[:8]))
    assert torch.equal(outs[0], outs[1])


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
    assert model.with_mode("plain") is model and twin.draws.random and not model.draws.several
    assert torch.equal(twin.logits(images), model.logits(images))
    assert twin.predictive(images, 5, generator=gen()).num_samples == 5


def test_a_lenet_with_dropout_on_its_dense_layer_only(images):
    """``conv_dropout = 0`` (the TensorFlow tutorial net of Bradshaw et al.'s baseline): one dropout layer,
    before the output; the first dense layer joins the deterministic trunk MC dropout computes once, and
    the draws still differ."""
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16, conv_dropout=0.0)
    assert [m.p for m in model.dropouts()] == [0.5]
    assert isinstance(model.trunk[-1], torch.nn.ReLU) and isinstance(model.head[-1], torch.nn.Linear)
    with torch.no_grad():
        draws = model.sample_logits(images[:4], 5, generator=gen())
    assert float((draws[0] - draws[1]).abs().max()) > 0
    assert build_model("lenet", channels=(4, 8), hidden=16).params["conv_dropout"] == 0.5  # the default: both
