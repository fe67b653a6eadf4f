"""Any user network as a Bayesian classifier: :func:`wrap` and the ``wrapped`` family.

A researcher's own ``nn.Module`` that maps images ``(N, C, H, W)`` in [0, 1] to logits enters the
toolkit as it is: ``deterministic`` (one softmax pass, the baseline) or ``mc_dropout`` (its own
``nn.Dropout`` / ``Dropout2d`` / … layers kept on inside the predictive while BatchNorm and everything
else stay in evaluation mode; Gal & Ghahramani 2016). The network is never rewritten: every call puts
each submodule back in the train/eval state it had, and no call touches a parameter's ``.grad``.
Temperature scaling (Guo et al. 2017) works on top of either form, and a list of networks is a deep
ensemble (``models/ensemble.py``). torch-uncertainty's ``mc_dropout`` wrapper and laplace-torch's
``Laplace(model, ...)`` are the peers' versions of the same idea.

Monte-Carlo dropout on a generic module cannot share a trunk (nothing says where the first dropout
sits), so the T masks are batched instead: the batch is replicated sample-major (``(T·N, C, H, W)``),
chunked to bound memory, and the network runs once per chunk. The masks come from PyTorch's own RNG,
forked and seeded from the caller's generator, so the same generator gives the same draws and the
caller's global RNG is left as it was.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from bayesrobust.errors import CheckpointError, ConfigError, InputError
from bayesrobust.models.base import CHECKPOINT_FORMAT, DIGIT_SHAPE, MODELS, Draws, SoftmaxClassifier, read_weights
from bayesrobust.seeding import derive_seed

# Upper bound on input elements of one replicated chunk (T·N·C·H·W): 2 MB of float32 inputs. On 2 CPU
# cores smaller chunks are no slower (a 784-pixel LeNet: 38 img/s at 2^16-2^19, 35 at 2^22, T = 50).
MC_CHUNK_INPUT_ELEMENTS = 1 << 19
DROPOUT_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def import_object(path: str, where: str = "arch") -> Any:
    """``"package.module:Name"`` → the object, or a ConfigError saying what failed."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {path!r} is not an import path of the form 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{where}: cannot import {module_name!r} ({exc}); is it on PYTHONPATH?") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{where}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


def class_path(obj: object) -> str:
    """The import path of ``obj``'s class (what a checkpoint rebuilds it from); "" for a class defined
    inside a function, which cannot be imported again."""
    cls = type(obj)
    return "" if "<locals>" in cls.__qualname__ else f"{cls.__module__}:{cls.__qualname__}"


def dropout_layers(network: nn.Module) -> list[nn.Module]:
    return [m for m in network.modules() if isinstance(m, DROPOUT_LAYERS) and m.p > 0]


@contextmanager
def training_flags_kept(network: nn.Module) -> Iterator[None]:
    """Whatever the block does to train/eval modes, each submodule ends with the flag it had before."""
    saved = [(m, m.training) for m in network.modules()]
    try:
        yield
    finally:
        for m, training in saved:
            m.training = training


@contextmanager
def evaluation_state(network: nn.Module, *, dropout: bool) -> Iterator[None]:
    """Within the block every submodule is in evaluation mode except, with ``dropout``, the dropout
    layers; afterwards each submodule has exactly the training flag it had before."""
    with training_flags_kept(network):
        network.train(False)
        if dropout:
            for m in dropout_layers(network):
                m.train(True)
        yield


@contextmanager
def seeded_torch_rng(seed: int, device: torch.device) -> Iterator[None]:
    """PyTorch's own RNG (what ``nn.Dropout`` draws from) seeded with ``seed`` inside the block, the
    caller's RNG state (CPU, and ``device`` when it is a GPU) restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@MODELS.register("wrapped")
class WrappedClassifier(SoftmaxClassifier):
    """A user ``nn.Module`` returning logits, as a :class:`BayesianClassifier`.

    Args:
        mode: ``deterministic`` or ``mc_dropout`` (the network's own dropout layers kept on).
        module: the network's import path ``"package.module:Class"`` (what configs, checkpoints and Ray
            workers rebuild it from); taken from ``network`` when that is given.
        module_params: keyword arguments of the network's constructor.
        input_shape: ``(C, H, W)`` of one image (default MNIST's ``(1, 28, 28)``); every input is
            checked against it.
        num_classes: the number of logits; 0 infers it from one pass on a blank image.
        network: an already built network (``wrap`` passes it; not part of the checkpoint's params).
    """

    arch = "wrapped"
    modes: ClassVar[tuple[str, ...]] = ("deterministic", "mc_dropout")
    tiny_params = None  # built from the user's network (tests/user_nets.py holds small ones)

    def __init__(self, *, mode: str = "deterministic", module: str = "", module_params: Mapping[str, Any] | None = None,
                 input_shape: Sequence[int] = DIGIT_SHAPE, num_classes: int = 0, network: nn.Module | None = None) -> None:
        module_params = dict(module_params or {})
        if network is None:
            if not module:
                raise ValueError("no network to wrap: give it (wrap(net); for a checkpoint of a class defined in a function "
                                 "or notebook, BayesianClassifier.load(path, network=net)) or its import path "
                                 "(module='package.module:Class')")
            cls = import_object(module, "module")
            try:
                network = cls(**module_params)
            except Exception as exc:  # the user's own constructor: whatever it raises is about these parameters
                given = ", ".join(f"{k}={v!r}" for k, v in module_params.items())
                raise ConfigError(f"{module}({given}) raised {type(exc).__name__}: {exc}") from exc
        elif not isinstance(network, nn.Module):
            raise InputError(f"wrap needs a torch.nn.Module, got {type(network).__name__}")
        module = module or class_path(network)
        shape = tuple(int(d) for d in input_shape)
        if len(shape) < 1 or min(shape) < 1:
            raise InputError(f"input_shape must be positive sizes such as (1, 28, 28), got {tuple(input_shape)}")
        super().__init__(mode=mode, module=module, module_params=module_params, input_shape=list(shape),
                         num_classes=int(num_classes))
        self.network = network
        self.input_shape = shape
        self.num_classes = int(num_classes) or self._infer_classes()
        self.params["num_classes"] = self.num_classes
        if mode == "mc_dropout" and not dropout_layers(network):
            raise ConfigError(f"mode 'mc_dropout' keeps the network's own dropout layers (nn.Dropout, Dropout2d, …) on; "
                              f"{self.name} has none with p > 0: add one, or use mode = 'deterministic'")

    @property
    def name(self) -> str:
        return self.params["module"] or type(self.network).__name__

    @property
    def draws(self) -> Draws:
        return Draws.SAMPLED if self.mode == "mc_dropout" else Draws.NONE

    @property
    def device(self) -> torch.device:
        for tensor in (*self.network.parameters(), *self.network.buffers()):
            return tensor.device
        return torch.device("cpu")

    # --- computations ---------------------------------------------------------------------------
    def _infer_classes(self) -> int:
        blank = torch.zeros(2, *self.input_shape, device=self.device)
        with torch.no_grad(), evaluation_state(self.network, dropout=False):  # BatchNorm's statistics untouched
            return self._forward(blank, expected_classes=None).shape[1]

    def _forward(self, x: torch.Tensor, expected_classes: int | None = -1) -> torch.Tensor:
        """The network on ``x`` (in whatever state the caller set), its output checked to be logits."""
        try:
            out = self.network(x)
        except RuntimeError as exc:
            raise InputError(f"{self.name} failed on inputs of shape {tuple(x.shape)}: {exc}. Declare the shape it takes "
                             "with input_shape=(C, H, W)") from None
        expected = self.num_classes if expected_classes == -1 else expected_classes
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0] or (
                expected is not None and out.shape[1] != expected):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            want = f"({x.shape[0]}, {expected})" if expected else f"({x.shape[0]}, classes)"
            raise InputError(f"{self.name} must return logits {want}, returned {got}")
        return out

    def raw_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout off, BatchNorm on its running statistics, divided by the temperature."""
        with evaluation_state(self.network, dropout=False):
            return self._calibrated(self._forward(x))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the network's last linear layer, dropout off (what Feinman et al.'s kernel
        density compares), captured with a forward hook."""
        linears = [m for m in self.network.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ConfigError(f"{self.name} has no nn.Linear layer whose input could serve as features")
        captured = []
        handle = linears[-1].register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
        try:
            self.raw_logits(x)
        finally:
            handle.remove()
        return captured[-1].flatten(1)

    def raw_sample_logits(self, x: torch.Tensor, samples: int, generator: torch.Generator | None) -> torch.Tensor:
        """S dropout masks on a sample-major replicated batch, in chunks of at most
        ``MC_CHUNK_INPUT_ELEMENTS`` input elements; deterministic models return S = 1."""
        if self.mode != "mc_dropout":
            return self.raw_logits(x)[None]
        device = generator.device if generator is not None else torch.device("cpu")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device))
        n = x.shape[0]
        chunk = max(1, min(samples, MC_CHUNK_INPUT_ELEMENTS // max(1, x[0].numel() * n)))
        outs = []
        with evaluation_state(self.network, dropout=True), seeded_torch_rng(derive_seed(seed, "dropout"), x.device):
            for start in range(0, samples, chunk):
                s = min(chunk, samples - start)
                replicated = x.unsqueeze(0).expand(s, *x.shape).reshape(s * n, *x.shape[1:])
                outs.append(self._forward(replicated).view(s, n, -1))
        return self._calibrated(torch.cat(outs, 0))

    def config_spec(self) -> tuple[str, dict[str, Any]]:
        return self.params["module"], self.params["module_params"]

    def mc_dropout_twin(self) -> WrappedClassifier | None:
        if self.mode == "mc_dropout":
            return self
        return self.with_mode("mc_dropout") if dropout_layers(self.network) else None

    def with_mode(self, mode: str) -> WrappedClassifier:
        """The same weights in another form (a copy of the network: no import needed)."""
        if mode == self.mode:
            return self
        twin = WrappedClassifier(mode=mode, module=self.params["module"], module_params=self.params["module_params"],
                                 input_shape=self.input_shape, num_classes=self.num_classes,
                                 network=copy.deepcopy(self.network))
        twin.temperature, twin.calibrator, twin.default_samples = self.temperature, self.calibrator, self.default_samples
        return twin

    # --- training and weights -------------------------------------------------------------------
    def fit(self, train, config, *, val=None, seed: int = 0, progress: bool = True) -> WrappedClassifier:
        """Mini-batch cross-entropy on the network in training mode (its dropout and BatchNorm as the
        author built them; dropout drawn from a forked RNG seeded from ``seed``); afterwards every
        submodule is back in the state it had."""
        from bayesrobust.models.training import train_model

        with training_flags_kept(self.network), seeded_torch_rng(derive_seed(seed, "train", "dropout"), self.device):
            train_model(self, train, config, loss=lambda x, y: F.cross_entropy(self.network(x), y), val=val,
                        seed=seed, progress=progress)
        return self

    def load_network_weights(self, path: str | Path, map_location: str = "cpu") -> WrappedClassifier:
        """Load a ``state_dict`` of the user's network saved outside the toolkit (``torch.save(net.state_dict(),
        path)``; also ``{"state_dict": …}``), read with ``weights_only=True``. Missing or unexpected keys
        are a CheckpointError that lists them."""
        path = Path(path)
        state = read_weights(path, map_location, "weights file")
        if isinstance(state, Mapping) and state.get("format") == CHECKPOINT_FORMAT:
            raise CheckpointError(f"{path} is a bayesrobust checkpoint: load it with BayesianClassifier.load")
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: expected the network's state_dict (names → tensors)")
        own = set(self.network.state_dict())
        missing, unexpected = sorted(own - set(state)), sorted(set(state) - own)
        if missing or unexpected:
            raise CheckpointError(f"{path}: the weights do not fit {self.name}: missing keys {_listed(missing)}; "
                                  f"unexpected keys {_listed(unexpected)}")
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the weights do not fit {self.name}: {exc}") from None
        return self


def _listed(keys: list[str], most: int = 8) -> str:
    if not keys:
        return "none"
    more = f" and {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def wrap(network: nn.Module | Sequence[nn.Module], form: str = "deterministic", *, input_shape: Sequence[int] = DIGIT_SHAPE,
         num_classes: int = 0, temperature: float = 1.0, samples: int = 50, params: Mapping[str, Any] | None = None):
    """Make a user network (or a list of them: a deep ensemble) a :class:`BayesianClassifier`.

    >>> model = wrap(my_cnn, "mc_dropout")            # its own nn.Dropout layers, T = 50 by default
    >>> model.predictive(x).mutual_information          # (N,) nats
    >>> ensemble = wrap([net_a, net_b, net_c])          # S = 3 fixed draws, whatever is asked

    Args:
        network: an ``nn.Module`` mapping ``(N, *input_shape)`` images in [0, 1] to logits ``(N, C)``,
            or several (each wrapped ``deterministic``: an ensemble's spread is between its members).
        form: ``deterministic`` or ``mc_dropout``.
        input_shape: one image's ``(C, H, W)``; inputs of any other shape are an InputError.
        num_classes: the number of logits (0: inferred from one pass on a blank image).
        temperature: post-hoc temperature (or fit one later with ``models.temperature.fit_temperature``).
        samples: default Monte-Carlo draws of the predictive.
        params: the network's constructor arguments, for checkpoints that rebuild it by import path.
    """
    if isinstance(network, Sequence) and not isinstance(network, nn.Module):
        from bayesrobust.models.ensemble import DeepEnsemble

        if form != "deterministic":
            raise ConfigError("an ensemble's members are wrapped deterministic: its draws are the members")
        members = [wrap(m, input_shape=input_shape, num_classes=num_classes, params=params) for m in network]
        model = DeepEnsemble(models=members)
    else:
        model = WrappedClassifier(mode=form, network=network, module_params=params, input_shape=input_shape,
                                  num_classes=num_classes)
        model.default_samples = int(samples)
    if not temperature > 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}")
    model.temperature = float(temperature)
    return model
