"""Run folders: atomic writes, incomplete markers, no silent overwrite."""

import pytest

from bayesrobust.errors import RunError
from bayesrobust.runs import INCOMPLETE, RunDir, atomic_path


def test_new_run_is_incomplete_until_finished(tmp_path):
    run = RunDir.create(tmp_path / "r")
    assert not run.complete and (run.path / INCOMPLETE).exists()
    run.update_metrics({"clean/acc": 0.5})
    run.update_metrics({"clean/nll": 1.0})
    assert run.metrics() == {"clean/acc": 0.5, "clean/nll": 1.0}
    run.update_metrics({"adv/l2_success": float("nan")})
    assert "NaN" not in run.file("metrics.json").read_text() and run.metrics()["adv/l2_success"] is None
    run.finish()
    assert run.complete


def test_existing_run_is_not_overwritten_unless_asked(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.write_json("metrics.json", {"a": 1})
    with pytest.raises(RunError, match="already exists"):
        RunDir.create(tmp_path / "r")
    fresh = RunDir.create(tmp_path / "r", overwrite=True)
    assert fresh.metrics() == {}


def test_failed_write_leaves_previous_file_intact(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-written")
            raise ZeroDivisionError("simulated failure mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_mark_failed_records_the_error(tmp_path):
    run = RunDir.create(tmp_path / "r")
    run.mark_failed(ValueError("boom"))
    assert not run.complete and "boom" in (run.path / INCOMPLETE).read_text()


def test_open_refuses_non_run_folders(tmp_path):
    with pytest.raises(RunError, match="not a run folder"):
        RunDir.open(tmp_path)


def test_arrays_round_trip(tmp_path):
    import numpy as np

    run = RunDir.create(tmp_path / "r")
    run.save_arrays("arrays/x.npz", **{"a/b": np.arange(3), "c": np.ones((2, 2))})
    back = run.load_arrays("arrays/x.npz")
    assert back["a/b"].tolist() == [0, 1, 2] and back["c"].shape == (2, 2)
