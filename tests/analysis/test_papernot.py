"""Papernot et al.'s hardness and adversarial distance on hand-built cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesrobust.analysis.papernot import adversarial_distance, hardness
from bayesrobust.models import build_model


def test_hardness_integrates_from_tau_zero():
    """τ = 0, ½, 1 at three budgets; ε undefined at τ = 0, 0.02 and 0.03 after; the first success cost
    0.015. H = ½·(0.015 + 0.02)/2 + ½·(0.02 + 0.03)/2 = 0.02125 (setting ε = 0 at τ = 0 gave 0.0175)."""
    tau = np.zeros((3, 10, 10))
    eps = np.full((3, 10, 10), np.nan)
    first = np.full((10, 10), np.nan)
    tau[:, 2, 7] = [0.0, 0.5, 1.0]
    eps[1:, 2, 7] = [0.02, 0.03]
    first[2, 7] = 0.015
    tau[:, 3, 1] = [0.4, 0.4, 0.4]  # no progress with budget: the curve is one segment from τ = 0
    eps[:, 3, 1] = [0.01, 0.01, 0.01]
    first[3, 1] = 0.005
    h = hardness(tau, eps, first)
    assert h[2, 7] == pytest.approx(0.02125)
    assert h[3, 1] == pytest.approx(0.4 * (0.005 + 0.01) / 2)
    assert np.isnan(h[0, 1])  # never succeeded: undefined, not "easy"


def bright_pixel_network():
    """ReLU net whose Jacobian depends on the input: hidden unit i = relu(x_i − ½); class 0 sums the
    hidden units, classes 1–9 subtract them. So pixel i is salient for target 0 exactly when
    x_i > ½ (α_i = 1, β_i = −9), and never for other targets: A(X, 0) = 1 − (share of bright pixels),
    A(X, t ≠ 0) = 1."""
    model = build_model("mlp", mode="plain", hidden=(784,), input_dropout=0.0, hidden_dropout=0.0, bias=True, init_std=0.0)
    first, second = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        first.weight.copy_(torch.eye(784))
        first.bias.fill_(-0.5)
        second.weight.fill_(-1.0)
        second.weight[0] = 1.0
        second.bias.zero_()
    return model


def test_robustness_is_the_minimum_over_individual_pairs(digits5k):
    x, y = digits5k[1].images[:60], digits5k[1].labels[:60]
    per_example, means = adversarial_distance(bright_pixel_network(), x, y, eot_samples=1, generator=None)
    bright = (x.flatten(1) > 0.5).float().mean(1).numpy()
    labels = y.numpy()
    expected = np.where(labels != 0, 1.0 - bright, np.nan)
    np.testing.assert_allclose(per_example[:, 0], expected, atol=1e-6)
    others = np.delete(per_example, 0, axis=1)
    assert np.all(np.isnan(others[np.arange(60), labels - 1][labels > 0])) and np.nanmin(others) == 1.0
    r_f = np.nanmin(per_example)
    assert r_f == pytest.approx(float(np.min(expected[labels != 0])))
    class_means = [np.mean(1.0 - bright[labels == s]) for s in range(1, 10) if (labels == s).any()]
    np.testing.assert_allclose(means[1:, 0][~np.isnan(means[1:, 0])], class_means, atol=1e-6)
    assert r_f < np.nanmin(means) - 0.01  # the old "minimum of the class-pair means" overstated R(F)
