"""The calibration suite: its metrics on a hand-built predictive, its attacks, its config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesrobust.config import config_from_dict
from bayesrobust.errors import ConfigError
from bayesrobust.predictive import Predictive
from bayesrobust.suites.calibration import (
    CalibrationAttack,
    CalibrationSection,
    adversarial_confidence,
    calibration_metrics,
)


def test_metrics_of_a_hand_built_predictive():
    """Four examples, two classes: confidences 0.875, 0.875, 0.625, 0.625 (exact in float32), the first
    three right."""
    probs = torch.tensor([[0.875, 0.125], [0.875, 0.125], [0.375, 0.625], [0.625, 0.375]])
    labels = torch.tensor([0, 0, 1, 1])
    pred = Predictive(probs[None])
    values, bins = calibration_metrics(pred, labels, CalibrationSection(bins=10, bootstrap=100), seed=0)
    assert values["acc"] == 0.75
    assert values["nll"] == pytest.approx(-np.log([0.875, 0.875, 0.625, 0.375]).mean())
    assert values["brier"] == pytest.approx(np.mean([0.03125, 0.03125, 0.28125, 0.78125]))
    # bins (0.8, 0.9]: two examples, confidence 0.875, accuracy 1; (0.6, 0.7]: two, confidence 0.625, accuracy 0.5
    assert values["ece"] == pytest.approx(0.5 * 0.125 + 0.5 * 0.125)
    assert values["mce"] == pytest.approx(0.125)
    assert values["acc_low"] <= values["acc"] <= values["acc_high"]
    assert bins["count"].sum() == 4 and bins["count"][8] == 2 and bins["count"][6] == 2
    unbootstrapped, _ = calibration_metrics(pred, labels, CalibrationSection(bins=10, bootstrap=0), seed=0)
    assert "ece_low" not in unbootstrapped and unbootstrapped["ece"] == values["ece"]


def test_confidence_under_attack(small_lenet, digits5k):
    _, test = digits5k
    subset = test.head(40, seed=0)
    out = adversarial_confidence(small_lenet, subset, CalibrationAttack("fgsm", {"eps": 0.3}),
                                 CalibrationSection(samples=4, adaptive_eot_samples=2), seed=0)
    clean = small_lenet.predictive(subset.images, 4, generator=torch.Generator().manual_seed(0)).accuracy(subset.labels)
    assert out["accuracy"] < clean and 0 < out["confidence_wrong"] <= 1 and out["entropy"] > 0


@pytest.mark.parametrize("change, message", [
    ({"scheme": "quantile"}, "calibration.scheme"),
    ({"bins": 0}, "calibration.bins"),
    ({"bootstrap": -1}, "calibration.bootstrap"),
    ({"attacks": {"f": {"attack": "fgsm", "params": {"eps": "big"}}}}, "calibration.attacks.f.params.eps"),
    ({"resamples": 5}, "resamples"),
])
def test_calibration_config_errors_name_their_key(change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"models": {"m": {"arch": "lenet"}}, "calibration": change})
