"""The command line: help, errors as exit code 2 with a message, datasets listing, report rebuild."""

import pytest

from bayesrobust.cli import build_parser, main
from tests.conftest import REPO


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for command in ("run", "train", "evaluate", "datasets", "report"):
        assert command in out


def test_config_error_is_a_clean_exit(capsys, tmp_path):
    code = main(["run", str(REPO / "experiments" / "quickstart.toml"), "--set", "run.sede=1", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "unknown config key run.sede" in capsys.readouterr().err


def test_existing_run_folder_is_refused(capsys, tmp_path):
    (tmp_path / "x").mkdir()
    for name in ("metrics.json", "config.toml", "env.json"):
        (tmp_path / "x" / name).write_text("{}")
    code = main(["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path / "x")])
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_overwrite_never_replaces_a_folder_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    code = main(["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bayesrobust: error:") and "not a bayesrobust run folder" in err
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("override, expected", [
    ("attack.runs.fgsm.params.eps=abc", "attack.runs.fgsm.params.eps: expected a number, got 'abc'"),
    ("attack.runs.bim_a.params.steps=2.5", "attack.runs.bim_a.params.steps: expected an integer, got 2.5"),
    ("attack.runs.bim_a.params.variant=3", "attack.runs.bim_a.params.variant: expected str, got 3"),
    ("models.gpdnn.params.inducing=many", "models.gpdnn.params.inducing: expected an integer, got 'many'"),
    ("models.gpdnn.params.features=0", "models.gpdnn"),
    ("models.gpdnn.arch=resnet", "models.gpdnn.arch: unknown architecture 'resnet'"),
    ("models.mc_lenet.params.hidden=64", "models.mc_lenet.weights_of: 'lenet' has arch 'lenet' and params {}"),
    ("models.lenet.train.optimizer=lbfgs", "models.lenet.train.optimizer"),
    ("attack.runs.noise.attack=sign_noise", "untargeted only"),
    ("attack.triptych.attack=fgsm", None),
    ("attack.triptych.attack=sign_noise", "attack.triptych.attack: sign_noise is untargeted only"),
    ("attack.runs.clean.attack=fgsm", "reserved"),
    ("run.device=cuda:7", "run.device = 'cuda:7'"),
    ("run.device=tpu", "expected cpu, cuda, cuda:N or mps"),
])
def test_bad_values_are_one_line_errors_before_any_work(override, expected, capsys, tmp_path, monkeypatch):
    """Every model and attack of a config is checked up front: a bad parameter of the second model is
    an error before the first one trains (no data is loaded: the patched loader would say so)."""
    import bayesrobust.experiment as experiment

    class DataLoaded(Exception):
        pass

    def loader(*args, **kwargs):
        raise DataLoaded

    monkeypatch.setattr(experiment, "load_data", loader)
    args = ["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path / "r"), "--set", override]
    if override.startswith("attack.runs.noise"):
        args += ["--set", "attack.runs.noise.targets=random"]
    if override.startswith("attack.triptych"):
        args += ["--set", "attack.triptych.params={}"]
    if expected is None:  # a valid change gets as far as loading data
        with pytest.raises(DataLoaded):
            main(args)
        return
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bayesrobust: error:") and expected in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_a_user_network_whose_constructor_fails_is_a_one_line_error(capsys, tmp_path):
    """A network named by import path whose constructor raises (here torch refuses a negative width) is
    one line naming the model, the class and the parameters, before any work."""
    args = ["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path / "r"),
            "--set", "models.gpdnn.arch=tests.user_nets:DropoutBatchNormCNN", "--set", "models.gpdnn.mode=deterministic",
            "--set", "models.gpdnn.params={width = -1}"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("bayesrobust: error: models.gpdnn: tests.user_nets:DropoutBatchNormCNN(width=-1) raised "
                          "RuntimeError: Trying to create tensor with negative dimension"), err
    assert not (tmp_path / "r").exists()


def test_importing_the_report_leaves_the_matplotlib_backend_alone():
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import bayesrobust.report, bayesrobust.report.figures as f; "
            "fig, ax = f.new_figure(); ax[0][0].plot([0, 1]); import io; fig.savefig(io.BytesIO(), format='png'); "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg"


def test_seeding_does_not_change_global_determinism_settings(tmp_path):
    import torch

    from bayesrobust.seeding import deterministic_algorithms, seed_everything

    before = torch.are_deterministic_algorithms_enabled()
    seed_everything(3)
    assert torch.are_deterministic_algorithms_enabled() == before
    with deterministic_algorithms():
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps", "tpu"])
def test_device_flag_is_checked_before_any_work(device, capsys, tmp_path):
    """`--device` goes through the same validation as `run.device` in the file."""
    import torch

    if (device == "cuda" and torch.cuda.is_available()) or (device == "cuda:7" and torch.cuda.device_count() > 7):
        pytest.skip("this machine really has that device")
    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code = main(["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path / "r"), "--device", device])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("bayesrobust: error: run.device") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "r").exists()


def test_progress_in_a_log_file_is_whole_lines(monkeypatch):
    """Redirected stderr (a batch job's log) gets sparse whole lines, never carriage-return redraws."""
    import io

    from bayesrobust import progress

    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    monkeypatch.setattr(progress, "_QUIET", {"value": False})
    assert list(progress.progress_bar(range(5), desc="epoch 1/3")) == list(range(5))
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n") and "epoch 1/3" in text and "5/5" in text
    log.truncate(0)
    assert list(progress.progress_bar([], desc="nothing to do")) == [] and log.getvalue() == ""
    monkeypatch.setattr(progress, "_QUIET", {"value": True})
    list(progress.progress_bar(range(5), desc="quiet"))
    assert "quiet" not in log.getvalue()


def test_datasets_listing_finds_variants_in_their_sources_folder_and_keeps_columns_apart(tmp_path, capsys, monkeypatch):
    """semeion-resized reads semeion/semeion.data: with that file under --data-dir it is found, not
    "missing"; a long name never runs into the next column; and the listing loads no dataset (loading is
    what made it take 45 s; --verify does it)."""
    import bayesrobust.data as data
    from bayesrobust.data.semeion import SEMEION

    def no_loading(*args, **kwargs):
        raise AssertionError("the listing loaded a dataset")

    monkeypatch.setattr(data, "load_dataset", no_loading)

    (tmp_path / "semeion").mkdir()
    (tmp_path / "semeion" / SEMEION.name).write_text("0 " * 266 + "\n")
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "found in" in rows["semeion-resized"] and "found in" in rows["semeion"]
    assert rows["semeion-resized"].split()[1] == "all/test"  # separate columns
    assert "missing" in rows["svhn"] and "offline" in rows["mnist-5k"]


def test_evaluate_from_a_finished_run_takes_its_networks_and_adds_calibrated_twins(tmp_path, capsys):
    """``evaluate --from RUN``: every trained model's weights come from RUN's checkpoints (no training);
    a twin with the weights of one of them — here vector scaling, absent from RUN — is made from it."""
    import json

    base = """
[run]
seed = 0
[data]
train = "mnist-5k"
val_fraction = 0.2
train_limit = 300
test_limit = 60
[models.net]
arch = "lenet"
mode = "plain"
params = { channels = [4, 8], hidden = 16 }
[models.net.train]
epochs = 1
[evaluation]
samples = 2
bootstrap = 0
"""
    config = tmp_path / "c.toml"
    config.write_text(base)
    assert main(["train", str(config), "--out", str(tmp_path / "trained"), "--quiet"]) == 0
    config.write_text(base + '[models.net_vs]\narch = "lenet"\nmode = "plain"\nparams = { channels = [4, 8], hidden = 16 }\n'
                             'weights_of = "net"\ncalibrate = "vector"\n')
    assert main(["evaluate", str(config), "--from", str(tmp_path / "trained"), "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    trained = json.loads((tmp_path / "trained" / "metrics.json").read_text())
    assert "train/net/epochs" in trained and "train/net/epochs" not in metrics  # loaded, not trained again
    assert metrics["clean/net_vs/acc"] >= 0 and metrics["clean/net_vs/nll"] != metrics["clean/net/nll"]
    cards = {c["name"]: c for c in json.loads((tmp_path / "eval" / "models.json").read_text())}
    assert cards["net_vs"]["calibration"] == "vector scaling" and cards["net"]["source"].startswith("checkpoint")
