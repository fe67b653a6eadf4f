"""The model contract: every model is a :class:`BayesianClassifier` returning a :class:`Predictive`.

The contract is what attacks, suites, the report and checkpoints rely on, and nothing about how a model
gets its uncertainty: dropout nets (``models/dropout.py``), the deep-kernel GP (``models/gpdnn.py``) and
any later family implement it. A family supplies three computations on validated inputs —
:meth:`raw_sample_logits`, :meth:`raw_logits` and (optionally) :meth:`raw_log_prob` — plus ``fit``; the
contract validates inputs, moves them to the model's device, batches the predictive and persists.

Meanings, for every likelihood: ``sample_logits`` are S draws of *log class probabilities up to a
constant per draw* (softmax of a draw is that draw's class probabilities); ``log_prob`` is the
differentiable log of the predictive (the average of those probabilities over the posterior), what
attacks ascend; ``logits`` are deterministic per-class scores whose argmax is the point prediction, the
margins C&W and JSMA work on (a net's dropout-off logits, a GP's posterior-mean latent function).
"""

from __future__ import annotations

import json
from abc import ABCMeta, abstractmethod
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from bayesrobust.errors import CheckpointError, ConfigError, ForeignCheckpoint
from bayesrobust.models.calibrators import calibrator_from_dict
from bayesrobust.predictive import Predictive, log_mean_prob
from bayesrobust.registry import Registry
from bayesrobust.schema import refuse_unknown_keywords
from bayesrobust.seeding import isolated_rng
from bayesrobust.validation import check_images

CHECKPOINT_FORMAT = "bayesrobust-model/1"
DIGIT_SHAPE = (1, 28, 28)


class Draws(str, Enum):
    """How a model's predictive is drawn — the one thing the judge, EOT, detectors, suites and the
    report ask about a model's randomness.

    ``sampled``: Monte-Carlo draws (MC dropout masks, a GP's latent f, a VAE's z); S is what the caller
    asks for and a generator decides them. ``fixed``: a fixed set of K predictions (a deep ensemble's
    members); S = K whatever is asked, and no generator changes them. ``none``: deterministic, S = 1."""

    SAMPLED = "sampled"
    FIXED = "fixed"
    NONE = "none"

    @property
    def random(self) -> bool:
        """True when a generator decides the draws (fresh draws can re-judge an attack; EOT means something)."""
        return self is Draws.SAMPLED

    @property
    def several(self) -> bool:
        """True when S > 1 draws carry spread (mutual information, variance)."""
        return self is not Draws.NONE


@runtime_checkable
class Reconstructs(Protocol):
    """A capability: a generative view of the inputs (a VAE's), what MagNet-style detectors score and
    detector-aware attacks penalise. Suites ask for it, never for an architecture by name."""

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor: ...

    def elbo(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor: ...


class BayesianClassifier(nn.Module, metaclass=ABCMeta):
    """A classifier of images ``(N, *input_shape)`` in [0, 1] whose output is a predictive distribution.

    Subclasses set ``arch`` (the registry name) and ``modes`` (the inference modes they offer; the
    constructor's ``mode`` default is the model's default), pass their constructor's keyword arguments
    to ``super().__init__`` as ``params`` (what a checkpoint rebuilds the model from), and implement the
    ``raw_*`` computations, ``draws`` (the :class:`Draws` protocol) and ``fit``. ``input_shape`` and
    ``num_classes`` default to MNIST's digits; a family that takes others sets them per instance."""

    arch: ClassVar[str]
    modes: ClassVar[tuple[str, ...]]
    num_classes: int = 10
    input_shape: tuple[int, ...] = DIGIT_SHAPE
    default_samples: int = 50
    supports_temperature: ClassVar[bool] = False  # softmax logits that temperature scaling and the calibrators may map
    # constructor parameters of a tiny instance (seconds to train, for contract tests and examples); every
    # registered family sets them, the wrapper of a user's network (built from that network) sets None
    tiny_params: ClassVar[dict[str, Any] | None]

    @classmethod
    def tiny(cls, mode: str | None = None, **overrides: Any) -> BayesianClassifier:
        """A tiny instance of this family in ``mode`` (default: the constructor's), ``overrides`` applied."""
        if getattr(cls, "tiny_params", None) is None:
            raise ConfigError(f"{cls.__name__} has no tiny instance of its own: wrap a small network instead")
        params = {**cls.tiny_params, **overrides}
        return cls(mode=mode, **params) if mode else cls(**params)

    def __init__(self, *, mode: str, **params: Any) -> None:
        super().__init__()
        if mode not in self.modes:
            raise ConfigError(f"mode must be one of {self.modes}, got {mode!r}")
        self.mode = mode
        self.params = dict(params)
        self.history_: list[dict[str, float]] = []
        self.temperature = 1.0  # post-hoc calibration (models/temperature.py); part of the checkpoint's metadata
        self.calibrator = None  # or another post-hoc calibrator (models/calibrators.py), applied after T; likewise

    # --- what a family implements --------------------------------------------------------------
    @property
    @abstractmethod
    def draws(self) -> Draws:
        """How the predictive is drawn (:class:`Draws`)."""

    def draw_count(self, samples: int) -> int:
        """S, the number of draws a predictive asked for ``samples`` has: ``samples`` when sampled, 1 when
        deterministic; a family with fixed draws overrides this with its set's size K."""
        if self.draws is Draws.FIXED:
            raise TypeError(f"{self.arch} has fixed draws: its family must say how many (override draw_count)")
        return _checked(samples) if self.draws is Draws.SAMPLED else 1

    def mc_dropout_twin(self) -> BayesianClassifier | None:
        """The same weights with dropout kept on at test time (Choi's check), or None where the model has
        no dropout layers. A capability, so suites never ask for an architecture or a mode by name."""
        return None

    @abstractmethod
    def raw_sample_logits(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        """``(S, N, C)`` draws on float32 images already on the model's device, unvalidated (see the
        module docstring for their meaning). Deterministic models return S = 1."""

    @abstractmethod
    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic per-class scores ``(N, C)`` on unvalidated images on the model's device."""

    def raw_log_prob(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        """Log predictive ``(N, C)``; by default the log of the mean probability over ``samples`` draws.
        Families with a closed form (or quadrature) override it."""
        return self.raw_log_prob_and_draws(x, samples, generator)[0]

    def raw_log_prob_and_draws(self, x: torch.Tensor, samples: int,
                               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(log predictive ``(N, C)``, log-probability draws ``(S, N, C)``) from one set of draws; by
        default the draws' log-softmax and the log of their mean."""
        draws = torch.log_softmax(self.raw_sample_logits(x, samples, generator), -1)
        return log_mean_prob(draws), draws

    def raw_predictive(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> Predictive:
        """The predictive of one batch; by default built from the draws alone."""
        return Predictive.from_logits(self.raw_sample_logits(x, samples, generator))

    def raw_predictive_rows(self, x: torch.Tensor, rows: torch.Tensor, samples: int,
                            generator: torch.Generator | None) -> Predictive:
        """``raw_predictive(x, …)[rows]``: the rows' predictive with the draws they get in the whole batch.
        Families whose draws can be restricted to rows override it to skip the other rows' work."""
        return self.raw_predictive(x, samples, generator)[rows.cpu()]

    def point_log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Cheap deterministic log class probabilities for monitoring (early stopping); by default
        the log-softmax of :meth:`logits`."""
        return torch.log_softmax(self.logits(x), -1)

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The model's last hidden representation ``(N, D)`` (what density-based detectors compare);
        families that have one override it."""
        raise ConfigError(f"{self.arch} models expose no feature representation (needed by density-based detectors)")

    @abstractmethod
    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> BayesianClassifier:
        """Train on ``train`` (a Dataset) with a ``TrainSection``; early-stop on ``val`` NLL."""

    # --- the public, validated entry points -----------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_inputs(self, x: torch.Tensor, *, name: str = "x") -> torch.Tensor:
        """``x`` validated against this model's ``input_shape`` (float32, on x's own device)."""
        return check_images(x, name=name, shape=tuple(self.input_shape))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Validated float32 images on the model's device (differentiable, no copy when already there)."""
        return self.check_inputs(x).to(self.device)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic last-hidden-layer features ``(N, D)`` of validated images (Feinman et al.'s
        kernel density works on them)."""
        return self.raw_features(self._inputs(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic scores ``(N, C)``. Like every entry point, takes ``x`` of any floating dtype on
        any device, validates it, and returns on the model's device."""
        return self.raw_logits(self._inputs(x))

    def sample_logits(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable draws ``(S, N, C)``; S = 1 for deterministic models."""
        return self.raw_sample_logits(self._inputs(x), _checked(samples), generator)

    def log_prob(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable log predictive ``(N, C)``: the objective attacks use. ``samples`` is the number
        of posterior draws averaged (expectation over transformation); exact families ignore it."""
        return self.raw_log_prob(self._inputs(x), _checked(samples), generator)

    def log_prob_and_draws(self, x: torch.Tensor, samples: int = 1, *,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The log predictive and the log-probability draws it summarises, consistent with each other:
        what an uncertainty-aware attack differentiates (entropy from the first, mutual information
        from both). The draws need not be differentiable in ``x`` (a GP's are piecewise constant)."""
        return self.raw_log_prob_and_draws(self._inputs(x), _checked(samples), generator)

    def margin_logits(self, x: torch.Tensor, samples: int = 1, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Differentiable per-class scores for margin objectives (C&W, JSMA): ``logits`` for
        deterministic models, by default the mean of ``samples`` draws for stochastic ones (EOT over
        dropout masks; a fixed set's mean). Families whose draws are not differentiable in ``x`` override it."""
        if not self.draws.several:
            return self.logits(x)
        return self.sample_logits(x, samples, generator=generator).mean(0)

    @torch.no_grad()
    def predictive(self, x: torch.Tensor, samples: int | None = None, *, generator: torch.Generator | None = None,
                   batch_size: int = 1000) -> Predictive:
        """The predictive distribution on ``x``: ``samples`` posterior draws (default
        ``default_samples``) for sampled models, the fixed set for fixed ones, one deterministic pass
        otherwise (S = :meth:`draw_count`). On the CPU."""
        x = self.check_inputs(x)
        samples = _checked(self.default_samples if samples is None else samples)
        parts = []
        for start in range(0, x.shape[0], batch_size):
            parts.append(self.raw_predictive(x[start: start + batch_size].to(self.device), samples, generator))
        return parts[0] if len(parts) == 1 else Predictive.concat(parts)

    @torch.no_grad()
    def predictive_rows(self, x: torch.Tensor, rows: torch.Tensor, samples: int | None = None, *,
                        generator: torch.Generator | None = None, batch_size: int = 1000) -> Predictive:
        """``predictive(x, samples, generator=generator, batch_size=batch_size)[rows]`` — each row with the
        draws it gets in the whole batch (draws are assigned by position) — computing only those rows where
        the family can. What an attack's judge asks when a few examples of a batch are in question."""
        x = self.check_inputs(x)
        rows = torch.as_tensor(rows)
        rows = torch.nonzero(rows.cpu()).flatten() if rows.dtype == torch.bool else rows.long().flatten()
        samples = _checked(self.default_samples if samples is None else samples)
        if rows.numel() == 0:
            return Predictive(torch.zeros(self.draw_count(samples), 0, self.num_classes))
        if x.shape[0] > batch_size:  # the full computation draws chunk after chunk: keep its order
            return self.predictive(x, samples, generator=generator, batch_size=batch_size)[rows]
        return self.raw_predictive_rows(x.to(self.device), rows.to(self.device), samples, generator)

    def with_mode(self, mode: str) -> BayesianClassifier:
        """The same weights in another inference mode (``self`` when the mode already matches), e.g.
        a plain network's MC-dropout twin, as in Choi's dropout-at-test-time check."""
        if mode == self.mode:
            return self
        twin = build_model(self.arch, mode=mode, **self.params).to(self.device)
        twin.load_state_dict(self.state_dict())
        twin.temperature, twin.calibrator = self.temperature, self.calibrator
        return twin

    def epochs_run(self) -> float:
        """Training epochs the model ran (its ``history_``'s length; an ensemble's mean per member)."""
        return float(len(self.history_))

    # --- persistence -------------------------------------------------------------------------
    def config_spec(self) -> tuple[str, dict[str, Any]]:
        """(``arch``, ``params``) as a config names this model: what a config's checkpoint is checked
        against."""
        return self.arch, self.params

    def describe(self) -> dict[str, Any]:
        out = {"arch": self.arch, "mode": self.mode, "params": self.params}
        if self.temperature != 1.0:
            out["temperature"] = self.temperature
        if self.calibrator is not None:
            out["calibrator"] = self.calibrator.to_dict()
        return out

    def save(self, path: str | Path) -> Path:
        """Write weights + JSON metadata to ``path`` (a ``.pt`` file) and a readable ``.json`` beside it."""
        from bayesrobust.atomic import atomic_path, write_json_atomic

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
    def load(cls, path: str | Path, map_location: str = "cpu", *, network: nn.Module | None = None) -> BayesianClassifier:
        """Load a checkpoint written by :meth:`save` (``weights_only=True``: nothing is unpickled).
        ``network``: for a wrapped model whose class cannot be imported again (defined in a notebook or
        a function), an instance of it to load the weights into."""
        path = Path(path)
        payload = read_weights(path, map_location, "checkpoint")
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ForeignCheckpoint(
                f"{path}: not a bayesrobust model checkpoint (format {payload.get('format') if isinstance(payload, dict) else None!r}). "
                "A network's own state_dict loads into its wrapped form: bayesrobust.wrap(net).load_network_weights(path), "
                "or in a config arch = 'package.module:Class' with checkpoint = the file")
        meta = json.loads(payload["metadata"])
        if cls is not BayesianClassifier and meta["arch"] != cls.arch:
            raise CheckpointError(f"{path}: checkpoint is a {meta['arch']!r} model, not {cls.arch!r}")
        params = {**meta["params"], **({"network": network} if network is not None else {})}
        model = build_model(meta["arch"], mode=meta["mode"], **params)
        try:
            model.load_state_dict(payload["state_dict"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not fit architecture {meta['arch']!r} {meta['params']}: {exc}") from None
        model.history_ = meta.get("history", [])
        model.temperature = float(meta.get("temperature", 1.0))
        model.calibrator = calibrator_from_dict(meta.get("calibrator"))
        return model.train(False)  # as ``fit`` leaves it: GPyTorch caches K_ZZ factors only when not training


class SoftmaxClassifier(BayesianClassifier):
    """A family whose draws are softmax logits (dropout nets, wrapped networks, ensembles): post-hoc
    temperature scaling divides every draw by T (``models/temperature.py``), and a calibrator
    (``models/calibrators.py``) maps it after that."""

    supports_temperature: ClassVar[bool] = True

    def _calibrated(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits if self.temperature == 1.0 else logits / self.temperature
        return logits if self.calibrator is None else self.calibrator.apply(logits)


def read_weights(path: Path, map_location: str, what: str) -> Any:
    """A ``.pt`` file read with ``weights_only=True`` (nothing is unpickled); a missing or unreadable
    file is a CheckpointError naming ``what`` it should have been."""
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def _checked(samples: int) -> int:
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    return samples


MODELS: Registry[type[BayesianClassifier]] = Registry("model architecture", package="bayesrobust.models")  # each family in its module


def build_for_images(arch: str, shape: tuple[int, ...], *, mode: str | None = None, seed: int | None = None,
                     **params: Any) -> BayesianClassifier:
    """:func:`build_model` for images of ``shape`` (C, H, W): a user network named by import path is
    wrapped for that shape; a family built for another shape is a ConfigError saying both."""
    if is_import_path(arch):
        with _initialisation_rng(seed):
            return MODELS.get("wrapped")(mode=mode or "deterministic", module=arch, module_params=params, input_shape=shape)
    model = build_model(arch, mode=mode, seed=seed, **params)
    check_shape(model, shape, f"a {arch!r} model")
    return model


def check_shape(model: BayesianClassifier, shape: tuple[int, ...], what: str) -> None:
    if tuple(model.input_shape) != tuple(shape):
        raise ConfigError(f"{what} takes images {tuple(model.input_shape)}, the training data are {tuple(shape)}")


def is_import_path(arch: str) -> bool:
    """``"package.module:Class"`` names a user network (wrapped, ``models/wrapped.py``), not a family."""
    return ":" in arch


def build_model(arch: str, *, mode: str | None = None, seed: int | None = None, **params: Any) -> BayesianClassifier:
    """Instantiate a registered architecture in ``mode`` (None or "": its constructor's default);
    unknown parameters raise ConfigError naming them. An import path ``"package.module:Class"`` builds
    that user network with ``params`` and wraps it (``mode`` deterministic or mc_dropout).

    ``seed`` (scikit-learn's ``random_state``) fixes the initial weights, whatever the global RNGs hold,
    and leaves them as they were; None draws from the global RNGs. With ``fit(..., seed=)`` it fixes the
    trained model: ``build_model("lenet", seed=0).fit(train, config, seed=0)`` twice gives one network."""
    if is_import_path(arch):
        with _initialisation_rng(seed):
            return MODELS.get("wrapped")(mode=mode or "deterministic", module=arch, module_params=params)
    cls = MODELS.get(arch)
    refuse_unknown_keywords(params, cls.__init__, what=f"model {arch!r}", ignore=("mode",))
    try:
        with _initialisation_rng(seed):
            return cls(mode=mode, **params) if mode else cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {arch!r}: {exc}") from None


def _initialisation_rng(seed: int | None):
    """The global RNGs seeded with ``seed`` for the constructor and restored after it; untouched for None."""
    return nullcontext() if seed is None else isolated_rng(seed)
