"""Post-hoc calibrators (vector scaling, histogram binning, isotonic regression): hand-built cases,
netcal's numbers on the same probabilities, and a network the toolkit did not define, calibrated,
saved, attacked and twinned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bayesrobust import wrap
from bayesrobust.config import TrainSection
from bayesrobust.metrics import calibration as cal
from bayesrobust.models import BayesianClassifier
from bayesrobust.models import calibrators as c
from bayesrobust.seeding import seed_everything


def synthetic(n: int = 3000, classes: int = 5, seed: int = 0):
    """Over-confident probabilities (labels drawn from softened ones; the conformal benchmark's) as
    ``(1, N, C)`` log-probability logits, the probabilities and the labels."""
    from tests.conftest import load_benchmark as load

    p, y = load("conformal").synthetic_predictions(n, classes, seed)
    return torch.log(torch.tensor(p))[None], p, y


def calibrated(calibrator, logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(calibrator.apply(logits), -1)[0].numpy()


def test_histogram_binning_and_isotonic_by_hand():
    """Two classes, two bins. Class 0's probabilities 0.2, 0.3 (bin 0; one of them class 0) and 0.8, 0.9
    (bin 1; both class 0) map to 1/2 and 1; class 1's are the complements: bin 0 (0.1, 0.2) holds two
    class-0 digits → 0, bin 1 (0.7, 0.8) → 1/2. Renormalised: p0 = 0.2 → (1/2, 1/2), p0 = 0.9 → (1, 0)
    floored, so (1 − 1e-12, 1e-12). The isotonic fit interpolates linearly between its points and clips
    outside them."""
    p0 = torch.tensor([0.2, 0.3, 0.8, 0.9], dtype=torch.float64)
    logits = torch.log(torch.stack([p0, 1 - p0], -1))[None]
    labels = torch.tensor([1, 0, 0, 0])
    hist = c.fit_histogram_binning(logits, labels, bins=2)
    assert hist.values == [[0.5, 1.0], [0.0, 0.5]]
    np.testing.assert_allclose(calibrated(hist, logits[:, [0, 3]]), [[0.5, 0.5], [1.0, 0.0]], atol=1e-11)
    iso = c.fit_isotonic(logits, labels)
    assert iso.x[0] == pytest.approx([0.2, 0.3, 0.9]) and iso.y[0] == pytest.approx([0.0, 1.0, 1.0])  # a flat run's ends
    p = torch.tensor([[0.1, 0.9], [0.25, 0.75], [0.95, 0.05]], dtype=torch.float64)
    out = calibrated(iso, torch.log(p)[None])
    assert out[1, 0] == pytest.approx(0.5)  # halfway between 0.2 and 0.3 (0.5); class 1's fit: 0.5 at 0.75
    assert out[2, 0] == pytest.approx(1.0, abs=1e-9)  # beyond the last point: clipped to its value


def test_calibrators_agree_with_netcal_on_the_same_probabilities():
    """netcal's HistogramBinning (equal intervals), IsotonicRegression and LogisticCalibration (vector
    scaling of log-probabilities, by maximum likelihood) on the same calibration and test probabilities:
    the same calibrated probabilities — binning and isotonic to rounding, vector scaling to the optimisers'
    tolerance (both minimise the same convex NLL)."""
    binning = pytest.importorskip("netcal.binning")
    scaling = pytest.importorskip("netcal.scaling")
    logits, p, y = synthetic()
    fit, test = slice(0, 2000), slice(2000, None)
    labels = torch.tensor(y[fit])
    theirs = {
        "histogram": binning.HistogramBinning(bins=15, equal_intervals=True).fit(p[fit], y[fit]),
        "isotonic": binning.IsotonicRegression().fit(p[fit], y[fit]),
        "vector": scaling.LogisticCalibration(temperature_only=False, method="mle").fit(p[fit], y[fit]),
    }
    tolerance = {"histogram": 1e-12, "isotonic": 1e-9, "vector": 1e-3}
    for kind, peer in theirs.items():
        ours = c.FITTERS[kind](logits[:, fit], labels, bins=15)
        np.testing.assert_allclose(calibrated(ours, logits[:, test]), peer.transform(p[test]), atol=tolerance[kind], err_msg=kind)


def test_every_calibrator_lowers_the_validation_miscalibration_it_was_fitted_on():
    logits, p, y = synthetic(seed=1)
    labels = torch.tensor(y)
    before_nll = -np.log(p[np.arange(len(y)), y]).mean()
    before_ece = cal.expected_calibration_error(p.max(1), p.argmax(1) == y)[0]
    for kind, fitter in c.FITTERS.items():
        q = calibrated(fitter(logits, labels, bins=15), logits)
        assert np.allclose(q.sum(1), 1.0)
        assert cal.expected_calibration_error(q.max(1), q.argmax(1) == y)[0] < before_ece / 2, kind
        if kind == "vector":
            assert -np.log(q[np.arange(len(y)), y]).mean() < before_nll


class UserMLP(nn.Module):
    """A network the toolkit did not define: two linear layers and dropout."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


@pytest.fixture(scope="module")
def user_model(digits5k):
    seed_everything(0)
    model = wrap(UserMLP(), "deterministic")
    model.fit(digits5k[0], TrainSection(epochs=2, batch_size=64), seed=0, progress=False)
    return model


@pytest.mark.parametrize("kind", sorted(c.FITTERS))
def test_a_user_network_calibrated_saved_attacked_and_twinned(kind, user_model, digits5k, tmp_path):
    """Fitted on 150 digits, the calibrator travels with the checkpoint and the MC-dropout twin, keeps
    the predictions a probability vector, and leaves the input gradient the network's own (binning
    and isotonic maps are flat: a straight-through gradient, so attacks are not masked)."""
    import copy

    from bayesrobust.attacks import build_attack

    test = digits5k[1]
    model = copy.deepcopy(user_model)
    c.fit_calibrator(model, kind, test.images[:150], test.labels[:150], seed=0)
    assert model.calibrator.kind == kind and c.calibration_label(model) == c.NAMES[kind]
    pred = model.predictive(test.images[150:], 1)
    assert torch.allclose(pred.mean.sum(1), torch.ones(150, dtype=pred.mean.dtype), atol=1e-5)
    loaded = BayesianClassifier.load(model.save(tmp_path / f"{kind}.pt"))
    assert torch.allclose(loaded.predictive(test.images[150:], 1).mean, pred.mean, atol=1e-6)
    twin = model.with_mode("mc_dropout")
    assert twin.calibrator is model.calibrator
    x = test.images[150:160].clone().requires_grad_(True)
    log_probs = torch.log_softmax(model.sample_logits(x, 1), -1)[0]
    log_probs.gather(1, test.labels[150:160, None]).sum().backward()
    assert x.grad.abs().sum() > 0
    result = build_attack("fgsm", eps=0.3, eval_samples=1)(model, test.images[150:200], test.labels[150:200])
    assert result.success.float().mean() > 0.2  # FGSM moves the calibrated network as it moves the network


def test_a_histogram_binned_network_has_the_straight_through_gradient(user_model, digits5k):
    """d log p̃_y / dx = dz_y/dx − Σ_k p̃_k dz_k/dx: the network's own logit gradients weighted by the
    calibrated probabilities p̃ (the calibrator held as a constant logit offset), computed here from the
    Jacobian of the uncalibrated network."""
    import copy

    test = digits5k[1]
    model = copy.deepcopy(user_model)
    x = test.images[160:161].clone()
    y = int(test.labels[160])
    jacobian = torch.autograd.functional.jacobian(lambda xi: model.sample_logits(xi, 1)[0, 0], x).flatten(1)  # (C, D)
    c.fit_calibrator(model, "histogram", test.images[:150], test.labels[:150], seed=0)
    xi = x.clone().requires_grad_(True)
    log_probs = torch.log_softmax(model.sample_logits(xi, 1), -1)[0, 0]
    log_probs[y].backward()
    p_tilde = log_probs.detach().exp()
    expected = jacobian[y] - p_tilde @ jacobian
    torch.testing.assert_close(xi.grad.flatten(), expected, atol=1e-5, rtol=1e-4)
    assert expected.abs().sum() > 0
