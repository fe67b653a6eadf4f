"""AutoAttack as a composite: each stage only on what the earlier ones left, the stage that broke each
example, per-stage robust accuracy that adds up to the overall one, on stochastic and user networks."""

from __future__ import annotations

import pytest
import torch

from bayesrobust.attacks import build_attack
from bayesrobust.attacks.base import run_batched
from bayesrobust.errors import ConfigError
from tests.conftest import gen, tiny_models


def check_stages(result) -> None:
    stages = result.params["stages"]
    summary = result.summary()
    after = [summary[f"robust_accuracy_after_{s}"] for s in stages]
    assert after == sorted(after, reverse=True)  # no stage un-breaks an example
    assert after[-1] == pytest.approx(1.0 - summary["success_rate"])
    assert torch.equal(result.broken_by >= 0, result.success)  # broken by a stage ⇔ reported broken
    assert not result.iterations[result.broken_by == 0].any()  # already wrong on the clean image: never attacked


@pytest.mark.parametrize("version", ["standard", "rand"])
@pytest.mark.parametrize("mode", ["plain", "mc_dropout"])
def test_stages_run_on_what_is_left_and_add_up(version, mode, small_lenet, images, labels):
    model = small_lenet.with_mode(mode)
    attack = build_attack("autoattack", eps=0.15, steps=5, queries=20, target_classes=2, version=version, eval_samples=4, eot=3)
    result = run_batched(attack, model, images, labels, batch_size=7, generator=gen(0))  # three batches joined
    check_stages(result)
    expected = ["clean", "apgd-ce", "apgd-t", "square"] if version == "standard" else ["clean", "apgd-ce", "apgd-dlr"]
    assert result.params["stages"] == expected
    if version == "rand" and mode == "mc_dropout":
        assert attack.stages(model, targeted=False)[0][1].eot_samples == 3  # EOT on a stochastic model


@pytest.mark.parametrize("kind", ["wrapped-bn-mc", "ensemble-wrapped3"])
def test_autoattack_on_networks_the_toolkit_did_not_define(kind, images, labels):
    model = tiny_models()[kind]()
    attack = build_attack("autoattack", eps=0.2, steps=4, queries=15, target_classes=2, eval_samples=3)
    check_stages(attack(model, images, labels, generator=gen(1)))


def test_a_targeted_call_keeps_its_target_in_every_stage(small_lenet, images, labels):
    model = small_lenet.with_mode("plain")
    target = (labels + 1) % 10
    result = build_attack("autoattack", eps=0.3, steps=5, queries=20)(model, images, labels, target=target, generator=gen(2))
    assert result.params["stages"] == ["clean", "apgd-ce", "apgd-dlr", "square"]
    assert torch.equal(result.success, result.predictive.predicted == target)


def test_unknown_version_is_named():
    with pytest.raises(ConfigError, match="version"):
        build_attack("autoattack", version="plus")
