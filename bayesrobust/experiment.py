"""Run an experiment config end to end: data → models → suites → run folder → report."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from bayesrobust.config import ExperimentConfig
from bayesrobust.data import Dataset, load_dataset
from bayesrobust.data.folder import is_data_path, load_folder
from bayesrobust.errors import ConfigError, DatasetMissing, ForeignCheckpoint
from bayesrobust.models import BayesianClassifier
from bayesrobust.models.base import build_for_images, check_shape, is_import_path
from bayesrobust.models.calibrators import calibration_label, fit_calibrator
from bayesrobust.models.temperature import fit_temperature
from bayesrobust.progress import quiet_unless
from bayesrobust.runs import RunDir, environment
from bayesrobust.schema import dump_toml, to_plain, tomllib
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
    train = labelled_set(d.train, "train", data_dir, download).head(d.train_limit, seed=config.run.seed)
    val = None
    if d.val_fraction > 0:
        train, val = train.split(d.val_fraction, seed=derive_seed(config.run.seed, "val"))
    test = labelled_set(d.test or d.train, "test", data_dir, download).head(d.test_limit, seed=0)
    shifted = {}
    for spec in d.shifted:  # a path is the user's own files: missing is an error, never skipped
        if is_data_path(spec):
            folder = load_folder(spec)
            shifted[folder.info.name] = folder.head(d.shifted_limit, seed=0)
        else:
            shifted[spec] = shifted_set(spec, d, data_dir, download)
    unavailable = {}
    for name in d.shifted_optional:
        try:
            shifted[name] = shifted_set(name, d, data_dir, download)
        except DatasetMissing as exc:  # absent is fine for an optional set; corrupt is still an error
            unavailable[name] = str(exc)
    for name, dataset in {"data.test": test, **shifted}.items():
        if dataset.shape != train.shape:
            raise ConfigError(f"{name} {dataset.info.name!r} has images {dataset.shape}, the training set {d.train!r} "
                              f"{train.shape}: every evaluated set must have the shape the models take")
    return ExperimentData(train, val, test, shifted, unavailable)


def labelled_set(spec: str, split: str, data_dir, download: bool) -> Dataset:
    """``data.train`` / ``data.test``: a registered set's split, or the labelled digits at a path."""
    if not is_data_path(spec):
        return load_dataset(spec, split, data_dir, download)
    dataset = load_folder(spec)
    if not dataset.labelled:
        raise ConfigError(f"data.{split} {spec!r} has no labels: training and the test split need them "
                          "(an unlabelled set can be a data.shifted set)")
    return replace(dataset, info=replace(dataset.info, split=split))


def shifted_set(name: str, d, data_dir, download: bool) -> Dataset:
    """A shifted set's test split; its labels count as unlabelled when they name other classes than the
    training set's (Fashion-MNIST's clothing for a digit model: accuracy there would mean nothing)."""
    from bayesrobust.data import DATASETS

    dataset = load_dataset(name, "test", data_dir, download).head(d.shifted_limit, seed=0)
    train_classes = DATASETS.get(d.train).classes if d.train in DATASETS else "digits"  # a path's labels are 0–9
    if DATASETS.get(name).classes != train_classes:
        dataset = dataset.without_labels()
    return dataset


def prepare_models(config: ExperimentConfig, data: ExperimentData, run: RunDir, *, progress: bool,
                   loaded: dict[str, BayesianClassifier] | None = None) -> tuple[dict[str, BayesianClassifier], dict[str, float]]:
    """Load or train every configured model (``loaded``: checkpoints already read, by section name) and
    save its checkpoint into the run folder. Each model is a unit (``units.py``): a resumed run loads the
    ones that finished. Every model the suites see is the one read back from its checkpoint, so a run and
    its resumed twin evaluate the same weights."""
    from bayesrobust.units import Units

    units = Units(run, "models", config.run.seed)
    models, metrics = {}, {}
    for name, spec in config.models.items():
        path = run.file(f"checkpoints/{name}.pt")

        def build(name=name, spec=spec, path=path) -> tuple[dict[str, float], dict]:
            model, values = make_model(config, name, spec, data, models, progress=progress, loaded=loaded)
            model.save(path)
            return values, {}

        values, _ = units(f"model/{name}", build)
        models[name] = BayesianClassifier.load(path, map_location=config.run.device).to(config.run.device)
        metrics.update(values)
    cards: dict[str, dict] = {}
    for name, spec in config.models.items():
        cards[name] = model_card(models[name], spec, len(data.train), cards.get(spec.weights_of))
    run.write_json("models.json", [{"name": name, **card} for name, card in cards.items()])  # in the config's order
    return models, metrics


def model_card(model: BayesianClassifier, spec, training_digits: int, source_card: dict | None = None) -> dict:
    """What a reader of the report needs to know of one model: what it is, where its weights come from,
    how it was trained (for the weights of another section, that section's training) and calibrated, and
    how its predictive is drawn."""
    history = model.history_
    if not history and source_card is not None:
        return {**model_card(model, spec, training_digits), "epochs_run": source_card["epochs_run"],
                "best_epoch": source_card["best_epoch"]}
    val = [r["val_nll"] for r in history if "val_nll" in r]
    source = (f"weights of {spec.weights_of}" if spec.weights_of else f"checkpoint {spec.checkpoint}" if spec.checkpoint
              else f"trained here on {training_digits} digits")
    arch, params = model.config_spec()
    return {"arch": arch, "mode": model.mode, "params": params, "source": source,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "epochs_run": len(history), "best_epoch": (int(min(range(len(val)), key=val.__getitem__)) + 1) if val else None,
            "temperature": model.temperature, "calibrate": spec.calibrate or "", "calibration": calibration_label(model),
            "draws": model.draws.value, "draws_per_prediction": model.draw_count(model.default_samples)}


def make_model(config: ExperimentConfig, name: str, spec, data: ExperimentData, models: dict[str, BayesianClassifier], *,
               progress: bool, loaded: dict[str, BayesianClassifier] | None) -> tuple[BayesianClassifier, dict[str, float]]:
    """One configured model — the weights of an earlier section in this section's mode, a checkpoint, or
    a network trained here — calibrated when the section asks, and its training metrics."""
    start = time.perf_counter()
    metrics = {}
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
    calibration_seed = derive_seed(config.run.seed, "temperature", name)
    if spec.calibrate == "temperature":  # Guo et al. (2017), on the validation split only
        metrics[f"train/{name}/temperature"] = fit_temperature(model, data.val.images, data.val.labels, seed=calibration_seed)
    elif spec.calibrate:  # models/calibrators.py, on the validation split only
        fit_calibrator(model, spec.calibrate, data.val.images, data.val.labels, seed=calibration_seed, bins=spec.calibrate_bins)
    metrics[f"train/{name}/seconds"] = time.perf_counter() - start
    return model, metrics


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
    """The same config with every trained model loaded from ``run_dir/checkpoints/<name>.pt``; a model with
    the weights of another (``weights_of``) takes them from that one, as in the run, so a config may add
    such twins (another mode, another calibrator) to a finished run's networks."""
    folder = Path(run_dir) / "checkpoints"
    models = {name: spec if spec.weights_of else replace(spec, checkpoint=str(folder / f"{name}.pt"))
              for name, spec in config.models.items()}
    return replace(config, models=models)


def run_experiment(config: ExperimentConfig, out: str | Path, *, data_dir: str | None = None, download: bool = False,
                   overwrite: bool = False, resume: bool = False, progress: bool = True, suites: bool = True,
                   report: bool = True) -> RunDir:
    """Execute ``config`` into a new run folder ``out`` and return it (``resume``: continue the
    incomplete run in ``out`` instead, keeping its finished units; refused when ``config`` differs from
    the one it was started with).

    Pre-flight first: the data and every checkpoint are read before the folder is claimed, so a missing
    or corrupt file fails with nothing left behind. From then on the folder is marked INCOMPLETE until
    every stage has finished; each finished unit of work is kept as it ends (``units.py``), and a failure
    records the error there and re-raises, so a crashed run never looks complete. Deterministic kernels
    are on for the run and restored afterwards."""
    if resume and overwrite:
        raise ConfigError("--resume continues a run folder and --overwrite replaces it: pass one of them")
    if resume:
        refuse_changed_config(config, Path(out))
    else:
        RunDir.check_new(out, overwrite=overwrite)  # an occupied folder is refused before any work
    with deterministic_algorithms(), quiet_unless(progress):
        seed_everything(config.run.seed)
        start = time.perf_counter()
        data = load_data(config, data_dir, download)
        loaded = {name: load_model(spec, f"models.{name}", data.train.shape)
                  for name, spec in config.models.items() if spec.checkpoint}
        data_seconds = time.perf_counter() - start
        run = RunDir.resume(out) if resume else RunDir.create(out, overwrite=overwrite)
        try:
            _execute(run, config, data, loaded, data_seconds, progress=progress, suites=suites, report=report,
                     resumed=resume)
        except BaseException as exc:
            run.mark_failed(exc)
            raise
    run.finish()
    return run


def refuse_changed_config(config: ExperimentConfig, out: Path) -> None:
    """A ConfigError naming every key where ``config`` differs from the config ``out`` was started with
    (a resumed run must compute what the interrupted one would have)."""
    changed = config_changes(config, out)
    if changed:
        shown = "; ".join(f"{key}: {then!r} then, {now!r} now" for key, then, now in changed[:8])
        more = f" (and {len(changed) - 8} more)" if len(changed) > 8 else ""
        raise ConfigError(f"cannot resume {out}: the config differs from the one it was started with at "
                          f"{', '.join(key for key, _, _ in changed[:8])}{more} ({shown}). Resume with the same config "
                          "(and the same --seed, --device and --set), or start a new run folder")


def config_changes(config: ExperimentConfig, out: Path) -> list[tuple[str, object, object]]:
    """(dotted key, value then, value now) wherever ``config`` differs from ``out/config.toml``; none when
    the folder has no config (not a run folder, or a missing one: RunDir.resume says which)."""
    saved_path = out / "config.toml"
    if not saved_path.is_file():
        return []
    saved = _flatten(tomllib.loads(saved_path.read_text()))
    now = _flatten(tomllib.loads(dump_toml(to_plain(config))))
    return [(k, saved.get(k, "<unset>"), now.get(k, "<unset>")) for k in sorted(saved.keys() | now.keys())
            if saved.get(k, "<unset>") != now.get(k, "<unset>")]


def _flatten(table: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _execute(run: RunDir, config: ExperimentConfig, data: ExperimentData, loaded: dict[str, BayesianClassifier],
             data_seconds: float, *, progress, suites, report, resumed: bool = False) -> None:
    """The stages of :func:`run_experiment`, in order, into ``run`` (data and checkpoints already read)."""
    from bayesrobust.suites.registry import suites as registered_suites

    run.write_text("config.toml", dump_toml(to_plain(config)))
    env = environment(config.run.seed, config.run.device)
    if resumed and run.file("env.json").is_file():  # the first attempt's record, and when each resume started
        first = run.read_json("env.json")
        resumes = [*first.get("resumes", []), {"started": env["started"], "git_revision": env["git_revision"]}]
        env = {**env, "started": first.get("started", env["started"]), "resumes": resumes}
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
        for suite_name, suite in registered_suites().items():
            section = config.suites.get(suite_name)
            if section is not None:
                run.update_metrics(timed(f"suite/{suite_name}", suite.run, run, models, data, section, config.run.seed))
    write_env()  # before the report, which prints it
    if report:
        from bayesrobust.report import build_report

        timed("report", build_report, run, assume_complete=True)
        write_env()
