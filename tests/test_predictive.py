"""Every Predictive quantity against hand-computed answers."""

import math

import numpy as np
import pytest
import torch

from bayesrobust.errors import InputError
from bayesrobust.predictive import Predictive, log_mean_prob


def one_hot_pair():
    # two samples, one example, two classes: [1, 0] and [0, 1]
    return Predictive(torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))


def test_disagreeing_one_hot_samples_have_mi_ln2():
    p = one_hot_pair()
    assert p.mean.tolist() == [[0.5, 0.5]]
    assert p.entropy.item() == pytest.approx(math.log(2))
    assert p.expected_entropy.item() == pytest.approx(0.0, abs=1e-9)
    assert p.mutual_information.item() == pytest.approx(math.log(2))
    assert p.variance.item() == pytest.approx(0.5)  # std of {1, 0} is 0.5 for both classes
    assert p.variation_ratio.item() == pytest.approx(0.5)


def test_agreeing_samples_have_zero_epistemic_uncertainty():
    probs = torch.tensor([0.7, 0.2, 0.1]).expand(5, 4, 3).clone()
    p = Predictive(probs)
    expected_h = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert torch.allclose(p.entropy, torch.full((4,), expected_h))
    assert torch.allclose(p.expected_entropy, torch.full((4,), expected_h))
    assert torch.all(p.mutual_information == 0)
    assert torch.all(p.variance == 0)
    assert torch.all(p.variation_ratio == 0)
    assert p.predicted.tolist() == [0, 0, 0, 0]
    assert torch.allclose(p.confidence, torch.full((4,), 0.7))


def test_uniform_prediction_has_max_entropy():
    p = Predictive(torch.full((1, 2, 10), 0.1))
    assert torch.allclose(p.entropy, torch.full((2,), math.log(10)))


def test_nll_and_accuracy():
    probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
    p = Predictive(probs)
    y = torch.tensor([0, 1, 1])
    assert p.accuracy(y) == pytest.approx(2 / 3)
    assert p.nll(y) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    with pytest.raises(InputError):
        p.nll(torch.tensor([0, 1]))


def test_variation_ratio_counts_modal_votes():
    # 4 samples vote 0, 0, 1, 2 -> modal fraction 0.5
    probs = torch.tensor([[[0.9, 0.05, 0.05]], [[0.8, 0.1, 0.1]], [[0.1, 0.8, 0.1]], [[0.1, 0.1, 0.8]]])
    assert Predictive(probs).variation_ratio.item() == pytest.approx(0.5)


def test_indexing_and_concat_select_examples():
    probs = torch.softmax(torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0)), -1)
    p = Predictive(probs)
    assert p[:2].num_examples == 2 and p[:2].num_samples == 3
    joined = Predictive.concat([p[:2], p[2:]])
    assert torch.equal(joined.probs, p.probs)


def test_rejects_bad_shapes_and_nan():
    with pytest.raises(InputError):
        Predictive(torch.ones(3, 4))
    with pytest.raises(InputError):
        Predictive(torch.full((1, 2, 3), float("nan")))


def test_log_mean_prob_matches_log_of_mean():
    logp = torch.log_softmax(torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(1)), -1)
    assert torch.allclose(log_mean_prob(logp), torch.log(logp.exp().mean(0)), atol=1e-6)


def test_inference_data_export_has_sample_and_example_dims():
    probs = torch.softmax(torch.randn(6, 4, 10, generator=torch.Generator().manual_seed(2)), -1)
    idata = Predictive(probs).to_inference_data(torch.tensor([0, 1, 2, 3]))
    da = idata.posterior_predictive["probs"]
    assert da.dims == ("chain", "draw", "example", "class")
    assert da.shape == (1, 6, 4, 10)
    np.testing.assert_allclose(da.values[0], probs.numpy())
    assert idata.observed_data["label"].values.tolist() == [0, 1, 2, 3]


def test_nll_is_exact_on_confident_mistakes():
    """float32 probabilities underflow; with log-probabilities kept, a mistake at logit gap 100 costs
    100 nats, not the 27.6 a 1e-12 floor would give."""
    logits = torch.tensor([[[0.0, -100.0]]])
    pred = Predictive.from_logits(logits)
    assert pred.nll(torch.tensor([1])) == pytest.approx(100.0, rel=1e-6)
    floored = Predictive(pred.probs)  # probabilities only: the documented floor
    assert floored.nll(torch.tensor([1])) == pytest.approx(-math.log(1e-12), rel=1e-6)
    # two MC samples: log ½(e^−100 + e^−200) = −100 − ln 2 + log(1 + e^−100)
    two = Predictive.from_logits(torch.tensor([[[0.0, -100.0]], [[0.0, -200.0]]]))
    assert two.nll(torch.tensor([1])) == pytest.approx(100.0 + math.log(2), rel=1e-6)
    assert two[0:1].nll(torch.tensor([1])) == pytest.approx(100.0 + math.log(2), rel=1e-6)
    joined = Predictive.concat([two, two])
    assert joined.log_probs is not None and joined.nll(torch.tensor([1, 1])) == pytest.approx(100.0 + math.log(2), rel=1e-6)


def test_model_predictive_keeps_log_probabilities(trained_lenet, digits5k):
    pred = trained_lenet.predictive(digits5k[1].images[:8], 4, generator=torch.Generator().manual_seed(0))
    assert pred.log_probs is not None
    assert torch.allclose(pred.log_probs.exp(), pred.probs)


def test_an_exact_mean_replaces_the_monte_carlo_one():
    """A model's exact predictive (a GP's quadrature) drives the mean and everything built on it; the
    draws still give the expected entropy; indexing and concatenation keep it; bad shapes are refused."""
    draws = torch.tensor([[[0.9, 0.1]], [[0.9, 0.1]]])  # both draws agree: the MC mean would be 0.9
    exact = torch.log(torch.tensor([[0.6, 0.4]]))
    pred = Predictive(draws, None, exact)
    assert torch.allclose(pred.mean, torch.tensor([[0.6, 0.4]]))
    assert pred.log_likelihood(torch.tensor([1])).item() == pytest.approx(math.log(0.4))
    h = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
    h_draw = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert float(pred.entropy) == pytest.approx(h) and float(pred.expected_entropy) == pytest.approx(h_draw)
    assert float(pred.mutual_information) == pytest.approx(max(h - h_draw, 0.0))
    both = Predictive.concat([pred, pred[[0]]])
    assert both.mean_log_probs.shape == (2, 2) and torch.allclose(both.mean[1], pred.mean[0])
    with pytest.raises(InputError, match="mean_log_probs"):
        Predictive(draws, None, exact[0])


def test_summary_aggregates_like_an_attack_result_and_per_example_keeps_the_rows():
    """``summary()`` is aggregates (floats), as ``AttackResult.summary()``; ``per_example()`` the (N,)
    measures behind them."""
    p = one_hot_pair()
    rows = p.per_example()
    assert set(rows) >= {"predicted", "confidence", "entropy", "mutual_information", "variance"}
    assert all(v.shape == (1,) for v in rows.values())
    summary = p.summary(torch.tensor([0]))
    assert all(isinstance(v, float) for v in summary.values())
    assert summary["mutual_information"] == pytest.approx(math.log(2)) and summary["examples"] == 1.0
    assert summary["samples"] == 2.0 and summary["accuracy"] == 1.0 and summary["nll"] == pytest.approx(math.log(2))
    assert "accuracy" not in p.summary()


def test_log_mean_is_the_log_of_the_mean_and_stays_exact_far_in_the_tail():
    logits = torch.tensor([[[0.0, 1.0, -200.0]], [[2.0, -1.0, -300.0]]])  # (S=2, N=1, C=3)
    pred = Predictive.from_logits(logits)
    assert torch.allclose(pred.log_mean[:, :2], pred.mean[:, :2].log(), atol=1e-6)
    # by hand: the second sample's class-2 probability (≈ e^-302) is negligible beside the first's
    assert float(pred.log_mean[0, 2]) == pytest.approx(-200.0 - math.log(1 + math.e) - math.log(2), abs=1e-4)  # not floored at log 1e-30
    one = Predictive.from_logits(logits[:1])
    assert torch.allclose(one.log_mean, torch.log_softmax(logits[0], -1))
