"""Every config in experiments/ runs end to end with tiny settings (like Pyro's example tests)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayesrobust.cli import main
from bayesrobust.config import load_config
from tests.conftest import REPO, SMALL, shared_data, tiny_overrides

CONFIGS = sorted((REPO / "experiments").glob("*.toml"))


def needs_shared(path: Path) -> bool:
    config = load_config(path)
    offline = {"mnist-5k", "digits"}
    used = {config.data.train, config.data.test or config.data.train, *config.data.shifted}
    return bool(used - offline)


# the quickstart shares its session fixture with the browser test: one worker runs both (make test's
# --dist loadgroup), so the quickstart runs once
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.xdist_group("quickstart")) if p.stem == "quickstart"
                                  else p for p in CONFIGS], ids=[p.stem for p in CONFIGS])
def test_experiment_runs_with_tiny_settings(path, tmp_path, request):
    """Every config end to end; the quickstart through the installed command in a subprocess, exactly as
    the README shows it (the ``quickstart_run`` fixture)."""
    if needs_shared(path) and shared_data() is None:
        pytest.skip(f"{path.name} needs real data files (../shared/data or BAYESROBUST_DATA)")
    if path.stem == "quickstart":
        out = request.getfixturevalue("quickstart_run")
    else:
        out = tmp_path / "run"
        args = ["run", str(path), "--out", str(out), "--quiet", "--seed", "1"]
        if shared_data() is not None:
            args += ["--data-dir", str(shared_data())]
        for s in tiny_overrides(path):
            args += ["--set", s]
        assert main(args) == 0
    assert not (out / "INCOMPLETE").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics and all(v is None or isinstance(v, (int, float)) for v in metrics.values())
    json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    for required in ("config.toml", "env.json", "report.html", "report.md"):
        assert (out / required).exists(), required
    assert list((out / "figures").glob("*.png")) and list((out / "figures").glob("*.pdf"))
    stages = json.loads((out / "env.json").read_text())["stage_seconds"]
    suites = {f"suite/{name}" for name in load_config(out / "config.toml").suites}
    assert set(stages) == {"data", "models", "report"} | suites and all(v >= 0 for v in stages.values())
    env_line = next(line for line in (out / "report.md").read_text().splitlines() if "wall time" in line)
    assert all(f"{stage} " in env_line for stage in stages if stage != "report"), env_line
    assert "CPU " in env_line and "oneDNN ISA " in env_line, env_line  # which kernel path produced the numbers
    name = load_config(out / "config.toml").run.name  # the title is the run's name, its folder ("run") beside it
    assert (out / "report.md").read_text().startswith(f"# bayesrobust run: {name} (run)\n"), name
    assert list((out / "checkpoints").glob("*.pt"))
    missing = metric_keys_the_report_reads(out) - set(metrics)
    assert not missing, f"the report reads metric keys this run does not write: {sorted(missing)[:10]}"
    if path.stem == "quickstart":
        check_quickstart(out, metrics)
    if path.stem == "bradshaw2017":  # robust accuracy against ε, both norms, every model
        report = (out / "report.md").read_text()
        assert "Robust accuracy against ε" in report and "L2: robust accuracy" in report and "Linf: robust accuracy" in report
        assert (out / "figures" / "robustness_curve.png").exists()
        assert "Feature collapse (GP models)" in report  # the GPDNNs' diagnostics, per set
        assert 0 < metrics["clean/gpdnn_rbf/latent_std_ratio"] and 0 <= metrics["shift/digits/gpdnn_rbf/auroc_latent_variance"] <= 1
        assert "clean/gpdnn_rbf/inducing_distance" in metrics and "clean/gpdnn_lin/inducing_distance" not in metrics
        assert metrics["clean/gpdnn_rbf/training_distance"] > 0 and 0 <= metrics["shift/digits/gpdnn_rbf/auroc_training_distance"] <= 1
        assert "training-distance AUROC" in report
        assert "clean/nn/latent_std_ratio" not in metrics
    if path.stem == "feinman2017":  # a detector-aware attack's table says which detector it attacked, and under what cap
        assert "detector-aware: kd under its clean-validation threshold" in (out / "report.md").read_text()


def metric_keys_the_report_reads(out: Path) -> set[str]:
    """Build every report section again (not saving its figures: the run did) with a metrics mapping that
    records every key a section asks for."""
    from bayesrobust.report.sections import SECTIONS
    from bayesrobust.runs import RunDir

    class Recording(dict):
        asked: set[str] = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.asked.add(key)
            return super().__getitem__(key)

    run = RunDir.open(out)
    recorded = Recording(run.metrics())
    run.metrics = lambda: recorded
    for name in SECTIONS.names():
        SECTIONS.get(name)(run)
    return set(recorded.asked)


@pytest.mark.xdist_group("quickstart")
def test_each_suite_declares_the_metric_keys_it_writes_and_the_report_sections_that_show_them(quickstart_run):
    """One place per suite (suites/registry.py): every key the quickstart (all four suites but detection)
    wrote is matched by exactly one suite's declared patterns (or is training's), and the report's sections
    are exactly the declared ones, in the declared order."""
    from bayesrobust.keys import owned_by
    from bayesrobust.report.sections import SECTIONS
    from bayesrobust.suites.registry import report_order, suites

    metrics = json.loads((quickstart_run / "metrics.json").read_text())
    for key in metrics:
        owners = [n for n, suite in suites().items() if owned_by(key, suite.metric_keys)]
        assert len(owners) == 1 or (not owners and key.startswith("train/")), (key, owners)
    assert sorted(report_order()) == SECTIONS.names() and len(set(report_order())) == len(report_order())
    assert report_order()[:4] == ("summary", "models", "evaluation", "calibration")
    report = (quickstart_run / "report.md").read_text()
    assert report.index("## Models") < report.index("## Calibration") < report.index("## Attacks") < report.index("## Lacok") < report.index("## Kos")


def check_quickstart(out: Path, metrics: dict) -> None:
    """What the README promises of the quickstart: every model, suite and report section."""
    for model in ("lenet", "mc_lenet", "gpdnn"):
        assert 0.0 <= metrics[f"clean/{model}/acc"] <= 1.0
        assert f"shift/digits/{model}/entropy" in metrics
    assert metrics["clean/lenet/mi"] == 0.0 and metrics["clean/mc_lenet/mi"] > 0.0 and metrics["clean/gpdnn/mi"] > 0.0
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Predictive entropy" in html
    for heading in ("Attacks", "Lacok (2016) Table 1", "Papernot", "Figure 4", "Cross-model transfer", "Choi",
                    "High-confidence, low-uncertainty", "Worst case over every run", "Adaptive forms", "Calibration",
                    "Reliability diagrams", "shift protocol", "Kos et al. (2017)", "Models of this run",
                    "Calibration under transfer", "Paired differences with lenet", "Conformal prediction sets",
                    "Selective prediction"):
        assert heading in html, heading
    for key in ("adv/fgsm/mc_lenet/success_rate", "adv/clean/lenet/entropy", "lacok/lenet/fgsm eps=0.25/error",
                "papernot/lenet/success_rate", "papernot/lenet/robustness", "crossmodel/lenet/mc_lenet/error", "choi/mc_lenet/adv_confidence",
                "adv/bim_a@adaptive/mc_lenet/success_rate", "adv/cw_l2@adaptive/mc_lenet/success_rate_fresh",
                "adv/worst_case/lenet/robust_accuracy", "adv/worst_case/mc_lenet/success_rate",
                "hclu/lenet/success_rate", "hclu/mc_lenet/cap", "hclu/mc_lenet/l2_success",
                "adv/cw_l2@adaptive/gpdnn/success_rate", "hclu/gpdnn/cap", "crossmodel/gpdnn/lenet/error",
                "calib/lenet_ts/ece_low", "calib/lenet_ts/ece_debiased_high", "calib_shift/digits/lenet_ts/ece_high",
                "calib_paired/digits/lenet_ts/nll_low", "calib_paired/test/mc_lenet/ece",
                "conformal/test/lenet/lac/coverage_low", "conformal/digits/gpdnn/raps/size", "conformal/mc_lenet/aps/threshold",
                "conformal_adv/fgsm/lenet_ts/lac/coverage", "calib/mc_lenet/fgsm/confidence_wrong", "ovadia/rotate_90/gpdnn/ece",
                "ovadia/translate_4/vae/acc", "kos/vae/latent/1/as_target", "kos/vae/clean_judge_accuracy", "shift/digits/vae/auroc_elbo"):
        assert key in metrics, key
    # adaptive forms run on the stochastic models only
    assert "adv/bim_a@adaptive/lenet/success_rate" not in metrics and "adv/fgsm@adaptive/mc_lenet/success_rate" in metrics
    import arviz as az

    idata = az.from_netcdf(out / "arrays" / "predictive_mc_lenet_test.nc")
    assert idata.posterior_predictive["probs"].shape[1] == 3


@pytest.fixture
def small_config(tmp_path) -> Path:
    """Every source of randomness of a run (training, MC draws, GP draws, attacks, adaptive forms) in
    seconds: an MC-dropout LeNet and a GPDNN, evaluation and attacks."""
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_same_seed_same_numbers(tmp_path, small_config, monkeypatch, capsys):
    from bayesrobust import progress
    from bayesrobust.experiment import run_experiment

    monkeypatch.setattr(progress, "_QUIET", {"value": False})  # bars on, as in a terminal session
    results = []
    for i in range(2):  # the report only reads these numbers: not built here (every other run test builds it)
        out = tmp_path / f"r{i}"
        run_experiment(load_config(small_config, ["run.seed=7"]), out, progress=False, report=False)
        metrics = json.loads((out / "metrics.json").read_text())
        results.append({k: v for k, v in metrics.items() if not k.endswith("/seconds")})
    assert results[0] == results[1]
    printed = capsys.readouterr().err  # progress=False silences every bar, the suites' too
    assert "%|" not in printed and "it/s" not in printed, printed[-500:]
    assert progress._QUIET["value"] is False  # and the setting is restored afterwards
    assert "adv/cw@adaptive/mc/success_rate" in results[0] and "clean/gp/acc" in results[0]
    assert {f"masking/{m}/suspected" for m in ("mc", "plain", "gp")} <= set(results[0])  # the checks on every model
    # weights_of: the plain twin is the MC model's network, not a second training
    import torch

    from bayesrobust.models import BayesianClassifier

    mc, plain = (BayesianClassifier.load(tmp_path / "r0" / "checkpoints" / f"{m}.pt") for m in ("mc", "plain"))
    assert plain.mode == "plain" and mc.mode == "mc_dropout"
    assert all(torch.equal(a, b) for a, b in zip(mc.state_dict().values(), plain.state_dict().values()))
    assert results[0]["clean/plain/mi"] == 0.0 < results[0]["clean/mc/mi"] and "train/plain/epochs" not in results[0]
    # calibrate: the same network tempered on the validation split; labels kept, the source untouched
    assert results[0]["train/plain_ts/temperature"] != 1.0 and "train/plain/temperature" not in results[0]
    assert results[0]["clean/plain_ts/acc"] == results[0]["clean/plain/acc"]
    assert BayesianClassifier.load(tmp_path / "r0" / "checkpoints" / "plain_ts.pt").temperature == results[0]["train/plain_ts/temperature"]
    iso = BayesianClassifier.load(tmp_path / "r0" / "checkpoints" / "plain_iso.pt")  # another calibrator, kept by the checkpoint
    assert iso.calibrator.kind == "isotonic" and iso.temperature == 1.0 and results[0]["clean/plain_iso/nll"] != results[0]["clean/plain/nll"]
    cards = {c["name"]: c for c in json.loads((tmp_path / "r0" / "models.json").read_text())}
    assert cards["plain_iso"]["calibration"] == "isotonic regression" and cards["plain_ts"]["calibration"].startswith("T = ")


def test_crashed_run_stays_incomplete(tmp_path, monkeypatch, small_config):
    import bayesrobust.suites.evaluation as evaluation

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(evaluation, "predictive_metrics", boom)
    out = tmp_path / "crash"
    args = ["run", str(small_config), "--out", str(out), "--quiet"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(args)
    assert "simulated crash" in (out / "INCOMPLETE").read_text()
    assert not (out / "report.html").exists()
    # rebuilding the report from a crashed run says so
    assert main(["report", str(out)]) == 0
    assert "INCOMPLETE RUN" in (out / "report.md").read_text()


def test_failed_pre_flight_checks_leave_no_run_folder(tmp_path, small_config):
    """A missing dataset file or an unreadable checkpoint fails before the run folder is claimed:
    nothing half-made is left behind to be mistaken for (or block) a run."""
    from bayesrobust.errors import CheckpointError, DatasetMissing, RunError
    from bayesrobust.experiment import run_experiment
    from bayesrobust.runs import RunDir

    out = tmp_path / "missing-data"
    with pytest.raises(DatasetMissing):
        run_experiment(load_config(small_config, ['data.shifted=["svhn"]']), out, data_dir=str(tmp_path / "empty"),
                       progress=False)
    assert not out.exists()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "bad-checkpoint"
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        run_experiment(load_config(small_config, [f"models.mc.checkpoint={bad}"]), out, progress=False)
    assert not out.exists()
    RunDir.create(out).finish()  # an existing run folder is still refused first, before the checkpoint is read
    with pytest.raises(RunError, match="already exists"):
        run_experiment(load_config(small_config, [f"models.mc.checkpoint={bad}"]), out, progress=False)


COLOUR = """
[run]
name = "colour"
[data]
train = "svhn-rgb"
val_fraction = 0.25
[models.mine]
arch = "tests.user_nets:ColourCNN"
mode = "mc_dropout"
params = { classes = 10 }
[models.mine.train]
epochs = 2
batch_size = 32
[models.plain]
arch = "tests.user_nets:ColourCNN"
mode = "deterministic"
params = { classes = 10 }
weights_of = "mine"
[evaluation]
samples = 3
bootstrap = 50
rotations = [90]
translations = [4]
[calibration]
samples = 3
bootstrap = 50
attack_limit = 20
[calibration.attacks.fgsm]
attack = "fgsm"
params = { eps = 0.05 }
[calibration.conformal]
alpha = 0.2
[attack]
limit = 20
eval_samples = 3
[attack.runs.bim]
attack = "bim"
params = { eps = 0.05, alpha = 0.02, steps = 2 }
"""


def test_a_colour_network_runs_every_suite_on_colour_images(tmp_path, monkeypatch):
    """Suites on (C, H, W) images other than digits: a user's 3×32×32 network named by import path,
    trained and evaluated on SVHN in colour (synthetic files of the real format), with the evaluation
    (and Ovadia's rotations / translations), calibration (paired differences, selective prediction) and
    attack suites and the report with its models table; killed in its attack suite and resumed, the
    finished suites read back rather than run again."""
    import dataclasses
    import hashlib

    import numpy as np
    import scipy.io

    from bayesrobust.data import svhn
    from bayesrobust.errors import ConfigError
    from bayesrobust.experiment import run_experiment

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "svhn"
    folder.mkdir(parents=True)
    files = {}
    for split, n in (("train", 240), ("test", 60)):
        labels = np.arange(n) % 10
        colour = np.stack([labels * 20, 255 - labels * 20, (labels % 3) * 100], 1)  # a class is a colour
        x = np.clip(colour[:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
        path = folder / svhn.SVHN_FILES[split].name
        scipy.io.savemat(path, {"X": np.transpose(x, (1, 2, 3, 0)), "y": np.where(labels == 0, 10, labels).reshape(-1, 1)})
        files[split] = dataclasses.replace(svhn.SVHN_FILES[split], digest=hashlib.md5(path.read_bytes()).hexdigest())
    monkeypatch.setattr(svhn, "SVHN_FILES", files)
    config_path = tmp_path / "colour.toml"
    config_path.write_text(COLOUR)
    out = tmp_path / "run"
    import bayesrobust.suites.attack as attack_suite
    import bayesrobust.suites.evaluation as evaluation

    def crash(*args, **kwargs):
        raise RuntimeError("killed in the attack suite")

    with monkeypatch.context() as patch:
        patch.setattr(attack_suite, "run_batched", crash)
        with pytest.raises(RuntimeError, match="killed"):
            run_experiment(load_config(config_path), out, data_dir=str(tmp_path / "data"), progress=False)
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "predictive_metrics", crash)  # finished: must be read back, not recomputed
        run_experiment(load_config(config_path), out, data_dir=str(tmp_path / "data"), progress=False, resume=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clean/mine/acc"] > 0.5  # the colours are learnable: the run trained a real network
    for key in ("clean/plain/acc", "ovadia/rotate_90/mine/nll_low", "ovadia/translate_4/plain/brier", "calib/mine/ece",
                "calib/plain/fgsm/accuracy", "adv/bim/mine/success_rate", "calib_paired/test/plain/nll_high",
                "calib/mine/aurc_mi_low", "calib/plain/acc_at_90_confidence", "conformal/test/mine/aps/coverage",
                "conformal_adv/fgsm/plain/lac/size"):
        assert key in metrics, key
    cards = {c["name"]: c for c in json.loads((out / "models.json").read_text())}
    assert cards["mine"]["arch"] == "tests.user_nets:ColourCNN" and cards["plain"]["source"] == "weights of mine"
    assert cards["mine"]["draws"] == "sampled" and cards["plain"]["draws_per_prediction"] == 1
    assert (out / "report.html").is_file() and not (out / "INCOMPLETE").exists()
    with pytest.raises(ConfigError, match=r"takes images \(1, 28, 28\), the training data are \(3, 32, 32\)"):
        load_config(config_path, ["models.digits.arch=lenet"])
