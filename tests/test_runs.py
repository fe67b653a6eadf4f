"""Run folders: atomic writes, incomplete markers, no silent overwrite."""

import pytest

from bayesrobust.atomic import atomic_path
from bayesrobust.errors import RunError
from bayesrobust.runs import INCOMPLETE, RunDir


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
    with pytest.raises(RunError, match="no such run folder"):  # not "no metrics.json" for a typo in the path
        RunDir.open(tmp_path / "absent")


def test_arrays_round_trip(tmp_path):
    import numpy as np

    run = RunDir.create(tmp_path / "r")
    run.save_arrays("arrays/x.npz", **{"a/b": np.arange(3), "c": np.ones((2, 2))})
    back = run.load_arrays("arrays/x.npz")
    assert back["a/b"].tolist() == [0, 1, 2] and back["c"].shape == (2, 2)


def test_overwrite_refuses_folders_that_are_not_runs(tmp_path):
    """`--out ~ --overwrite` must never delete a home directory."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    (home / "metrics.json").write_text("{}")  # one run-like file is not enough
    for overwrite in (False, True):
        with pytest.raises(RunError, match="not a bayesrobust run folder"):
            RunDir.create(home, overwrite=overwrite)
    assert (home / "thesis.tex").read_text() == "years of work"
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        RunDir.create(tmp_path / "file", overwrite=True)


def test_overwrite_replaces_finished_and_crashed_runs(tmp_path):
    finished = RunDir.create(tmp_path / "a")
    for name in ("metrics.json", "config.toml", "env.json"):
        finished.write_text(name, "{}")
    finished.write_text("report.md", "old")
    finished.finish()
    fresh = RunDir.create(tmp_path / "a", overwrite=True)
    assert not (fresh.path / "report.md").exists() and not fresh.complete
    crashed = RunDir.create(tmp_path / "b")
    crashed.mark_failed(RuntimeError("boom"))
    assert not RunDir.create(tmp_path / "b", overwrite=True).complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing left aside


def test_overwrite_refuses_a_run_that_a_live_process_is_writing(tmp_path):
    import platform
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = tmp_path / "r"
        folder.mkdir()
        (folder / INCOMPLETE).write_text(f"started now pid {writer.pid} host {platform.node()}\n")
        with pytest.raises(RunError, match=f"being written by process {writer.pid}"):
            RunDir.create(folder, overwrite=True)
    finally:
        writer.kill()
        writer.wait()
    assert not RunDir.create(folder, overwrite=True).complete  # the writer is gone now


def _claim(path: str, barrier, results) -> None:
    from bayesrobust.errors import RunError
    from bayesrobust.runs import RunDir

    barrier.wait()
    try:
        run = RunDir.create(path)
    except RunError as exc:
        results.put(("lost", str(exc)))
        return
    except BaseException as exc:  # anything else is a failure the test must show, not a hang
        results.put(("error", repr(exc)))
        raise
    run.write_json("metrics.json", {"winner": True})
    run.write_text("config.toml", "x = 1\n")
    run.write_text("env.json", "{}")
    run.finish()
    results.put(("won", ""))


@pytest.mark.parametrize("precreated", [False, True])
def test_two_processes_creating_one_run_folder(tmp_path, precreated):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    target = tmp_path / "runs" / "same"
    if precreated:
        target.mkdir(parents=True)  # an empty folder made beforehand
    for _attempt in range(3):
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_claim, args=(str(target), barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(180)
        codes = [p.exitcode for p in procs]
        outcomes = sorted(results.get(timeout=30) for _ in procs)
        assert [o[0] for o in outcomes] == ["lost", "won"], (outcomes, codes)
        assert "already exists" in outcomes[0][1] or "another process" in outcomes[0][1]
        run = RunDir.open(target)
        assert run.complete and run.metrics() == {"winner": True}
        import shutil

        shutil.rmtree(target)
        if precreated:
            target.mkdir()


WRITER = """
import sys, time
from bayesrobust.runs import RunDir
run = RunDir.create(sys.argv[1])
for i in range(200):
    run.write_json(f"arrays/part{i}.json", {"i": i, "payload": list(range(500))})
    run.update_metrics({f"m/{i}": float(i)})
    time.sleep(0.01)  # at least 2 s of writing, whatever the machine's load
run.write_text("config.toml", "x = 1\\n")
run.write_text("env.json", "{}")
run.finish()
"""


def test_a_run_killed_at_a_random_point_never_looks_complete(tmp_path):
    """SIGKILL at a random moment while the run writes: it must look incomplete; the one run left to
    finish must be whole."""
    import json
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    for attempt in range(5):
        folder = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder)])
        if attempt == 0:
            assert proc.wait(120) == 0
            run = RunDir.open(folder)
            assert run.complete and len(run.metrics()) == 200 and (folder / "env.json").exists()
            assert all(json.loads(p.read_text())["i"] >= 0 for p in (folder / "arrays").glob("*.json"))
            continue
        deadline = time.monotonic() + 60
        while not (folder / INCOMPLETE).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere inside the ≥ 2 s of writing
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not RunDir.open(folder).complete


def test_the_claim_outlives_the_run(tmp_path, monkeypatch):
    """A slow second creator that saw the folder empty before a fast first run claimed, filled and
    finished it must still lose: the claim stays (the INCOMPLETE marker alone would not)."""
    import bayesrobust.runs as runs

    folder = tmp_path / "r"
    folder.mkdir()
    first = RunDir.create(folder)
    first.write_json("metrics.json", {"first": True})
    first.finish()
    assert (folder / runs.CLAIM).exists() and runs.is_run_folder(folder)
    monkeypatch.setattr(runs, "is_run_folder", lambda path: True)
    monkeypatch.setattr(runs.Path, "iterdir", lambda self: iter(()))  # the late creator's stale view: empty
    with pytest.raises(RunError, match="another process"):
        RunDir.create(folder)
    monkeypatch.undo()
    assert RunDir.open(folder).metrics() == {"first": True}
