"""Any suite on models in memory (``bayesrobust.run_suite``), tried on a plain user network."""

from __future__ import annotations

import pytest
import torch

from bayesrobust import run_suite, wrap
from bayesrobust.errors import ConfigError
from bayesrobust.metrics.calibration import expected_calibration_error
from tests.user_nets import DropoutBatchNormCNN


@pytest.fixture(scope="module")
def user_model(digits5k):
    torch.manual_seed(0)
    net = DropoutBatchNormCNN()
    return wrap(net.eval(), "mc_dropout", samples=4)


def test_the_attack_suite_on_a_wrapped_network_gives_metrics_tables_and_figures(user_model, digits5k, tmp_path):
    train, test = digits5k
    settings = {"limit": 20, "eval_samples": 3, "adaptive": False,
                "runs": {"fgsm": {"attack": "fgsm", "params": {"eps": 0.2}}}, "lacok": {"fgsm_eps": [0.1], "noise_eps": [0.1]}}
    result = run_suite("attack", {"mine": user_model}, train, test, settings=settings, out=tmp_path / "run")
    assert 0.0 <= result.metrics["adv/fgsm/mine/success_rate"] <= 1.0
    assert "lacok/mine/fgsm eps=0.1/error" in result.metrics
    assert {"attack_examples_fgsm", "lacok_figure1"} <= set(result.figures)
    assert "Attack runs (L0 in pixels, L2 / L∞ in [0, 1] pixel units)" in result.tables
    assert "per_example/fgsm/mine/success" in result.arrays["attack"] and result.run.complete
    again = run_suite("attack", {"mine": user_model}, train, test, settings=settings, out=tmp_path / "again")
    assert again.metrics["adv/fgsm/mine/success_rate"] == result.metrics["adv/fgsm/mine/success_rate"]  # one seed, one number


def test_the_calibration_suite_matches_a_direct_computation(user_model, digits5k):
    train, test = digits5k
    val = train.subset(200, seed=1)
    result = run_suite("calibration", {"mine": user_model}, train, test, val=val, settings={"samples": 4, "bootstrap": 50},
                       seed=3)
    confidence = result.arrays["calibration"]["calib/mine/examples/confidence"]
    correct = result.arrays["calibration"]["calib/mine/examples/correct"]
    assert len(correct) == len(test) and result.metrics["calib/mine/acc"] == pytest.approx(float(correct.mean()))
    assert result.metrics["calib/mine/ece"] == pytest.approx(expected_calibration_error(confidence, correct.astype(bool))[0])
    assert any(name.startswith("reliability") for name in result.figures)


def test_settings_are_checked_like_a_config_table(user_model, digits5k):
    train, test = digits5k
    with pytest.raises(ConfigError, match="unknown config key attack.limt"):
        run_suite("attack", {"mine": user_model}, train, test, settings={"limt": 5})
    with pytest.raises(ConfigError, match="wrap a network first"):
        run_suite("evaluation", {"net": DropoutBatchNormCNN()}, train, test)
    with pytest.raises(ConfigError, match="unknown suite 'atack'"):
        run_suite("atack", {"mine": user_model}, train, test)
