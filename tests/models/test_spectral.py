"""Spectral bounds (models/spectral.py) against full SVDs, and the residual extractor they build
(models/residual.py): every bounded layer's operator norm ≤ c, identity blocks bi-Lipschitz."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bayesrobust.config import TrainSection
from bayesrobust.models import build_model
from bayesrobust.models.residual import ResidualConvBlock, ResidualLinearBlock, residual_sn_extractor
from bayesrobust.models.spectral import bound_spectral_norm, operator_norm, tighten
from bayesrobust.models.training import pretrain
from tests.conftest import TINY_GPDNN


def conv_operator(layer: nn.Conv2d, hw: tuple[int, int]) -> torch.Tensor:
    """The convolution (without bias) on ``hw`` images as an explicit matrix: one column per input pixel."""
    n = layer.in_channels * hw[0] * hw[1]
    basis = torch.eye(n).view(n, layer.in_channels, *hw)
    with torch.no_grad():
        out = nn.functional.conv2d(basis, layer.weight, None, layer.stride, layer.padding, layer.dilation)
    return out.reshape(n, -1).T


def largest_singular_value(matrix: torch.Tensor) -> float:
    return float(torch.linalg.svdvals(matrix.double())[0])


@pytest.mark.parametrize("stride, padding, hw", [(1, 1, (6, 6)), (2, 1, (7, 7)), (1, 0, (5, 6)), (2, 2, (6, 5))])
def test_a_convolution_is_bounded_as_a_convolution(stride, padding, hw):
    """The power iteration on the convolution and its transpose finds the operator's largest singular
    value (full SVD of the explicit matrix), which differs from the reshaped kernel's; after the bound the
    layer's true norm is c (it was above)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, stride=stride, padding=padding)
    with torch.no_grad():
        conv.weight.mul_(4.0)
    true = largest_singular_value(conv_operator(conv, hw))
    reshaped = largest_singular_value(conv.weight.detach().reshape(3, -1))
    assert abs(true - reshaped) > 0.05 * true  # the matrix bound would be the wrong quantity
    bound_spectral_norm(conv, coefficient=0.9, power_iterations=1, input_hw=hw)
    assert float(operator_norm(conv)) == pytest.approx(true, rel=2e-3)
    assert largest_singular_value(conv_operator(conv, hw)) == pytest.approx(0.9, rel=2e-3)


def test_a_linear_layer_is_bounded_and_a_small_one_left_alone():
    torch.manual_seed(0)
    big, small = nn.Linear(7, 5), nn.Linear(7, 5)
    with torch.no_grad():
        big.weight.mul_(10.0)
        small.weight.mul_(0.01)
    before = largest_singular_value(small.weight.detach())
    for layer in (big, small):
        bound_spectral_norm(layer, coefficient=0.5)
    assert largest_singular_value(big.weight.detach()) == pytest.approx(0.5, rel=1e-4)
    assert largest_singular_value(small.weight.detach()) == pytest.approx(before, rel=1e-6)  # min(1, c/σ) = 1


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_a_bounded_layer_computes_the_map_of_its_bounded_weight(kind):
    """The forward scales the output, min(1, c/σ̂)·(W x) + b; it must give the bounded weight's output and
    gradients (the bound active: σ̂ > c), and run one power iteration per training forward pass."""
    torch.manual_seed(0)
    if kind == "conv":
        layer, x = nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.randn(2, 3, 7, 7)
        bound_spectral_norm(layer, coefficient=0.5, input_hw=(7, 7))

        def reference(weight):
            return nn.functional.conv2d(x, weight, layer.bias, stride=2, padding=1)
    else:
        layer, x = nn.Linear(6, 5), torch.randn(3, 6)
        bound_spectral_norm(layer, coefficient=0.5)

        def reference(weight):
            return nn.functional.linear(x, weight, layer.bias)
    with torch.no_grad():
        layer.parametrizations.weight.original.mul_(10.0)
    layer.train(False)
    raw = layer.parametrizations.weight.original
    assert float(operator_norm(layer)) > 0.5 * 5  # the bound binds
    ours = layer(x)
    theirs = reference(layer.weight)
    assert torch.allclose(ours, theirs, atol=1e-6)
    g_ours, = torch.autograd.grad(ours.square().sum(), raw)
    g_theirs, = torch.autograd.grad(reference(layer.weight).square().sum(), raw)
    assert torch.allclose(g_ours, g_theirs, rtol=1e-4, atol=1e-6)
    layer.train(True)
    bound = layer.parametrizations.weight[0]
    calls = []
    iterate = bound._iterate
    bound._iterate = lambda weight, steps: calls.append(steps) or iterate(weight, steps)
    layer(x)
    assert calls == [bound.power_iterations]


def test_power_iterations_run_in_training_only():
    """Predictions (eval mode) never move the estimate; training steps keep it tracking the weights."""
    torch.manual_seed(0)
    conv = bound_spectral_norm(nn.Conv2d(1, 2, 3, padding=1), coefficient=1.0, input_hw=(5, 5))
    bound = conv.parametrizations.weight[0]
    conv.train(False)
    u = bound.u.clone()
    conv(torch.rand(2, 1, 5, 5))
    assert torch.equal(bound.u, u)
    with torch.no_grad():
        conv.parametrizations.weight.original.mul_(-3.0).add_(torch.randn_like(conv.parametrizations.weight.original))
    conv.train(True)
    for _ in range(60):
        conv(torch.rand(2, 1, 5, 5))
    raw = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():
        raw.weight.copy_(conv.parametrizations.weight.original)
    assert float(operator_norm(conv)) == pytest.approx(largest_singular_value(conv_operator(raw, (5, 5))), rel=1e-3)
    with pytest.raises(ValueError, match="input_hw"):
        bound_spectral_norm(nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="coefficient"):
        bound_spectral_norm(nn.Linear(2, 2), coefficient=0.0)
    with pytest.raises(TypeError, match="Linear and nn.Conv2d"):
        bound_spectral_norm(nn.Conv1d(1, 1, 3))


def test_every_layer_of_the_residual_extractor_stays_bounded_while_it_trains():
    torch.manual_seed(0)
    extractor = residual_sn_extractor(4, 8, 16, 6, coefficient=0.8)
    optimizer = torch.optim.Adam(extractor.parameters(), lr=0.05)
    extractor.train(True)
    for _ in range(30):  # large steps: the raw weights grow far past the bound
        loss = -extractor(torch.rand(16, 1, 28, 28)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    extractor.train(False)
    tighten(extractor)
    bounded = [m for m in extractor.modules() if hasattr(m, "parametrizations")]
    assert len(bounded) == 13
    for layer in bounded:
        raw_norm = float(operator_norm(layer))
        assert raw_norm > 0.8  # the bound is active
        if isinstance(layer, nn.Linear):
            assert largest_singular_value(layer.weight.detach()) <= 0.8 * 1.003
        else:  # the convolution on its own input size, as an explicit matrix
            hw = layer.parametrizations.weight[0].input_shape[-2:]
            assert largest_singular_value(conv_operator(layer, hw)) <= 0.8 * 1.003
    assert extractor(torch.rand(3, 1, 28, 28)).shape == (3, 6)


def test_identity_blocks_are_bi_lipschitz():
    """(1 − c²)‖x − y‖ ≤ ‖F(x) − F(y)‖ ≤ (1 + c²)‖x − y‖ for F(x) = x + f(x), Lip(f) ≤ c²: distinct inputs
    stay apart, the property the plain extractor lacks."""
    torch.manual_seed(0)
    c = 0.9
    blocks = [ResidualConvBlock(3, 3, 1, (6, 6), c, 1), ResidualLinearBlock(12, c, 1)]
    for block, shape in zip(blocks, [(3, 6, 6), (12,)]):
        for layer in block.modules():
            if hasattr(layer, "parametrizations"):  # at the bound: the worst case for the lower side
                with torch.no_grad():
                    layer.parametrizations.weight.original.mul_(100.0)
        block.train(False)
        x, y = torch.randn(200, *shape), torch.randn(200, *shape)
        x = torch.cat([x, y + 1e-2 * torch.randn(200, *shape)])  # near pairs as well as far ones
        y = torch.cat([y, y])
        with torch.no_grad():
            ratio = (block(x) - block(y)).flatten(1).norm(dim=1) / (x - y).flatten(1).norm(dim=1)
        assert float(ratio.min()) >= (1 - c**2) * 0.999 and float(ratio.max()) <= (1 + c**2) * 1.001


def test_a_residual_gpdnn_warms_its_gp_up_on_frozen_features(digits5k):
    """``gp_warmup_epochs`` trains the GP and the likelihood only (the extractor's weights do not move and
    no graph is built through it), in training mode (no stale GPyTorch caches), then the whole model; the model leaves ``fit`` in eval
    mode with its spectral estimates fixed."""
    model = build_model("gpdnn", **TINY_GPDNN, extractor="residual_sn", pretrain_epochs=0, gp_warmup_epochs=1)
    train = digits5k[0].head(300, seed=0)
    before = {k: v.clone() for k, v in model.extractor.state_dict().items()}
    gp_before = model.gp.variational_strategy.base_variational_strategy._variational_distribution.variational_mean.clone()
    seen = []
    model.extractor.register_forward_hook(lambda *_: seen.append((model.gp.training, torch.is_grad_enabled())))
    model.fit(train, TrainSection(epochs=0, batch_size=100), seed=0, progress=False)
    warmup = seen[-3:]  # 300 digits in batches of 100, after the k-means pass
    assert warmup == [(True, False)] * 3  # the GP training, no graph through the frozen extractor
    assert all(torch.equal(before[k], v) for k, v in model.extractor.state_dict().items() if not k.endswith((".u", ".v")))
    gp_after = model.gp.variational_strategy.base_variational_strategy._variational_distribution.variational_mean
    assert not torch.equal(gp_before, gp_after)
    assert not model.training and not model.extractor.training


def test_pretrain_restores_each_modules_mode():
    a, b = nn.Linear(2, 2), nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    a.train(False)
    b.train(False)
    b[1].train(True)
    modes = []

    def loss(x, y):
        modes.append((a.training, b.training, b[0].training))
        return (a(x) + b(x)).pow(2).mean()

    class Data:
        images, labels = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)

        def __len__(self):
            return 8

    pretrain([a, b], loss, Data(), TrainSection(batch_size=4), epochs=1, seed=0, progress=False, desc="t")
    assert modes == [(True, True, True)] * 2
    assert (a.training, b.training, b[0].training, b[1].training) == (False, False, False, True)


def test_residual_extractor_parameters_are_checked():
    from bayesrobust.errors import ConfigError

    with pytest.raises(ConfigError, match="extractor"):
        build_model("gpdnn", extractor="resnet50")
    with pytest.raises(ConfigError, match="spectrally normalised already"):
        build_model("gpdnn", **TINY_GPDNN, extractor="residual_sn", spectral_norm=True)
    with pytest.raises(ConfigError, match="gp_warmup_epochs"):
        build_model("gpdnn", **TINY_GPDNN, gp_warmup_epochs=-1)
