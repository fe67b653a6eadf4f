"""The dropout family: nets whose uncertainty is Monte-Carlo dropout kept on at test time.

A net is a deterministic *trunk* (every layer before the first dropout) followed by a stochastic
*head*. Monte-Carlo dropout computes the trunk once and runs only the head S times on a replicated
batch (sample-major, chunked to bound memory) — the same outputs as S full forward passes with the
same masks, at a fraction of the cost. ``mode = "plain"`` is the same net with dropout off: the
softmax baseline.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bayesrobust.errors import ConfigError
from bayesrobust.models.base import Draws, SoftmaxClassifier
from bayesrobust.models.layers import MCDropout
from bayesrobust.predictive import Predictive
from bayesrobust.seeding import derive_seed, make_generator

# Upper bound on elements of one replicated head input; bounds MC memory to ~64 MB of float32.
MC_CHUNK_ELEMENTS = 1 << 24


class DropoutClassifier(SoftmaxClassifier):
    """Subclasses build an ``nn.Sequential`` mapping images to logits and call :meth:`_split` once.
    ``mode`` decides whether dropout stays on when predicting."""

    modes: ClassVar[tuple[str, ...]] = ("mc_dropout", "plain")

    def __init__(self, *, mode: str = "mc_dropout", **params: Any) -> None:
        super().__init__(mode=mode, **params)

    # --- structure ------------------------------------------------------------------------
    def _split(self, layers: nn.Sequential) -> None:
        """Cut ``layers`` at the first dropout into ``trunk`` (deterministic) and ``head``."""
        first = next((i for i, m in enumerate(layers) if isinstance(m, MCDropout) and m.p > 0), len(layers))
        self.trunk = layers[:first]
        self.head = layers[first:]
        if self.mode == "mc_dropout" and not self.dropouts():
            raise ConfigError(f"{self.arch}: mode 'mc_dropout' needs dropout > 0; use mode = 'plain'")

    def dropouts(self) -> list[MCDropout]:
        return [m for m in self.modules() if isinstance(m, MCDropout) and m.p > 0]

    @property
    def draws(self) -> Draws:
        """Sampled when dropout stays on at test time (Monte-Carlo dropout), else none."""
        return Draws.SAMPLED if self.mode == "mc_dropout" else Draws.NONE

    def mc_dropout_twin(self) -> DropoutClassifier | None:
        return self.with_mode("mc_dropout") if self.dropouts() else None

    @contextmanager
    def dropout_sampling(self, active: bool, generator: torch.Generator | None = None,
                         streams: list[torch.Generator] | None = None,
                         rows: tuple[torch.Tensor, int] | None = None) -> Iterator[None]:
        """Within the block, dropout is on (``active``) or off, drawing masks from ``generator`` — or,
        when ``streams`` is given, each dropout layer from its own generator; ``rows`` = (row indices,
        batch size) when only those rows of a batch pass (see ``MCDropout.rows``). Restores the previous
        state afterwards; the module's train/eval mode is never touched."""
        layers = self.dropouts()
        streams = streams if streams is not None else [generator] * len(layers)
        saved = [(m.active, m.generator, m.draws, m.rows) for m in layers]
        for m, stream in zip(layers, streams):
            m.active, m.generator, m.rows = active, stream, rows
        try:
            yield
        finally:
            for m, (a, g, d, r) in zip(layers, saved):
                m.active, m.generator, m.draws, m.rows = a, g, d, r

    def _mask_streams(self, generator: torch.Generator | None) -> list[torch.Generator]:
        """One fresh generator per dropout layer, seeded from one draw of ``generator`` (the global
        generator when None): a call's masks are a function of that draw alone."""
        device = generator.device if generator is not None else self.device
        base = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        return [make_generator(derive_seed(base, "dropout", str(i)), device) for i in range(len(self.dropouts()))]

    # --- computations ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one pass; dropout follows the training flag and any active sampling."""
        return self.head(self.trunk(x))

    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout off (the weight-averaging approximation), divided by the temperature."""
        with self.dropout_sampling(False):
            return self._calibrated(self(x))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last linear layer, dropout off: the last hidden layer's activations
        (the pixels themselves for a net without hidden layers)."""
        layers = [*self.trunk, *self.head]
        last = max(i for i, m in enumerate(layers) if isinstance(m, nn.Linear))
        with self.dropout_sampling(False):
            return nn.Sequential(*layers[:last])(x).flatten(1)

    def raw_sample_logits(self, x: torch.Tensor, samples: int, generator: torch.Generator | None,
                          rows: torch.Tensor | None = None) -> torch.Tensor:
        """S dropout masks; plain models return S = 1 deterministic pass.

        The head runs on chunks of samples so that one replicated input stays under
        ``MC_CHUNK_ELEMENTS``; without gradients that bounds memory. Each dropout layer draws the masks
        of sample 0, 1, ..., S−1 in order from its own stream, one call per sample, so the result is
        the same however the samples are chunked. Under autograd (attacks with EOT) every chunk's
        activations are kept for the backward pass, so memory grows with samples × batch (measured for
        the quickstart LeNet: ≈ 16 KB per image and sample; C&W with 10 masks on 250 images peaks 231 MB
        above the loaded model) — attack in batches (``run_batched``) to bound it.

        ``rows``: compute only those rows of the batch, each under the masks it gets in the whole batch
        (the masks of every row are still drawn — cheap — and the chunking is the whole batch's)."""
        if rows is not None:
            x, batch = x[rows], (rows, x.shape[0])
        else:
            batch = None
        if not self.draws.several:
            return self.raw_logits(x)[None]  # already tempered
        with self.dropout_sampling(True, streams=self._mask_streams(generator), rows=batch):
            h = self.trunk(x)
            per_sample = max(1, h.shape[1:].numel()) * (h.shape[0] if batch is None else batch[1])
            chunk = max(1, min(samples, MC_CHUNK_ELEMENTS // max(per_sample, 1)))
            outs = []
            for start in range(0, samples, chunk):
                s = min(chunk, samples - start)
                for m in self.dropouts():
                    m.draws = s  # one stream call per sample (see MCDropout.sample_keep)
                rep = self.head[0].replicate(h, s)  # the head starts with its first dropout
                outs.append(self.head[1:](rep).view(s, h.shape[0], -1))
        return self._calibrated(torch.cat(outs, 0))

    def raw_predictive_rows(self, x: torch.Tensor, rows: torch.Tensor, samples: int,
                            generator: torch.Generator | None) -> Predictive:
        return Predictive.from_logits(self.raw_sample_logits(x, samples, generator, rows=rows))

    # --- training ---------------------------------------------------------------------------
    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> DropoutClassifier:
        """Mini-batch cross-entropy (``models/training.py``), dropout masks from a stream derived from
        ``seed``."""
        from bayesrobust.models.training import train_model

        masks = make_generator(derive_seed(seed, "train", "dropout"), self.device)
        with self.dropout_sampling(True, masks) if self.dropouts() else nullcontext():
            train_model(self, train, config, loss=lambda x, y: F.cross_entropy(self(x), y), val=val, seed=seed,
                        progress=progress)
        return self
