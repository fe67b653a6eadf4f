"""A researcher's own network, written without bayesrobust: plain PyTorch, nn.Dropout and BatchNorm."""

from torch import nn


class MyCNN(nn.Module):
    """1×28×28 digits → 10 logits."""

    def __init__(self, width: int = 16, p: float = 0.3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(p), nn.Linear(2 * width * 7 * 7, 64), nn.ReLU(),
                                  nn.Dropout(p), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x))
