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
