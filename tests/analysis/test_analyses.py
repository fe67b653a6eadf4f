"""Each attack-suite analysis on a hand-built case: a plain linear ``nn.Module`` (not a toolkit net)
whose logits, gradients and predictions are known in closed form, so the analysis's numbers can be
checked against a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.analysis import analyses, one_per_class
from bayesrobust.analysis.crossmodel import CROSSMODEL, MATRIX, CrossModelSection, transfer_matrix
from bayesrobust.analysis.kos import pair_matrix, target_bank
from bayesrobust.analysis.lacok import LACOK, LacokSection, lacok_table
from bayesrobust.analysis.logit_sweep import LOGIT_SWEEP, LogitSweepSection, logit_sweep
from bayesrobust.analysis.triptych import CHOI, PANEL, TriptychSection, triptych
from bayesrobust.analysis.uncertainty_aware import UncertaintyAwareSection, uncertainty_caps
from bayesrobust.data.base import Dataset, DatasetInfo
from tests.conftest import gen


class Linear(nn.Module):
    """logits = W·x + b with fixed weights: a user's network, not one of the toolkit's."""

    def __init__(self, seed: int = 0, bias_only: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.zeros(10, 784) if bias_only else torch.randn(10, 784, generator=g) * 0.05)
        self.bias = nn.Parameter(torch.randn(10, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.weight.T + self.bias


@pytest.fixture
def digits(digits5k):
    test = digits5k[1].subset(40, seed=0)  # every class, mixed
    return test.images, test.labels


def test_every_analysis_declares_its_table_run_report_and_keys():
    for name, analysis in analyses().items():
        assert analysis.section.__dataclass_params__.frozen, name
        assert callable(analysis.run) and callable(analysis.report) and analysis.metric_keys, name


def test_lacok_rows_are_the_model_on_clean_fgsm_and_noise(digits):
    x, y = digits
    net = Linear()
    model = wrap(net)
    metrics, arrays = lacok_table({"lin": model}, x, y, LacokSection(fgsm_eps=(0.1,), noise_eps=(0.2,)), eval_samples=1,
                                  eot_samples=1, batch_size=16, generator=gen())
    with torch.no_grad():
        probs = net(x).softmax(1)
    assert metrics[LACOK(model="lin", row="clean", quantity="error")] == pytest.approx(float((probs.argmax(1) != y).float().mean()))
    assert metrics[LACOK(model="lin", row="clean", quantity="confidence")] == pytest.approx(float(probs.max(1).values.mean()), abs=1e-6)
    assert metrics[LACOK(model="lin", row="clean", quantity="mi")] == 0.0  # one deterministic pass: no spread between draws
    noisy = arrays["lacok/images/noise eps=0.2"]  # sign noise moves each pixel by ±0.2 (then clipped to [0, 1])
    shown = x[one_per_class(y)].numpy()  # the figure's strip: one digit per class
    moved = np.abs(noisy - shown)
    assert np.all((np.isclose(moved, 0.2, atol=1e-6)) | (noisy == 0) | (noisy == 1))
    assert metrics[LACOK(model="lin", row="fgsm eps=0.1", quantity="error")] >= metrics[LACOK(model="lin", row="clean", quantity="error")]
    assert list(arrays["lacok/rows"]) == ["clean", "fgsm eps=0.1", "noise eps=0.2"]


def test_logit_sweep_is_linear_in_eps_along_the_gradient_sign(digits):
    x, y = digits
    net = Linear()
    metrics, arrays = logit_sweep(wrap(net), x, y, LogitSweepSection(index=3, eps_max=0.5, steps=5), eot_samples=1,
                                  generator=gen())
    x0, y0 = x[3:4], int(y[3])
    p = net(x0).softmax(1).detach()
    grad = ((p - nn.functional.one_hot(torch.tensor([y0]), 10)) @ net.weight).detach().reshape(x0.shape)  # ∇ₓ CE of a linear model
    eps = arrays[LOGIT_SWEEP(measure="eps")]
    expected = torch.stack([net(x0 + e * grad.sign())[0] for e in eps]).detach().numpy()
    np.testing.assert_allclose(arrays[LOGIT_SWEEP(measure="logits")], expected, atol=1e-5)
    np.testing.assert_allclose(eps, [-0.5, -0.25, 0.0, 0.25, 0.5])
    assert metrics[LOGIT_SWEEP(measure="label")] == y0


def test_crossmodel_matrix_a_model_that_ignores_its_input(digits):
    """A network with zero weights predicts argmax(b) whatever it is shown: its column is that one error
    in every row (crafted on either model, or Gaussian noise)."""
    x, y = digits
    blind = Linear(seed=1, bias_only=True)
    models = {"lin": wrap(Linear()), "blind": wrap(blind)}
    metrics, arrays = transfer_matrix(models, x, y, CrossModelSection(attack="fgsm", params={"eps": 0.2}, noise_std=(0.1,)),
                                      eval_samples=1, eot_samples=1, batch_size=16, generator=gen())
    constant = float((y != int(blind.bias.argmax())).float().mean())
    rows = [str(r) for r in arrays[MATRIX(matrix="rows")]]
    assert rows == ["lin", "blind", "gaussian std=0.1"]
    for row in rows:
        assert metrics[CROSSMODEL(crafted_on=row, evaluated_by="blind", measure="error")] == pytest.approx(constant)
    np.testing.assert_allclose(arrays[MATRIX(matrix="error")][:, 1], constant)


def test_triptych_adversarial_is_original_plus_delta(digits):
    x, y = digits
    model = wrap(Linear())
    section = TriptychSection(params={"lam": 0.05, "lr": 0.1, "steps": 20}, source=int(y[0]), target=(int(y[0]) + 1) % 10, count=3)
    metrics, arrays = triptych(model, x, y, section, name="lin", eval_samples=1, eot_samples=1, generator=gen())
    original, delta, adversarial = (arrays[PANEL(quantity=q)] for q in ("original", "delta", "adversarial"))
    np.testing.assert_allclose(original + delta, adversarial, atol=1e-6)
    predicted = model.predictive(torch.from_numpy(adversarial), 1).predicted.numpy()
    np.testing.assert_array_equal(arrays[PANEL(quantity="adv_label")], predicted)
    assert metrics[CHOI(model="lin", measure="success_rate")] == pytest.approx(float((predicted == section.target).mean()))
    assert list(arrays[PANEL(quantity="source_target")]) == [section.source, section.target]


def test_kos_target_bank_and_pair_matrix():
    y = torch.tensor([0, 1, 1, 2, 0, 2, 1, 3, 4, 5, 6, 7, 8, 9, 3])
    x = torch.arange(len(y), dtype=torch.float32)[:, None, None, None].expand(-1, 1, 28, 28).clone()
    bank = target_bank(x, y, exclude=torch.tensor([0, 1, 3]))  # the first image of each class not excluded
    assert [int(bank[c, 0, 0, 0]) for c in range(10)] == [4, 2, 5, 7, 8, 9, 10, 11, 12, 13]
    values, source, target = np.array([1.0, 0.0, 1.0, 0.5]), np.array([2, 2, 2, 3]), np.array([7, 7, 1, 7])
    matrix = pair_matrix(values, source, target)
    assert matrix[2, 7] == 0.5 and matrix[2, 1] == 1.0 and matrix[3, 7] == 0.5 and np.isnan(matrix[0, 1])


def test_uncertainty_cap_is_the_quantile_on_the_reference_digits(digits):
    """The cap of the uncertainty-aware goal is a quantile of the model's own values on the reference
    (validation) digits; a deterministic network's MI is 0, so its cap is 0."""
    x, y = digits
    net = Linear()
    reference = Dataset(x, y, DatasetInfo("reference", "test", "hand-built", len(y)))
    names = []
    caps = uncertainty_caps({"lin": wrap(net)}, reference, UncertaintyAwareSection(uncertainty="entropy", quantile=0.9),
                            eval_samples=1, batch_size=16, gen=lambda *n: names.append(n) or gen())
    probs = net(x).softmax(1).detach().double()
    entropy = -(probs * probs.log()).sum(1)
    assert caps["lin"] == pytest.approx(float(torch.quantile(entropy, 0.9)), rel=1e-5)
    assert names == [("uncertainty-cap", "lin")]
    mi = uncertainty_caps({"lin": wrap(net)}, reference, UncertaintyAwareSection(uncertainty="mi"), eval_samples=1,
                          batch_size=16, gen=lambda *n: gen())
    assert mi["lin"] == 0.0
