"""Network architectures: the Lacok MLP family (and its softmax / sigmoid relatives), a dropout LeNet,
Feinman et al.'s MNIST CNN and Szegedy et al.'s autoencoder + softmax."""

from __future__ import annotations

import torch
from torch import nn

from bayesrobust.models.base import MODELS
from bayesrobust.models.dropout import DropoutClassifier
from bayesrobust.models.layers import MCDropout

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


class Standardise(nn.Module):
    """(x − mean) / std inside the model, so attacks always work in [0, 1] pixel space."""

    def __init__(self, mean: float = MNIST_MEAN, std: float = MNIST_STD) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv_stack(c1: int, c2: int) -> list[nn.Module]:
    """Standardise → conv 5×5 (c1) → ReLU → max-pool → conv 5×5 (c2) → ReLU → max-pool → flatten: the
    LeNet / TensorFlow-tutorial trunk shared by the LeNet and the GPDNN's feature extractor
    (output ``c2 · 7 · 7``)."""
    return [Standardise(),
            nn.Conv2d(1, c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten()]


@MODELS.register("mlp")
class MLP(DropoutClassifier):
    """Fully connected net on flattened pixels.

    Defaults are Lacok (2016): 784–625–625–10, ReLU, dropout 0.2 on the inputs and 0.5 before each
    later layer, weights N(0, 0.01²) without biases. ``hidden=()`` gives the shallow softmax
    (multinomial logistic regression) of Goodfellow et al.; ``activation='sigmoid'`` the FC nets of
    Szegedy et al.
    """
    tiny_params = {"hidden": (32,)}

    arch = "mlp"

    def __init__(self, *, mode: str = "mc_dropout", hidden: tuple[int, ...] | list[int] = (625, 625),
                 activation: str = "relu", input_dropout: float = 0.2, hidden_dropout: float = 0.5,
                 bias: bool = False, init_std: float = 0.01) -> None:
        hidden = [int(h) for h in hidden]
        super().__init__(mode=mode, hidden=hidden, activation=activation, input_dropout=input_dropout,
                         hidden_dropout=hidden_dropout, bias=bias, init_std=init_std)
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        layers: list[nn.Module] = [nn.Flatten()]
        widths = [784, *hidden, self.num_classes]
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(MCDropout(input_dropout if i == 0 else hidden_dropout))
            linear = nn.Linear(w_in, w_out, bias=bias)
            if init_std > 0:
                nn.init.normal_(linear.weight, std=init_std)
            layers.append(linear)
            if i < len(widths) - 2:
                layers.append(_ACTIVATIONS[activation]())
        self._split(nn.Sequential(*layers))


@MODELS.register("lenet")
class LeNet(DropoutClassifier):
    """LeNet-style CNN with dropout in the dense head (the Alshemali / Wang–Zhang setting).

    conv 5×5 (32) → ReLU → max-pool → conv 5×5 (64) → ReLU → max-pool → dropout (``conv_dropout``,
    default ``dropout``) → dense 128 → ReLU → dropout → dense 10. Dropout follows the convolutions, so
    Monte-Carlo dropout reuses them. ``conv_dropout = 0`` keeps dropout on the dense layer only, as the
    TensorFlow "deep MNIST" tutorial network Bradshaw et al. compare against.
    """
    tiny_params = {"channels": (4, 8), "hidden": 16}

    arch = "lenet"

    def __init__(self, *, mode: str = "mc_dropout", channels: tuple[int, int] | list[int] = (32, 64),
                 hidden: int = 128, dropout: float = 0.5, conv_dropout: float | None = None) -> None:
        c1, c2 = (int(c) for c in channels)
        conv_dropout = dropout if conv_dropout is None else conv_dropout
        super().__init__(mode=mode, channels=[c1, c2], hidden=hidden, dropout=dropout, conv_dropout=conv_dropout)
        self._split(nn.Sequential(
            *conv_stack(c1, c2),
            MCDropout(conv_dropout), nn.Linear(c2 * 7 * 7, hidden), nn.ReLU(),
            MCDropout(dropout), nn.Linear(hidden, self.num_classes),
        ))


@MODELS.register("feinman_cnn")
class FeinmanCNN(DropoutClassifier):
    """The MNIST network of Feinman et al. (2017), whose last hidden layer their kernel density reads.

    conv 3×3 (64, valid) → ReLU → conv 3×3 (64, valid) → ReLU → max-pool → dropout → dense 128 → ReLU
    → dropout → dense 10. Dropout follows the convolutions, so Monte-Carlo dropout reuses them.
    """
    tiny_params = {"channels": (4, 8), "hidden": 16}

    arch = "feinman_cnn"

    def __init__(self, *, mode: str = "mc_dropout", channels: tuple[int, int] | list[int] = (64, 64),
                 hidden: int = 128, dropout: float = 0.5) -> None:
        c1, c2 = (int(c) for c in channels)
        super().__init__(mode=mode, channels=[c1, c2], hidden=hidden, dropout=dropout)
        self._split(nn.Sequential(
            Standardise(),
            nn.Conv2d(1, c1, 3), nn.ReLU(), nn.Conv2d(c1, c2, 3), nn.ReLU(), nn.MaxPool2d(2),
            MCDropout(dropout), nn.Flatten(), nn.Linear(c2 * 12 * 12, hidden), nn.ReLU(),
            MCDropout(dropout), nn.Linear(hidden, self.num_classes),
        ))


@MODELS.register("ae_softmax")
class AutoencoderSoftmax(DropoutClassifier):
    """Szegedy et al.'s AE400-10: a one-layer sigmoid autoencoder (784 → ``code`` → 784) pre-trained
    on reconstruction, whose code then feeds a softmax layer; the whole classifier is fine-tuned.

    ``fit`` runs ``pretrain_epochs`` of binary cross-entropy reconstruction first. ``dropout`` > 0 before
    the softmax layer makes an MC-dropout variant (the code is then the deterministic trunk).
    """
    tiny_params = {"code": 16, "pretrain_epochs": 1, "dropout": 0.3}

    arch = "ae_softmax"

    def __init__(self, *, mode: str = "plain", code: int = 400, pretrain_epochs: int = 5, dropout: float = 0.0) -> None:
        super().__init__(mode=mode, code=code, pretrain_epochs=pretrain_epochs, dropout=dropout)
        self.decoder = nn.Sequential(nn.Linear(code, 784), nn.Sigmoid())
        self._split(nn.Sequential(nn.Flatten(), nn.Linear(784, code), nn.Sigmoid(), MCDropout(dropout),
                                  nn.Linear(code, self.num_classes)))

    def encoder(self) -> nn.Sequential:
        """Flatten → linear → sigmoid: the first three layers, wherever the trunk/head cut falls."""
        return nn.Sequential(*[*self.trunk, *self.head][:3])

    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> AutoencoderSoftmax:
        from bayesrobust.models.training import pretrain_autoencoder

        pretrain_autoencoder(self.encoder(), self.decoder, train, config, epochs=self.params["pretrain_epochs"],
                             seed=seed, progress=progress)
        return super().fit(train, config, val=val, seed=seed, progress=progress)
