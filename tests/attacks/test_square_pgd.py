"""Square (score-based, gradient-free) and PGD with restarts, by hand: a linear model broken within the
query budget, the budget and the ball kept, and the window schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.attacks import build_attack
from bayesrobust.attacks.square import Square, pseudo_gaussian, square_fraction
from tests.conftest import gen


def sum_model(threshold: float = 5.0):
    """Two classes: class 1 once the pixels' total change from 0.5 exceeds ``threshold``. At x = 0.5
    it is class 0 with margin ``threshold``; any perturbation with Σδ > threshold breaks it."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.stack([torch.zeros(784), torch.ones(784)]))
        net[1].bias.copy_(torch.tensor([0.0, -392.0 - threshold]))
    return wrap(net, input_shape=(1, 28, 28))


@pytest.mark.parametrize("norm, eps", [("Linf", 0.1), ("L2", 1.0)])
def test_square_breaks_a_linear_model_within_its_query_budget(norm, eps):
    """Σδ can reach 78.4 (L∞ 0.1) or 28 (L2 1.0), far past 5, but only a search that keeps what lowers
    the margin gets there: every image is broken within 300 queries, inside the ball."""
    model = sum_model()
    x = torch.full((6, 1, 28, 28), 0.5)
    y = torch.zeros(6, dtype=torch.long)
    assert not model.predictive(x, 1).predicted.any()
    result = build_attack("square", eps=eps, norm=norm, queries=300)(model, x, y, generator=gen(0))
    assert result.success.all() and result.claimed.all()
    assert int(result.iterations.max()) <= 300 and result.params["queries"] == 300
    bound = result.linf if norm == "Linf" else result.l2
    assert float(bound.max()) <= eps + 1e-5


def test_square_cannot_break_what_the_ball_forbids():
    """With threshold 100 no L∞ 0.1 perturbation (Σδ ≤ 78.4) succeeds: the whole budget is spent."""
    model = sum_model(100.0)
    x = torch.full((3, 1, 28, 28), 0.5)
    result = build_attack("square", eps=0.1, queries=50)(model, x, torch.zeros(3, dtype=torch.long), generator=gen(0))
    assert not result.success.any() and result.iterations.tolist() == [50, 50, 50]


def test_the_pseudo_gaussian_bump_by_hand():
    """Nested squares around the centre, the k-th adding 1/(k + 1)²: a 3 × 3 window holds 1 + 1/4 at
    the centre and 1/4 on its ring; a 5 × 5 one 1 + 1/4 + 1/9, 1/4 + 1/9 and 1/9."""
    three = pseudo_gaussian(3, 3, torch.zeros(1))
    assert three[1, 1] == pytest.approx(1.25) and three[0, 0] == pytest.approx(0.25) and three[0, 1] == pytest.approx(0.25)
    five = pseudo_gaussian(5, 5, torch.zeros(1))
    assert five[2, 2] == pytest.approx(1 + 1 / 4 + 1 / 9) and five[1, 2] == pytest.approx(1 / 4 + 1 / 9)
    assert five[0, 4] == pytest.approx(1 / 9)


def test_an_l2_square_query_moves_mass_between_windows_and_stays_on_the_sphere():
    """The paper's L2 update: the perturbation keeps norm ε (mid-grey images, so the box never bites), a
    window's pixels change only inside the two windows, and each channel's norm over the two windows
    plus the unused budget ends up in the first."""
    attack = Square(eps=1.0, norm="L2")
    x = torch.full((8, 3, 12, 12), 0.5)
    start = attack._initial(x, gen(0))
    assert torch.allclose((start - x).flatten(1).norm(dim=1), torch.ones(8), atol=1e-5)
    side = attack._side(0.1, 12, 12)
    assert side % 2 == 1 and side >= 3
    proposal = attack._proposal(x, start, side, gen(1))
    assert torch.allclose((proposal - x).flatten(1).norm(dim=1), torch.ones(8), atol=1e-5)
    changed = ((proposal - start).abs() > 1e-7).any(1).flatten(1).sum(1)
    assert int(changed.max()) <= 2 * side * side  # only the two windows move
    assert not torch.equal(proposal, start)


def test_the_window_share_halves_on_the_papers_schedule():
    assert square_fraction(0.8, 0, 10_000) == 0.8
    assert square_fraction(0.8, 11, 10_000) == 0.4
    assert square_fraction(0.8, 9_000, 10_000) == pytest.approx(0.8 / 2 ** 9)
    assert square_fraction(0.8, 100, 1_000) == pytest.approx(0.8 / 2 ** 4)  # 1,000 queries: the schedule scaled


def test_pgd_restarts_only_what_is_still_unbroken(small_lenet, images, labels):
    """More restarts never break fewer digits (each runs on the unbroken ones), and the budget is
    steps × restarts per example."""
    model = small_lenet.with_mode("plain")
    one = build_attack("pgd", eps=0.1, alpha=0.02, steps=5, restarts=1)(model, images, labels, generator=gen(4))
    three = build_attack("pgd", eps=0.1, alpha=0.02, steps=5, restarts=3)(model, images, labels, generator=gen(4))
    assert three.success.sum() >= one.success.sum() and int(three.iterations.max()) <= 15
    l2 = build_attack("pgd", eps=1.0, alpha=0.3, steps=5, norm="L2")(model, images, labels, generator=gen(4))
    assert float(l2.l2.max()) <= 1.0 + 1e-4
