"""Auto-PGD by hand: the checkpoint schedule, the DLR loss, step-size halving where progress stalls,
the L2 ball, APGD-T's targets, and a network the toolkit did not define."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.apgd import checkpoints, dlr_loss
from bayesrobust.errors import ConfigError, InputError
from tests.conftest import gen


def test_checkpoints_follow_the_papers_schedule():
    """p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (each gap 0.03 shorter, at least 0.06)."""
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]


def test_dlr_by_hand():
    """Scores (3, 1, 0, −1), true class 0: −(3 − 1)/(3 − 0); targeted at class 2: −(3 − 0)/(3 − (0 − 1)/2).
    Shift- and scale-invariant, so logits and log-probabilities give the same loss."""
    z = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([0])
    assert dlr_loss(z, y, None).item() == pytest.approx(-2 / 3)
    assert dlr_loss(z, y, torch.tensor([2])).item() == pytest.approx(-3 / 3.5)
    assert dlr_loss(torch.log_softmax(2 * z, 1), y, None).item() == pytest.approx(-2 / 3)


def linear_model(margin: float = 10.0):
    """A linear softmax network whose true class (0) wins by ``margin`` everywhere in the unit box: no
    attack of small ε can succeed, so every row runs all its steps."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 4))
    with torch.no_grad():
        net[1].weight.copy_(torch.linspace(-1, 1, 4 * 784).view(4, 784) * 0.01)
        net[1].bias.copy_(torch.tensor([margin, 0.0, 0.0, 0.0]))
    return wrap(net, input_shape=(1, 28, 28))


def test_step_size_halves_at_each_checkpoint_once_the_iterate_stops_rising():
    """On a linear model the L∞ ascent reaches the corner of the ε-box in the first step and then
    cannot raise the loss: at every checkpoint fewer than ρ of the steps raised it, so η halves there,
    2ε → ε → ε/2 …, and the loss returned is the corner's."""
    model = linear_model()
    x = torch.full((3, 1, 28, 28), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    attack = build_attack("apgd", eps=0.1, steps=20, random_start=False)
    result = attack(model, x, y, generator=gen(0))
    assert not result.success.any() and result.iterations.tolist() == [20, 20, 20]
    (sizes,) = attack.step_sizes_
    marks = checkpoints(20)
    expected, eta = [], 0.2
    for k in range(20):
        if k in marks:
            eta /= 2
        expected.append(eta)
    assert [float(s[0]) for s in sizes] == pytest.approx(expected)
    # ∇ CE = Σ_{j≠0} p_j (w_j − w_0), and every w_j − w_0 is positive here: the corner is x + ε
    assert torch.allclose(result.x_adv, x + 0.1)


def test_the_l2_ball_and_a_stronger_attack_than_fgsm(small_lenet, images, labels):
    model = small_lenet.with_mode("plain")
    l2 = build_attack("apgd", eps=1.0, norm="L2", steps=10)(model, images, labels, generator=gen(1))
    assert float(l2.l2.max()) <= 1.0 + 1e-4 and l2.params["norm"] == "L2"
    fgsm = build_attack("fgsm", eps=0.15)(model, images, labels, generator=gen(1))
    apgd = build_attack("apgd", eps=0.15, steps=20)(model, images, labels, generator=gen(1))
    assert apgd.success.sum() >= fgsm.success.sum()


def test_apgd_t_aims_at_the_most_probable_wrong_classes_on_a_user_network(images, labels):
    """A user's network (wrapped, 10 classes): APGD-T with the DLR-targeted loss over three targets
    breaks at least what one untargeted DLR run breaks, and its budget is at most steps × targets."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    model = wrap(net)
    one = build_attack("apgd", eps=0.05, steps=10, loss="dlr")(model, images, labels, generator=gen(2))
    three = build_attack("apgd", eps=0.05, steps=10, loss="dlr", target_classes=3)(model, images, labels, generator=gen(2))
    assert three.success.sum() >= one.success.sum() - 1 and int(three.iterations.max()) <= 30
    with pytest.raises(InputError, match="target_classes"):
        build_attack("apgd", target_classes=3)(model, images, labels, target=(labels + 1) % 10)


@pytest.mark.parametrize("params, message", [({"norm": "L1"}, "norm"), ({"loss": "hinge"}, "loss"),
                                             ({"steps": 0}, "steps"), ({"eps": 0}, "eps"), ({"rho": 2}, "rho")])
def test_bad_settings_are_named(params, message):
    with pytest.raises(ConfigError, match=message):
        build_attack("apgd", **params)
