"""The gradient-masking checks: a hand-built masked network (logits through a quantiser: zero gradients
everywhere, AutoAttack issues #41/#43) is flagged, a plain LeNet is not."""

from __future__ import annotations

import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.analysis.masking import MaskingSection, masking_checks
from tests.conftest import gen


class Quantised(nn.Module):
    """A network's logits rounded to quarters: the same predictions, no gradient."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return torch.round(self.network(x) * 4) / 4


def test_a_masked_network_is_flagged_and_a_plain_lenet_passes(small_lenet, digits5k):
    import copy

    test = digits5k[1].head(40, seed=0)
    plain = small_lenet.with_mode("plain")
    masked = wrap(Quantised(copy.deepcopy(plain)), input_shape=(1, 28, 28))
    models = {"lenet": plain, "masked": masked}
    section = MaskingSection(eps=0.3, limit=40, steps=(3, 10), queries=150, eot_samples=2)
    metrics, _ = masking_checks(models, test.images, test.labels, section, eval_samples=2, batch_size=40, generator=gen(0))
    assert metrics["masking/lenet/suspected"] == 0.0, {k: v for k, v in metrics.items() if k.startswith("masking/lenet")}
    assert "masking/lenet/check_d" not in metrics  # the reference transfers to the others, not to itself
    assert metrics["masking/masked/suspected"] == 1.0
    assert metrics["masking/masked/check_b"] == 0.0  # Square breaks what the zero gradients cannot
    assert metrics["masking/masked/check_d"] == 0.0  # the LeNet's examples transfer better than the white-box attack
    assert metrics["masking/masked/square_success"] > metrics["masking/masked/apgd_10_success"] + 0.05


def test_a_rate_exactly_at_the_tolerance_passes(monkeypatch):
    """182 of 200 digits at 10 steps, 180 at 100 with tolerance 0.01: 0.90 ≥ 0.91 − 0.01 holds exactly,
    though 0.91 − 0.01 is 0.9000000000000001 in floats."""
    import bayesrobust.analysis.masking as masking

    rates = {("fgsm", None): 0.25, ("apgd", 10): 0.91, ("apgd", 100): 0.90, ("square", None): 0.95, ("apgd", "unbounded"): 1.0}

    def fake(attack_name, model, x, y, params, **_):
        key = ("apgd", "unbounded") if params.get("eps") == 1.0 else (attack_name, params.get("steps"))
        return rates[key], x

    monkeypatch.setattr(masking, "_success", fake)
    model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), input_shape=(1, 28, 28))
    section = MaskingSection(eps=0.3, steps=(10, 100), tolerance=0.01, square_margin=0.05)
    metrics, _ = masking_checks({"m": model}, torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long), section,
                                eval_samples=1, batch_size=2, generator=gen(0))
    assert metrics["masking/m/check_e"] == 1.0 and metrics["masking/m/check_b"] == 1.0  # 0.95 ≤ 0.90 + 0.05
    assert metrics["masking/m/suspected"] == 0.0
