"""Paper analyses built on attacks: each is a plain function returning metrics and arrays."""

import torch


def one_per_class(labels: torch.Tensor, count: int = 8) -> torch.Tensor:
    """Indices of the first example of each class, in class order, at most ``count`` of them
    (so figures show different digits even when a subset is sorted by label)."""
    first = [torch.nonzero(labels == c).flatten()[0] for c in range(int(labels.max()) + 1) if (labels == c).any()]
    return torch.stack(first)[:count]
