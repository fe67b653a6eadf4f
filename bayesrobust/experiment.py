"""Run an experiment config end to end: data → models → suites → run folder → report."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bayesrobust.config import ExperimentConfig, dump_toml, to_plain
from bayesrobust.data import Dataset, load_dataset
from bayesrobust.data.folder import load_idx_folder
from bayesrobust.errors import ConfigError, DatasetMissing, ForeignCheckpoint
from bayesrobust.models import BayesianClassifier
from bayesrobust.models.base import build_for_images, check_shape, is_import_path
from bayesrobust.models.temperature import fit_temperature
from bayesrobust.progress import quiet_unless
from bayesrobust.runs import RunDir, environment
from bayesrobust.seeding import derive_seed, deterministic_algorithms, seed_everything


@dataclass(frozen=True)
class ExperimentData:
    train: Dataset
    val: Dataset | None
    test: Dataset
    shifted: dict[str, Dataset]
    unavailable: dict[str, str] = field(default_factory=dict)  # optional shifted set → why it is absent


def load_data(config: ExperimentConfig, data_dir: str | None, download: bool) -> ExperimentData:
    """Train/validation/test splits and shifted sets; the validation split is carved (stratified,
    seeded) from the training split, never from the test split."""
    d = config.data
    train = load_dataset(d.train, "train", data_dir, download).head(d.train_limit, seed=config.run.seed)
    val = None
    if d.val_fraction > 0:
        train, val = train.split(d.val_fraction, seed=derive_seed(config.run.seed, "val"))
    test_name = d.test or d.train
    test = load_dataset(test_name, "test", data_dir, download).head(d.test_limit, seed=0)
    shifted = {name: shifted_set(name, d, data_dir, download) for name in d.shifted}
    unavailable = {}
    for name in d.shifted_optional:
        try:
            shifted[name] = shifted_set(name, d, data_dir, download)
        except DatasetMissing as exc:  # absent is fine for an optional set; corrupt is still an error
            unavailable[name] = str(exc)
    for path in config.transfer.extra:  # the user's own IDX folders: a missing one is an error, not skipped
        extra = load_idx_folder(path)
        shifted[extra.info.name] = extra.head(d.shifted_limit, seed=0)
    for name, dataset in {"data.test": test, **shifted}.items():
        if dataset.shape != train.shape:
            raise ConfigError(f"{name} {dataset.info.name!r} has images {dataset.shape}, the training set {d.train!r} "
                              f"{train.shape}: every evaluated set must have the shape the models take")
    return ExperimentData(train, val, test, shifted, unavailable)


def shifted_set(name: str, d, data_dir, download: bool) -> Dataset:
    """A shifted set's test split; its labels count as unlabelled when they name other classes than the
    training set's (Fashion-MNIST's clothing for a digit model: accuracy there would mean nothing)."""
    from bayesrobust.data import DATASETS

    dataset = load_dataset(name, "test", data_dir, download).head(d.shifted_limit, seed=0)
    if DATASETS.get(name).classes != DATASETS.get(d.train).classes:
        dataset = dataset.without_labels()
    return dataset


def prepare_models(config: ExperimentConfig, data: ExperimentData, run: RunDir | None, *, progress: bool,
                   loaded: dict[str, BayesianClassifier] | None = None) -> tuple[dict[str, BayesianClassifier], dict[str, float]]:
    """Load or train every configured model (``loaded``: checkpoints already read, by section name);
    save checkpoints into the run folder."""
    models, metrics = {}, {}
    for name, spec in config.models.items():
        start = time.perf_counter()
        if spec.weights_of:  # the same trained network, a separate object, in this section's mode
            source = models[spec.weights_of]
            same_mode = not spec.mode or spec.mode == source.mode
            model = (copy.deepcopy(source) if same_mode else source.with_mode(spec.mode)).eval()
        elif spec.checkpoint:
            model = loaded[name] if loaded and name in loaded else load_model(spec, f"models.{name}", data.train.shape)
        else:
            seed = derive_seed(config.run.seed, "model", name)
            seed_everything(seed)  # weight initialisation
            model = build_for_images(spec.arch, data.train.shape, mode=spec.mode, **dict(spec.params)).to(config.run.device)
            model.fit(data.train, spec.train, val=data.val, seed=seed, progress=progress)
            metrics[f"train/{name}/epochs"] = model.epochs_run()
        model = model.to(config.run.device)
        check_shape(model, data.train.shape, f"models.{name}")
        if spec.calibrate == "temperature":  # Guo et al. (2017), on the validation split only
            metrics[f"train/{name}/temperature"] = fit_temperature(
                model, data.val.images, data.val.labels, seed=derive_seed(config.run.seed, "temperature", name))
        metrics[f"train/{name}/seconds"] = time.perf_counter() - start
        if run is not None:
            model.save(run.file(f"checkpoints/{name}.pt"))
        models[name] = model
    return models, metrics


def load_model(spec, where: str, shape: tuple[int, ...]) -> BayesianClassifier:
    """A section's checkpoint: a bayesrobust checkpoint (made to match the section), or — for a user
    network named by import path — the network's own ``state_dict`` loaded into its wrapped form for
    images of ``shape``."""
    try:
        return conform(BayesianClassifier.load(spec.checkpoint), spec, where)
    except ForeignCheckpoint:
        if not is_import_path(spec.arch):
            raise
    model = build_for_images(spec.arch, shape, mode=spec.mode, **dict(spec.params))
    return model.load_network_weights(spec.checkpoint)


def conform(model: BayesianClassifier, spec, where: str) -> BayesianClassifier:
    """A loaded checkpoint made to match its config section, or a ConfigError: the architecture and
    every parameter the section sets must be the checkpoint's; a configured mode other than the
    checkpoint's is applied to the same weights (a plain network's MC-dropout twin, or the reverse),
    and no mode keeps the checkpoint's."""
    arch, params = model.config_spec()
    if arch != spec.arch:
        raise ConfigError(f"{where}: checkpoint {spec.checkpoint} is a {arch!r} model, the config says arch = {spec.arch!r}")
    for key, value in spec.params.items():
        saved = params.get(key)
        if _plain(saved) != _plain(value):
            raise ConfigError(f"{where}.params.{key} = {value!r}, but checkpoint {spec.checkpoint} was trained with {saved!r}; "
                              "remove the parameter or train a new model")
    return model.with_mode(spec.mode) if spec.mode else model


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def with_checkpoints(config: ExperimentConfig, run_dir: str | Path) -> ExperimentConfig:
    """The same config with every model loaded from ``run_dir/checkpoints/<name>.pt``."""
    folder = Path(run_dir) / "checkpoints"
    models = {name: replace(spec, checkpoint=str(folder / f"{name}.pt")) for name, spec in config.models.items()}
    return replace(config, models=models)


def run_experiment(config: ExperimentConfig, out: str | Path, *, data_dir: str | None = None, download: bool = False,
                   overwrite: bool = False, progress: bool = True, suites: bool = True, report: bool = True) -> RunDir:
    """Execute ``config`` into a new run folder ``out`` and return it.

    Pre-flight first: the data and every checkpoint are read before the folder is claimed, so a missing
    or corrupt file fails with nothing left behind. From then on the folder is marked INCOMPLETE until
    every stage has finished; a failure records the error there and re-raises, so a crashed run never
    looks complete. Deterministic kernels are on for the run and restored afterwards."""
    if Path(out).exists() and not overwrite:
        RunDir.create(out, overwrite=False)  # raises the usual "already exists" error, before any work
    with deterministic_algorithms(), quiet_unless(progress):
        seed_everything(config.run.seed)
        start = time.perf_counter()
        data = load_data(config, data_dir, download)
        loaded = {name: load_model(spec, f"models.{name}", data.train.shape)
                  for name, spec in config.models.items() if spec.checkpoint}
        data_seconds = time.perf_counter() - start
        run = RunDir.create(out, overwrite=overwrite)
        try:
            _execute(run, config, data, loaded, data_seconds, progress=progress, suites=suites, report=report)
        except BaseException as exc:
            run.mark_failed(exc)
            raise
    run.finish()
    return run


def _execute(run: RunDir, config: ExperimentConfig, data: ExperimentData, loaded: dict[str, BayesianClassifier],
             data_seconds: float, *, progress, suites, report) -> None:
    """The stages of :func:`run_experiment`, in order, into ``run`` (data and checkpoints already read)."""
    from bayesrobust.suites.registry import SUITES

    run.write_text("config.toml", dump_toml(to_plain(config)))
    env = environment(config.run.seed, config.run.device)
    start = time.perf_counter() - data_seconds
    run.write_json("env.json", env)
    run.write_json("data.json", {**{k: {**v.info.__dict__, "labelled": v.labelled} for k, v in
                                    [("train", data.train), ("test", data.test), *data.shifted.items()]},
                                 **{k: {"name": k, "available": False, "reason": why} for k, why in data.unavailable.items()}})
    stages = {"data": data_seconds}  # seconds per stage, so a slow run says where it went

    def timed(stage: str, work, *args, **kwargs):
        stage_start = time.perf_counter()
        result = work(*args, **kwargs)
        stages[stage] = time.perf_counter() - stage_start
        return result

    def write_env() -> None:
        run.write_json("env.json", {**env, "wall_seconds": time.perf_counter() - start, "stage_seconds": stages})

    models, metrics = timed("models", prepare_models, config, data, run, progress=progress, loaded=loaded)
    run.update_metrics(metrics)
    if suites:
        for suite_name in SUITES.names():
            section = config.suites.get(suite_name)
            if section is not None:
                run.update_metrics(timed(f"suite/{suite_name}", SUITES.get(suite_name).run,
                                         run, models, data, section, config.run.seed))
    write_env()  # before the report, which prints it
    if report:
        from bayesrobust.report import build_report

        timed("report", build_report, run, assume_complete=True)
        write_env()
