"""The command line: help, errors as exit code 2 with a message, datasets listing, report rebuild."""

import pytest

from bayesrobust.cli import build_parser, main
from tests.conftest import REPO, tiny_overrides


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
    (tmp_path / "x" / "metrics.json").write_text("{}")
    code = main(["run", str(REPO / "experiments" / "quickstart.toml"), "--out", str(tmp_path / "x")])
    assert code == 2 and "already exists" in capsys.readouterr().err


def test_datasets_lists_offline_sets(capsys, tmp_path):
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mnist-5k" in out and "ok (1000 test, verified)" in out
    assert "missing" in out  # mnist is not in an empty data dir


def test_train_then_evaluate_from_checkpoints(tmp_path):
    config = str(REPO / "experiments" / "quickstart.toml")
    tiny = [a for s in tiny_overrides(REPO / "experiments" / "quickstart.toml") for a in ("--set", s)] + ["--quiet"]
    assert main(["train", config, "--out", str(tmp_path / "t"), *tiny]) == 0
    assert (tmp_path / "t" / "checkpoints" / "mc_lenet.pt").exists()
    assert not (tmp_path / "t" / "arrays" / "evaluation.npz").exists()
    assert main(["evaluate", config, "--from", str(tmp_path / "t"), "--out", str(tmp_path / "e"), *tiny]) == 0
    assert (tmp_path / "e" / "arrays" / "evaluation.npz").exists()


def test_sigterm_marks_the_run_incomplete(tmp_path):
    """A run killed with SIGTERM records the signal in INCOMPLETE and exits 130."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "bayesrobust.cli", "run", str(REPO / "experiments" / "quickstart.toml"),
           "--out", str(out), "--quiet", "--set", "models.lenet.train.epochs=50"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "config.toml").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "signal" in (out / "INCOMPLETE").read_text()
    assert not (out / "report.html").exists()
