"""Plain user networks the toolkit did not define: what a researcher brings to ``bayesrobust.wrap``.

Nothing here imports bayesrobust: these are ordinary ``nn.Module``s returning logits, with PyTorch's
own ``nn.Dropout`` / ``nn.Dropout2d`` and BatchNorm, as a user writes them."""

from __future__ import annotations

from torch import nn


class DropoutBatchNormCNN(nn.Module):
    """A small digit CNN with BatchNorm and both kinds of PyTorch dropout (1×28×28 → ``classes``)."""

    def __init__(self, width: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout2d(0.1), nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(2 * width * 7 * 7, 16), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(16, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class ColourCNN(nn.Module):
    """An SVHN-shaped CNN (3×32×32 → ``classes``) with dropout before its last layer."""

    def __init__(self, classes: int = 7) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(4 * 14 * 14, 24), nn.ReLU(), nn.Dropout(0.3), nn.Linear(24, classes))

    def forward(self, x):
        return self.body(x)


class PlainMLP(nn.Module):
    """No dropout at all: only the deterministic form applies."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, x):
        return self.net(x)
