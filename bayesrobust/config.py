"""Experiment configuration: TOML files read into frozen dataclasses.

Every table maps onto a dataclass; an unknown key, a wrong type or an invalid value raises
:class:`~bayesrobust.errors.ConfigError` naming the dotted key. ``--set a.b.c=value`` overrides are
applied to the raw TOML before validation, so they are checked exactly like the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayesrobust.errors import ConfigError, InputError
from bayesrobust.models.families import model_family
from bayesrobust.schema import apply_overrides, build, coerce, tomllib, typed_params


# --- schema -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSection:
    """Run-wide settings."""

    name: str = "run"
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class DataSection:
    """Which datasets to train and evaluate on."""

    train: str = "mnist-5k"
    test: str = ""  # empty: the test split of ``train``
    val_fraction: float = 0.1
    train_limit: int = 0  # 0: all examples
    test_limit: int = 0
    shifted: tuple[str, ...] | str = ()  # domain-shift / OOD sets evaluated with every model: registered names or paths
    shifted_optional: tuple[str, ...] = ()  # the same, skipped (and listed as not available) when absent
    shifted_limit: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.shifted, str):  # one set, as ``--set data.shifted=PATH`` gives it
            object.__setattr__(self, "shifted", (self.shifted,) if self.shifted else ())


@dataclass(frozen=True)
class SweepSection:
    """``[sweep]``: what ``bayesrobust sweep`` varies over this config (``bayesrobust run`` ignores it)."""

    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # dotted config key → values
    seeds: tuple[int, ...] = (0,)
    cpus_per_trial: float = 1.0  # CPU cores Ray reserves for each trial (torch uses that many threads)
    metrics: tuple[str, ...] = ()  # glob patterns of the metrics aggregated (default: the headline ones)


@dataclass(frozen=True)
class TrainSection:
    """Optimiser and schedule for one model (Lacok: RMSProp lr 1e-3, batch 128, 50 epochs)."""

    optimizer: str = "adam"  # sgd | adam | rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    epochs: int = 10
    batch_size: int = 128
    l1: float = 0.0
    l2: float = 0.0
    patience: int = 0  # early stopping on validation NLL; 0 disables it
    adversarial_eps: float = 0.0  # > 0: Goodfellow et al.'s adversarial training, J̃ = α·J(x) + (1 − α)·J(x + ε·sign ∇ₓJ)
    adversarial_alpha: float = 0.5  # α, the weight of the clean objective


@dataclass(frozen=True)
class ModelSection:
    """One model: architecture, inference mode, training and optional checkpoint to load."""

    arch: str = "lenet"  # a registered family, or a user network's import path "package.module:Class"
    mode: str = ""  # the architecture's inference mode (dropout nets: mc_dropout | plain); "" = its default
    params: Mapping[str, Any] = field(default_factory=dict)  # the family's (or the user network's) constructor arguments
    train: TrainSection = field(default_factory=TrainSection)
    checkpoint: str = ""  # a saved model to load instead of training; for a user network also its own state_dict
    weights_of: str = ""  # an earlier model of this config whose trained weights this one uses, in its own mode
    calibrate: str = ""  # post-hoc, fitted on the validation split: temperature | vector | histogram | isotonic
    calibrate_bins: int = 15  # histogram binning's equal-width bins


CORE_KEYS = ("run", "data", "models", "sweep")
RENAMED_TABLES = {"transfer": "the [transfer] table's extra sets are data.shifted now (it takes paths as well as names): "
                              "write data.shifted = [..., \"PATH\"] (or --set data.shifted=PATH) instead of transfer.extra"}


@dataclass(frozen=True)
class ExperimentConfig:
    """``[run]``, ``[data]``, ``[models.*]``, ``[sweep]``, and one table per configured suite: each suite brings its
    own section dataclass and validation (``bayesrobust/suites/registry.py``), so adding a suite never
    edits this file."""

    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    models: Mapping[str, ModelSection] = field(default_factory=dict)
    sweep: SweepSection = field(default_factory=SweepSection)
    suites: Mapping[str, Any] = field(default_factory=dict)  # suite name → its section, for the tables present

    def __plain__(self) -> dict[str, Any]:
        """The file's layout: the suite sections are top-level tables again."""
        return {**{k: getattr(self, k) for k in CORE_KEYS}, **self.suites}


# --- TOML in and out ---------------------------------------------------------------------------
def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a TOML experiment file, apply ``--set`` overrides and validate it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    return config_from_text(text, overrides, source=str(path))


def config_from_text(text: str, overrides: list[str] | None = None, *, source: str = "config") -> ExperimentConfig:
    """A config from TOML text (a sweep's trial gets the text, not the file), ``--set`` overrides applied."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    return config_from_dict(apply_overrides(raw, list(overrides or [])))


def config_from_dict(raw: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate a config: the core tables here, each suite's table with its own schema."""
    from bayesrobust.suites.registry import SUITES

    allowed = [*CORE_KEYS, *SUITES.names()]
    for old in set(raw) & set(RENAMED_TABLES):
        raise ConfigError(f"config key {old}: {RENAMED_TABLES[old]}")
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown config key {unknown[0]}; allowed in [top level]: {', '.join(sorted(allowed))}")
    suites = {name: coerce(raw[name], SUITES.get(name).section, name) for name in SUITES.names() if name in raw}
    config = build(ExperimentConfig, {**{k: raw[k] for k in CORE_KEYS if k in raw}, "suites": suites})
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Cross-field checks the types alone cannot express."""
    if not 0.0 <= config.data.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {config.data.val_fraction}")
    for key in ("train_limit", "test_limit", "shifted_limit"):
        if getattr(config.data, key) < 0:
            raise ConfigError(f"data.{key} must be >= 0 (0 keeps every example), got {getattr(config.data, key)}")
    check_device(config.run.device)
    check_data_paths(config)
    check_set_names(config)
    names = list(config.models)
    for i, (name, model) in enumerate(config.models.items()):
        where = f"models.{name}"
        check_mode(model, where)
        if model.weights_of:
            check_weights_of(config, name, names[:i])
        if model.calibrate:
            check_calibrate(config, name)
        if not model.checkpoint:
            check_model(model, where, training_shape(config))
        if model.train.optimizer not in ("sgd", "adam", "rmsprop"):
            raise ConfigError(f"{where}.train.optimizer must be sgd, adam or rmsprop, got {model.train.optimizer!r}")
        for key in ("epochs", "batch_size"):
            if getattr(model.train, key) < 1:
                raise ConfigError(f"{where}.train.{key} must be >= 1")
        for key in ("lr", "l1", "l2", "adversarial_eps"):
            if getattr(model.train, key) < 0:
                raise ConfigError(f"{where}.train.{key} must be >= 0")
        if not 0.0 <= model.train.adversarial_alpha <= 1.0:
            raise ConfigError(f"{where}.train.adversarial_alpha must be in [0, 1], got {model.train.adversarial_alpha}")
    from bayesrobust.suites.registry import SUITES

    for name in config.suites:
        SUITES.get(name).validate(config)


def check_data_paths(config: ExperimentConfig) -> None:
    """``data.train`` / ``data.test`` name a registered set or a path; a path given for training needs a
    test set of its own (the toolkit never tests on the digits it trained on)."""
    from bayesrobust.data import DATASETS
    from bayesrobust.data.folder import is_data_path

    for key in ("train", "test"):
        spec = getattr(config.data, key)
        if spec and spec not in DATASETS and not is_data_path(spec):
            raise ConfigError(f"data.{key}: unknown dataset {spec!r}, neither a registered one ({', '.join(DATASETS.names())}) "
                              "nor a path to files (an IDX pair, a .npz, or a folder of PNG/JPEG digits per class)")
    if is_data_path(config.data.train) and not config.data.test:
        raise ConfigError(f"data.train is the path {config.data.train!r}: give data.test too (a path or a registered set)")


def check_set_names(config: ExperimentConfig) -> None:
    """Every evaluated set has its own name: a path in ``data.shifted`` (named by its folder or file) may not
    shadow a registered set, and each registered name is a known dataset."""
    from bayesrobust.data import DATASETS
    from bayesrobust.data.folder import is_data_path, set_name

    seen: dict[str, str] = {}
    for key in ("shifted", "shifted_optional"):
        for spec in getattr(config.data, key):
            path = is_data_path(spec)
            if not path and key == "shifted" and spec not in DATASETS:
                raise ConfigError(f"data.shifted: unknown dataset {spec!r}, neither a registered one "
                                  f"({', '.join(DATASETS.names())}) nor a path to files")
            name = set_name(spec) if path else spec
            if name in seen:
                raise ConfigError(f"data.{key} {spec!r} would be named {name!r}, already taken by {seen[name]}; "
                                  + ("rename the folder" if path else "list it once"))
            seen[name] = f"data.{key} {spec!r}"


def check_device(device: str) -> None:
    """Refuse a device this machine's PyTorch cannot use, before any data is loaded."""
    import torch

    where = f"run.device = {device!r}"
    if device == "cpu":
        return
    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"{where}: Apple's MPS backend is not available in this PyTorch build or machine; use --device cpu")
        return
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"{where}: expected cpu, cuda, cuda:N or mps")
    if not torch.cuda.is_available():
        raise ConfigError(f"{where}: this PyTorch ({torch.__version__}) has no usable CUDA device; use --device cpu, "
                          "or install a CUDA build of torch on a machine with an NVIDIA GPU")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise ConfigError(f"{where}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")


def check_mode(section: ModelSection, where: str) -> None:
    """An unknown architecture, or a mode its family does not offer, is named with the key."""
    try:
        modes = model_family(section.arch).modes
    except ConfigError as exc:
        raise ConfigError(f"{where}.arch: {exc}") from None
    if section.mode and section.mode not in modes:
        raise ConfigError(f"{where}.mode: {section.arch!r} models offer {', '.join(modes)}; got {section.mode!r}")


def check_weights_of(config: ExperimentConfig, name: str, earlier: list[str]) -> None:
    """``weights_of`` names an earlier model of the same architecture and parameters (the same network
    in another inference mode, e.g. a plain CNN's MC-dropout twin), and replaces training or loading."""
    spec, where = config.models[name], f"models.{name}.weights_of"
    if spec.weights_of not in earlier:
        raise ConfigError(f"{where}: {spec.weights_of!r} is not a model defined before {name!r}; earlier: {', '.join(earlier) or 'none'}")
    if spec.checkpoint:
        raise ConfigError(f"{where}: give either weights_of or checkpoint, not both")
    source = config.models[spec.weights_of]
    if source.arch != spec.arch or dict(source.params) != dict(spec.params):
        raise ConfigError(f"{where}: {spec.weights_of!r} has arch {source.arch!r} and params {dict(source.params)}, "
                          f"this model {spec.arch!r} and {dict(spec.params)}: they must be the same network")


def check_calibrate(config: ExperimentConfig, name: str) -> None:
    from bayesrobust.models.calibrators import NAMES

    spec, where = config.models[name], f"models.{name}.calibrate"
    if spec.calibrate not in NAMES:
        raise ConfigError(f"{where} must be '' or one of {', '.join(NAMES)}, got {spec.calibrate!r}")
    if not model_family(spec.arch).supports_temperature:
        raise ConfigError(f"{where}: a {spec.arch!r} model has no softmax logits to calibrate")
    if config.data.val_fraction <= 0:
        raise ConfigError(f"{where}: {NAMES[spec.calibrate]} is fitted on the validation split; set data.val_fraction > 0")
    if spec.calibrate_bins < 1:
        raise ConfigError(f"models.{name}.calibrate_bins must be >= 1, got {spec.calibrate_bins}")


def training_shape(config: ExperimentConfig) -> tuple[int, ...]:
    """One training image's (C, H, W), as the training set's registration declares it, or as the files
    at its path hold it."""
    from bayesrobust.data import DATASETS
    from bayesrobust.data.folder import is_data_path, load_folder

    if config.data.train in DATASETS:
        return DATASETS.get(config.data.train).shape
    return load_folder(config.data.train).shape if is_data_path(config.data.train) else (1, 28, 28)


def check_model(section: ModelSection, where: str, shape: tuple[int, ...] = (1, 28, 28)) -> None:
    """Build the model once (cheap), for images of ``shape``, so a bad architecture or parameter of any
    model, or a network that cannot take the training images, is found before the first one trains."""
    from bayesrobust.models.base import build_for_images, is_import_path
    from bayesrobust.models.wrapped import import_object

    constructor = import_object(section.arch, f"{where}.arch") if is_import_path(section.arch) else model_family(section.arch)
    params = typed_params(constructor.__init__, section.params, f"{where}.params")
    try:
        build_for_images(section.arch, shape, mode=section.mode, **params)
    except (ConfigError, InputError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
