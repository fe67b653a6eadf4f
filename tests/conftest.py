"""Shared fixtures: small real data (embedded digits) and tiny trained models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bayesrobust.analysis import analyses
from bayesrobust.config import TrainSection
from bayesrobust.data import load_dataset
from bayesrobust.models import MODELS, build_model, wrap
from bayesrobust.schema import tomllib
from bayesrobust.seeding import seed_everything
from tests.user_nets import ColourCNN, DropoutBatchNormCNN

REPO = Path(__file__).resolve().parents[1]


def _share_cores_between_workers() -> None:
    """Under pytest-xdist (``make test`` runs one worker per core) each worker, and every process it
    starts, gets its share of the cores: N workers each running torch on all of them would oversubscribe
    the machine and finish later than one process."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        torch.set_num_threads(threads)
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


_share_cores_between_workers()


_SESSION = pytest.StashKey[pytest.Session]()


def pytest_sessionstart(session):
    session.config.stash[_SESSION] = session


def pytest_terminal_summary(terminalreporter, config):
    """Say so when collected tests never ran: a worker that dies ends ``make test`` (no restarts: see the
    Makefile), and the tests it had not reached would otherwise vanish from the counts."""
    collected = config.stash[_SESSION].testscollected
    ran = {r.nodeid for reports in terminalreporter.stats.values() for r in reports if isinstance(r, pytest.TestReport)}
    if collected > len(ran):
        terminalreporter.write_sep("=", f"{collected - len(ran)} of {collected} collected tests never ran: "
                                        "the run is incomplete", red=True)


# A small real experiment (300 training digits, one epoch) that tests run through the CLI.
SMALL = """
[run]
name = "small"
[data]
train = "mnist-5k"
val_fraction = 0.2
train_limit = 300
test_limit = 60
shifted = ["digits"]
shifted_limit = 40
[models.mc]
arch = "lenet"
mode = "mc_dropout"
params = { channels = [4, 8], hidden = 16 }
[models.mc.train]
epochs = 1
[models.plain]
arch = "lenet"
mode = "plain"
params = { channels = [4, 8], hidden = 16 }
weights_of = "mc"
[models.plain_ts]
arch = "lenet"
mode = "plain"
params = { channels = [4, 8], hidden = 16 }
weights_of = "mc"
calibrate = "temperature"
[models.plain_iso]
arch = "lenet"
mode = "plain"
params = { channels = [4, 8], hidden = 16 }
weights_of = "mc"
calibrate = "isotonic"
[models.gp]
arch = "gpdnn"
params = { channels = [4, 8], hidden = 16, features = 8, inducing = 8, kmeans_images = 200 }
[models.gp.train]
epochs = 1
[evaluation]
samples = 3
[attack]
limit = 20
eval_samples = 3
[attack.runs.fgsm]
attack = "fgsm"
params = { eps = 0.2 }
[attack.runs.cw]
attack = "cw_l2"
params = { steps = 5, binary_search_steps = 2 }
[attack.masking]
limit = 8
steps = [2, 3]
queries = 10
eot_samples = 2
"""


def shared_data() -> Path | None:
    """The real-data folder (``$BAYESROBUST_DATA`` or ``../shared/data``), or None."""
    for candidate in (os.environ.get("BAYESROBUST_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def require_shared(*parts: str) -> Path:
    root = shared_data()
    if root is None or not (root.joinpath(*parts)).exists():
        pytest.skip(f"real data {'/'.join(parts)} not available (set BAYESROBUST_DATA or provide ../shared/data)")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache; data roots come only from what a test sets."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def digits5k():
    train = load_dataset("mnist-5k", "train").head(1500, seed=0)
    test = load_dataset("mnist-5k", "test").head(300, seed=0)
    return train, test


@pytest.fixture(scope="session")
def trained_lenet(digits5k):
    """An MC-dropout LeNet trained for three epochs on 1,500 real digits (~90% accuracy)."""
    seed_everything(0)
    model = build_model("lenet", mode="mc_dropout", channels=(8, 16), hidden=64)
    model.fit(digits5k[0], TrainSection(epochs=3, batch_size=32), seed=0, progress=False)
    return model


@pytest.fixture(scope="session")
def small_lenet():
    """A small MC-dropout LeNet trained for two epochs on 600 real digits: weak but real, for attacks."""
    seed_everything(0)
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=32)
    model.fit(load_dataset("mnist-5k", "train").head(600), TrainSection(epochs=2, batch_size=32), seed=0, progress=False)
    return model


@pytest.fixture
def images(digits5k):
    return digits5k[1].images[:16].clone()


@pytest.fixture
def labels(digits5k):
    return digits5k[1].labels[:16].clone()


TINY_VAE = MODELS.get("vae").tiny_params
TINY_GPDNN = MODELS.get("gpdnn").tiny_params


def tiny_models():
    """One small instance of every registered family in every mode (from each family's own ``tiny()``:
    a new family is in every contract test by registering it), a few variants of their parameters, and
    networks the toolkit did not define, for contract tests."""
    registered = {f"{arch}-{mode}": (lambda arch=arch, mode=mode: _seeded(lambda: MODELS.get(arch).tiny(mode)))
                  for arch in MODELS.names() if MODELS.get(arch).tiny_params is not None for mode in MODELS.get(arch).modes}
    return {  # every instance from a fixed seed: what a test sees cannot depend on the tests run before it
        **registered,
        "softmax": lambda: build_model("mlp", mode="plain", hidden=(), input_dropout=0.0, bias=True, seed=0),
        "gpdnn-linear": lambda: build_model("gpdnn", **TINY_GPDNN, kernel="linear", seed=0),
        "gpdnn-spectral": lambda: build_model("gpdnn", **TINY_GPDNN, spectral_norm=True, seed=0),
        "gpdnn-residual-sn": lambda: build_model("gpdnn", **TINY_GPDNN, extractor="residual_sn", feature_norm=True, seed=0),
        "vae-feedback-conv": lambda: build_model("vae", mode="feedback", **TINY_VAE, encoder="conv", seed=0),
        # networks the toolkit did not define (tests/user_nets.py), wrapped; and deep ensembles of them
        "wrapped-bn-mc": lambda: _user_net("mc_dropout"),
        "wrapped-bn-deterministic": lambda: _user_net("deterministic"),
        "wrapped-colour-mc": lambda: wrap(_seeded(lambda: ColourCNN(classes=7)), "mc_dropout", input_shape=(3, 32, 32),
                                          params={"classes": 7}),
        "wrapped-state_dict": _imported_state_dict,
        "ensemble-wrapped3": lambda: wrap([_seeded(lambda: DropoutBatchNormCNN(), seed) for seed in (1, 2, 3)]),
    }


def _seeded(factory, seed: int = 0):
    seed_everything(seed)
    return factory()


def _user_net(form: str):
    """A user CNN with BatchNorm whose running statistics are not the defaults, so evaluation mode
    matters (a BatchNorm left in training mode would give other numbers)."""
    net = _seeded(DropoutBatchNormCNN)
    with torch.no_grad():
        net.features[1].running_mean.uniform_(-0.2, 0.2)
        net.features[1].running_var.uniform_(0.5, 2.0)
    return wrap(net, form)


def _imported_state_dict():
    """A network trained outside the toolkit: its plain ``state_dict`` (``torch.save(net.state_dict())``)
    loaded into the wrapped form named by import path, as a config's ``checkpoint`` does."""
    import tempfile

    source = _seeded(lambda: DropoutBatchNormCNN(width=3), 5)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.pt"
        torch.save(source.state_dict(), path)
        model = build_model("tests.user_nets:DropoutBatchNormCNN", mode="mc_dropout", width=3)
        return model.load_network_weights(path)


def model_inputs(model, images: torch.Tensor) -> torch.Tensor:
    """The digits for a digit model; seeded uniform images of the model's own shape otherwise."""
    if tuple(model.input_shape) == tuple(images.shape[1:]):
        return images
    return torch.rand(len(images), *model.input_shape, generator=torch.Generator().manual_seed(7))


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def load_benchmark(name: str):
    """A script of ``benchmarks/`` as a module (they are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_attack(name: str) -> dict:
    """A registered attack's own settings for seconds-long tests (its class's ``tiny_params``)."""
    from bayesrobust.attacks import ATTACKS

    return dict(ATTACKS.get(name).tiny_params)


def shrunk_params(where: str, params: dict) -> list[str]:
    """An attack's iteration budgets cut to a few steps."""
    budgets = (("steps", 5), ("binary_search_steps", 2), ("search_steps", 2), ("max_iterations", 5))
    return [f"{where}.params.{key}={small}" for key, small in budgets if key in params]


def tiny_overrides(path: Path) -> list[str]:
    """Overrides that shrink any experiment to seconds: few examples, one epoch, few samples."""
    raw = tomllib.loads(path.read_text())
    sets = ["data.train_limit=300", "data.test_limit=60", "data.shifted_limit=40"]
    for name, spec in raw.get("models", {}).items():
        sets.append(f"models.{name}.train.epochs=1")
        arch = spec.get("arch", "lenet")
        if arch == "ensemble":  # its members, each a family of its own, made tiny
            member = spec.get("params", {}).get("member", {}).get("arch", "lenet")
            sets += [f"models.{name}.params.members=2",
                     *(f"models.{name}.params.member.params.{key}={json.dumps(value)}"
                       for key, value in MODELS.get(member).tiny_params.items())]
        elif arch in MODELS and MODELS.get(arch).tiny_params:  # each family says what makes it small; a size the
            params = spec.get("params", {})                    # config sets to none (hidden = []) is another model
            sets += [f"models.{name}.params.{key}={json.dumps(value)}" for key, value in MODELS.get(arch).tiny_params.items()
                     if key not in params or params[key]]
    if "evaluation" in raw:
        sets += ["evaluation.samples=3", "evaluation.grid_size=8"]
        if raw["evaluation"].get("rotations") or raw["evaluation"].get("translations"):
            sets += ["evaluation.rotations=[90]", "evaluation.translations=[4]", "evaluation.shift_limit=30"]
    calibration = raw.get("calibration")
    if calibration is not None:
        sets += ["calibration.samples=3", "calibration.bootstrap=50", "calibration.attack_limit=10"]
        if calibration.get("rotations") or calibration.get("translations"):
            sets += ["calibration.rotations=[90]", "calibration.translations=[4]", "calibration.shift_limit=30"]
        if "logistic" in calibration:
            sets.append("calibration.logistic.epochs=2")
        for name, spec in calibration.get("attacks", {}).items():
            if "steps" in spec.get("params", {}):
                sets.append(f"calibration.attacks.{name}.params.steps=3")
    detection = raw.get("detection")
    if detection is not None:
        sets += ["detection.size=40", "detection.val_size=40", "detection.samples=3", "detection.ocsvm_per_class=20",
                 "detection.successful_only=false", "detection.bootstrap=50"]  # a one-epoch model: few attacks succeed
        # the mixed sets need correctly classified digits: a model above chance, a validation split of 90
        sets.append("data.val_fraction=0.3")
        for name in raw.get("models", {}):
            sets += [f"models.{name}.train.batch_size=32", f"models.{name}.train.epochs=3"]
        for name, spec in detection.get("attacks", {}).items():
            params = spec.get("params", {})
            for key, small in (("steps", 3), ("binary_search_steps", 1), ("gamma", 0.02)):
                if key in params:
                    sets.append(f"detection.attacks.{name}.params.{key}={small}")
    attack = raw.get("attack")
    if attack is not None:
        sets += ["attack.limit=40", "attack.eval_samples=3"]
        for name, spec in attack.get("runs", {}).items():
            sets += [f"attack.runs.{name}.limit=10"]
            params = spec.get("params", {})
            budgets = {"autoattack": {"steps": 3, "queries": 10, "target_classes": 2, "eot": 2}, "apgd": {"steps": 3},
                       "pgd": {"steps": 3}, "square": {"queries": 10}}.get(spec.get("attack"), {})
            sets += [f"attack.runs.{name}.params.{key}={small}" for key, small in budgets.items()]
            sets += shrunk_params(f"attack.runs.{name}", params)
        for name, analysis in analyses().items():  # each analysis says what makes it fast
            if name in attack:
                sets += shrunk_params(f"attack.{name}", attack[name].get("params", {}))
                sets += [f"attack.{name}.{key}={value}" for key, value in analysis.tiny.items()]
        if "adaptive_eot_samples" not in attack:
            sets += ["attack.adaptive_eot_samples=2"]
    return sets


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> Path:
    """The quickstart with tiny settings, once per session, through the installed command in a subprocess
    exactly as the README shows it; its run folder (the experiment test and the browser test read it)."""
    import subprocess
    import sys

    path = REPO / "experiments" / "quickstart.toml"
    out = tmp_path_factory.mktemp("quickstart") / "run"
    args = ["run", str(path), "--out", str(out), "--quiet", "--seed", "1"]
    if shared_data() is not None:
        args += ["--data-dir", str(shared_data())]
    for s in tiny_overrides(path):
        args += ["--set", s]
    proc = subprocess.run([sys.executable, "-m", "bayesrobust.cli", *args], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout
    return out

