"""The model protocol: every model is a :class:`BayesianClassifier` returning a :class:`Predictive`.

A model is a deterministic *trunk* (every layer before the first dropout) followed by a stochastic
*head*. Monte-Carlo dropout computes the trunk once and runs only the head S times on a replicated
batch (sample-major, chunked to bound memory) — the same outputs as S full forward passes with the
same masks, at a fraction of the cost.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from bayesrobust.errors import CheckpointError, ConfigError
from bayesrobust.models.layers import MCDropout
from bayesrobust.predictive import Predictive, log_mean_prob
from bayesrobust.registry import Registry
from bayesrobust.seeding import derive_seed, make_generator
from bayesrobust.validation import check_images

MODES = ("mc_dropout", "plain")
CHECKPOINT_FORMAT = "bayesrobust-model/1"
# Upper bound on elements of one replicated head input; bounds MC memory to ~64 MB of float32.
MC_CHUNK_ELEMENTS = 1 << 24


class BayesianClassifier(nn.Module):
    """Base class: subclasses build ``self.layers`` (an ``nn.Sequential`` mapping images to logits)
    and call :meth:`_split` once. ``mode`` decides whether dropout stays on when predicting."""

    arch: ClassVar[str]
    num_classes: int = 10
    default_samples: int = 50

    def __init__(self, *, mode: str = "mc_dropout", **params: Any) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.params = dict(params)
        self.history_: list[dict[str, float]] = []

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
    def stochastic(self) -> bool:
        """True when the predictive is Monte-Carlo (dropout kept on at test time)."""
        return self.mode == "mc_dropout"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @contextmanager
    def dropout_sampling(self, active: bool, generator: torch.Generator | None = None,
                         streams: list[torch.Generator] | None = None) -> Iterator[None]:
        """Within the block, dropout is on (``active``) or off, drawing masks from ``generator`` — or,
        when ``streams`` is given, each dropout layer from its own generator. Restores the previous
        state afterwards; the module's train/eval mode is never touched."""
        layers = self.dropouts()
        streams = streams if streams is not None else [generator] * len(layers)
        saved = [(m.active, m.generator, m.draws) for m in layers]
        for m, stream in zip(layers, streams):
            m.active, m.generator = active, stream
        try:
            yield
        finally:
            for m, (a, g, d) in zip(layers, saved):
                m.active, m.generator, m.draws = a, g, d

    def _mask_streams(self, generator: torch.Generator | None) -> list[torch.Generator]:
        """One fresh generator per dropout layer, seeded from one draw of ``generator`` (the global
        generator when None): a call's masks are a function of that draw alone."""
        device = generator.device if generator is not None else self.device
        base = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        return [make_generator(derive_seed(base, "dropout", str(i)), device) for i in range(len(self.dropouts()))]

    # --- differentiable outputs -----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one pass; dropout follows the training flag and any active sampling."""
        return self.head(self.trunk(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic logits ``(N, C)`` with dropout off (the weight-averaging approximation):
        the margin scores C&W and JSMA work on. Like every entry point, takes ``x`` of any floating
        dtype on any device and returns on the model's device."""
        x = self._inputs(x)
        with self.dropout_sampling(False):
            return self(x)

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Validated float32 images on the model's device (differentiable, no copy when already there)."""
        return check_images(x).to(self.device)

    def sample_logits(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Logit samples ``(S, N, C)``, differentiable. Plain models return S = 1 deterministic pass.

        The head runs on chunks of samples so that one replicated input stays under
        ``MC_CHUNK_ELEMENTS``; without gradients that bounds memory. Each dropout layer draws the masks
        of sample 0, 1, ..., S−1 in order from its own stream, one call per sample, so the result is
        the same however the samples are chunked. Under autograd (attacks with EOT)
        every chunk's activations are kept for the backward pass, so memory grows with samples × batch
        (measured for the quickstart LeNet: ≈ 16 KB per image and sample; C&W with 10 masks on 250 images
        peaks 231 MB above the loaded model) — attack in batches (``run_batched``) to bound it."""
        x = self._inputs(x)
        if not self.stochastic:
            with self.dropout_sampling(False):
                return self(x)[None]
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        with self.dropout_sampling(True, streams=self._mask_streams(generator)):
            h = self.trunk(x)
            per_sample = max(1, h[0].numel()) * h.shape[0]
            chunk = max(1, min(samples, MC_CHUNK_ELEMENTS // max(per_sample, 1)))
            outs = []
            for start in range(0, samples, chunk):
                s = min(chunk, samples - start)
                for m in self.dropouts():
                    m.draws = s  # one stream call per sample (see MCDropout.sample_keep)
                rep = self.head[0].replicate(h, s)  # the head starts with its first dropout
                outs.append(self.head[1:](rep).view(s, h.shape[0], -1))
        return torch.cat(outs, 0)

    def log_prob(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable log of the MC-averaged class probabilities ``(N, C)``: the objective attacks
        use. ``samples`` is the number of dropout masks to average over (expectation over
        transformation); plain models ignore it."""
        return log_mean_prob(torch.log_softmax(self.sample_logits(x, samples, generator=generator), -1))

    # --- the predictive -----------------------------------------------------------------------
    @torch.no_grad()
    def predictive(self, x: torch.Tensor, samples: int | None = None, *, generator: torch.Generator | None = None,
                   batch_size: int = 1000) -> Predictive:
        """The predictive distribution on ``x``: ``samples`` MC-dropout draws (default 50) for
        ``mc_dropout`` models, one deterministic pass for ``plain`` ones. Returned on the CPU."""
        x = check_images(x)
        samples = self.default_samples if samples is None else samples
        parts = []
        for start in range(0, x.shape[0], batch_size):
            xb = x[start: start + batch_size].to(self.device)
            parts.append(Predictive.from_logits(self.sample_logits(xb, samples, generator=generator)))
        return parts[0] if len(parts) == 1 else Predictive.concat(parts)

    # --- training ---------------------------------------------------------------------------
    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> BayesianClassifier:
        """Train on ``train`` (a Dataset) with a ``TrainSection``; early-stop on ``val`` NLL."""
        from bayesrobust.models.training import train_model

        train_model(self, train, config, val=val, seed=seed, progress=progress)
        return self

    def with_mode(self, mode: str) -> BayesianClassifier:
        """The same weights in another inference mode (``self`` when the mode already matches), e.g.
        a plain network's MC-dropout twin, as in Choi's dropout-at-test-time check."""
        if mode == self.mode:
            return self
        twin = build_model(self.arch, mode=mode, **self.params).to(self.device)
        twin.load_state_dict(self.state_dict())
        return twin

    # --- persistence -------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"arch": self.arch, "mode": self.mode, "params": self.params}

    def save(self, path: str | Path) -> Path:
        """Write weights + JSON metadata to ``path`` (a ``.pt`` file) and a readable ``.json`` beside it."""
        from bayesrobust.runs import atomic_path, write_json_atomic

        path = Path(path)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "metadata": json.dumps({**self.describe(), "history": self.history_}),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        write_json_atomic(path.with_suffix(".json"), {**self.describe(), "history": self.history_})
        return path

    @classmethod
    def load(cls, path: str | Path, map_location: str = "cpu") -> BayesianClassifier:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``: nothing is unpickled)."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path}: not a bayesrobust model checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r})")
        meta = json.loads(payload["metadata"])
        if cls is not BayesianClassifier and meta["arch"] != cls.arch:
            raise CheckpointError(f"{path}: checkpoint is a {meta['arch']!r} model, not {cls.arch!r}")
        model = build_model(meta["arch"], mode=meta["mode"], **meta["params"])
        try:
            model.load_state_dict(payload["state_dict"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit architecture {meta['arch']!r} {meta['params']}: {exc}") from None
        model.history_ = meta.get("history", [])
        return model


MODELS: Registry[type[BayesianClassifier]] = Registry("model architecture")


def build_model(arch: str, *, mode: str = "mc_dropout", **params: Any) -> BayesianClassifier:
    """Instantiate a registered architecture; unknown parameters raise ConfigError naming them."""
    import inspect

    cls = MODELS.get(arch)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "mode"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for model {arch!r}; allowed: {', '.join(sorted(accepted))}")
    try:
        return cls(mode=mode, **params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {arch!r}: {exc}") from None
