"""Robust accuracy against ε: exact on a hand-built linear network whose answer is known, never rising
with ε, and its configuration checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.analysis.robustness_curve import RobustnessCurveSection, robustness_curve, validate
from bayesrobust.errors import ConfigError
from tests.conftest import gen


class Brightness(nn.Module):
    """Class 0 when the mean pixel is above ``c``, class 1 below; every other class far behind. A user
    network the toolkit did not define, linear in the input."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        s = 50.0 * (x.flatten(1).mean(1) - self.c)
        rest = torch.full((x.shape[0], 8), -100.0)
        return torch.cat([s[:, None], -s[:, None], rest], dim=1)


def test_linf_robust_accuracy_is_exact_on_a_linear_network(digits5k):
    x = digits5k[1].head(60, seed=0).images
    mean = x.flatten(1).mean(1)
    c = float(mean.median())
    keep = (mean - c).abs() > 1e-4
    x, mean = x[keep], mean[keep]
    y = (mean < c).long()  # the network is right on every clean digit
    model = wrap(Brightness(c), input_shape=(1, 28, 28))
    grid = (0.0, 0.02, 0.05, 0.1, 0.3)
    section = RobustnessCurveSection(params={"steps": 10}, linf=grid, l2=(), resamples=200)
    metrics, arrays = robustness_curve("linear", model, x, y, section, eval_samples=1, batch_size=64, generator=gen(0), seed=0)
    flat = x.flatten(1)
    for eps in grid:  # the ball's worst case: every pixel moved ε towards the other class, inside [0, 1]
        darkest = (flat - eps).clamp(0, 1).mean(1)
        brightest = (flat + eps).clamp(0, 1).mean(1)
        robust = torch.where(y == 0, darkest > c, brightest < c).double().mean()
        key = f"robustness/linear/linf/{eps:g}/robust_accuracy"
        assert metrics[key] == pytest.approx(float(robust), abs=1e-12), eps
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"]
    assert metrics["robustness/linear/linf/0/robust_accuracy"] == 1.0
    assert metrics["robustness/linear/linf/0.3/robust_accuracy"] < 0.5  # the grid spans the interesting range
    assert arrays["robustness/linear/linf/robust"].shape == (len(grid), len(y))


def test_the_curve_never_rises_on_an_mc_dropout_lenet(small_lenet, digits5k):
    test = digits5k[1].head(24, seed=0)
    section = RobustnessCurveSection(params={"steps": 5}, linf=(0.3, 0.0, 0.1), l2=(0.0, 1.0, 2.0), eot_samples=2, resamples=100)
    metrics, arrays = robustness_curve("mc", small_lenet, test.images, test.labels, section, eval_samples=4, batch_size=24,
                                       generator=gen(0), seed=0)
    for norm, grid in (("linf", (0.0, 0.1, 0.3)), ("l2", (0.0, 1.0, 2.0))):
        robust = arrays[f"robustness/mc/{norm}/robust"]
        assert np.all(robust[1:] <= robust[:-1])  # once broken, broken at every larger ε
        values = [metrics[f"robustness/mc/{norm}/{e:g}/robust_accuracy"] for e in grid]
        assert values == sorted(values, reverse=True) and values[-1] < values[0]
        for e in grid:
            assert metrics[f"robustness/mc/{norm}/{e:g}/attack_robust_accuracy"] >= metrics[f"robustness/mc/{norm}/{e:g}/robust_accuracy"]


@pytest.mark.parametrize("section, message", [
    (RobustnessCurveSection(params={"eps": 0.1}), "set by the grid"),
    (RobustnessCurveSection(attack="fgsm"), "L∞ only"),
    (RobustnessCurveSection(linf=(0.0, 2.0)), "above 1"),
    (RobustnessCurveSection(linf=(), l2=()), "at least one"),
    (RobustnessCurveSection(linf=(0.1, 0.1)), "distinct"),
    (RobustnessCurveSection(targets="next"), "untargeted"),
    (RobustnessCurveSection(attack="nope"), "unknown attack"),
])
def test_bad_curve_configs_are_refused(section, message):
    with pytest.raises(ConfigError, match=message):
        validate(None, section, "attack.robustness_curve")
