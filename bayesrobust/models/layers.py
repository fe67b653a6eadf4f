"""Dropout whose randomness the model controls: on in training, on in MC sampling, off otherwise."""

from __future__ import annotations

import torch
from torch import nn

_RESOLUTION = 1 << 16  # masks are drawn from 16-bit uniforms: p is used as round(p·2¹⁶)/2¹⁶


class MCDropout(nn.Module):
    """Inverted dropout that draws its masks from an explicit ``torch.Generator``.

    ``active`` is ``None`` by default: dropout then follows the training flag. The owning model sets it
    to ``True`` (Monte-Carlo sampling) or ``False`` (deterministic logits) for the duration of a call
    through :meth:`BayesianClassifier.dropout_sampling`, so no caller ever flips train/eval modes.

    Masks come from 16-bit slices of random 64-bit words: four Bernoulli draws per generated number,
    which makes mask sampling ~70× cheaper than ``torch.rand`` (it dominated MC-dropout time). The
    drop probability is thereby quantised to multiples of 2⁻¹⁶ (exact for 0.5, 0.25, ...; 0.2 becomes
    0.199997); the kept units are scaled by the exact inverse keep rate, so the layer stays unbiased.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        drops = round(p * _RESOLUTION)
        if drops >= _RESOLUTION:  # within 2⁻¹⁷ of 1: every unit dropped, the scale 1/(1 − p) infinite
            raise ValueError(f"dropout probability {p} is too close to 1 (masks resolve p in steps of 2⁻¹⁶); use p <= {1 - 1 / _RESOLUTION}")
        self.p = p
        self.active: bool | None = None
        self.generator: torch.Generator | None = None
        self.draws = 1  # a mask is drawn as this many equal consecutive slices, one generator call each
        # (row indices, batch size) when only those rows of a batch pass through: each draw's mask is
        # drawn for the whole batch and those rows' part used, so a row's mask is what it gets in the batch
        self.rows: tuple[torch.Tensor, int] | None = None
        self._threshold = drops - _RESOLUTION // 2  # int16 words below it are dropped
        self._scale = _RESOLUTION / (_RESOLUTION - drops)

    @property
    def on(self) -> bool:
        return self.p > 0.0 and (self.training if self.active is None else self.active)

    def sample_keep(self, shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Boolean keep-mask of ``shape``, each entry kept with probability 1 − p.

        The mask is drawn as ``self.draws`` equal slices along the first dimension, one generator call
        each. Monte-Carlo sampling sets ``draws`` to the number of samples in a chunk, so every sample's
        mask is one call on the layer's stream and the masks do not depend on how samples are chunked.
        With ``rows`` set, ``shape`` is sample-major over those rows and the slices are the whole batch's."""
        if self.rows is not None:
            index, batch = self.rows
            full = self._draw_keep((self.draws * batch, *shape[1:]), device)
            return full.view(self.draws, batch, *shape[1:])[:, index].reshape(shape)
        return self._draw_keep(shape, device)

    def _draw_keep(self, shape: torch.Size | tuple[int, ...], device: torch.device) -> torch.Tensor:
        if shape[0] % self.draws:
            raise ValueError(f"mask of shape {tuple(shape)} cannot be split into {self.draws} draws")
        n = 1
        for d in shape:
            n *= d
        n //= self.draws
        # draw where the generator lives (a CPU generator may drive a CUDA model), then move
        source = self.generator.device if self.generator is not None else device
        per_draw = (n + 3) // 4
        words = torch.empty((self.draws, per_draw), dtype=torch.int64, device=source)
        for row in words:
            torch.randint(-(2**63), 2**63 - 1, (per_draw,), generator=self.generator, out=row)
        words = words.view(torch.int16)[:, :n]
        return (words.view(shape) >= self._threshold).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.on:
            return x
        return (x * self._scale) * self.sample_keep(x.shape, x.device)

    def replicate(self, h: torch.Tensor, samples: int) -> torch.Tensor:
        """Apply ``samples`` independent masks to ``h`` at once: ``(samples·N, ...)``, sample-major.

        Equals ``self(h.repeat(samples, ...))`` without materialising the replicated input."""
        if not self.on:
            return h.unsqueeze(0).expand(samples, *h.shape).reshape(samples * h.shape[0], *h.shape[1:])
        keep = self.sample_keep((samples * h.shape[0], *h.shape[1:]), h.device).view(samples, *h.shape)
        return ((h * self._scale).unsqueeze(0) * keep).view(samples * h.shape[0], *h.shape[1:])

    def extra_repr(self) -> str:
        return f"p={self.p}"
