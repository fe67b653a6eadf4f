"""Long runs that survive: finished units are kept, a killed run resumes, and its numbers are the
uninterrupted run's, bit for bit."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesrobust.cli import main
from bayesrobust.config import load_config
from bayesrobust.errors import RunError
from bayesrobust.runs import INCOMPLETE, RunDir
from bayesrobust.schema import dump_toml, to_plain
from bayesrobust.units import Units
from tests.conftest import REPO, SMALL, shared_data, tiny_overrides


def results(run_dir: Path) -> dict:
    """A run's metrics without its timings (the only numbers that may differ between two runs)."""
    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.endswith("/seconds")}


def unit_records(run_dir: Path) -> int:
    return len(list(Path(run_dir).glob("units/*/*.json")))


# where each kill lands: (finished units k, then a delay inside the next unit), drawn once from
# random.Random(2026) as randint(1, 50), uniform(0, 0.3); the tiny quickstart has about 57 units
KILL_POINTS = [(8, 0.096), (33, 0.194), (7, 0.265), (39, 0.186), (27, 0.235)]


@pytest.mark.xdist_group("quickstart")  # beside the session's quickstart run, its uninterrupted twin
@pytest.mark.parametrize("k, delay", KILL_POINTS)
def test_a_killed_quickstart_resumes_to_the_same_numbers(quickstart_run, tmp_path, k, delay):
    """SIGKILL the tiny quickstart (the same command as the session's uninterrupted run) once the run
    folder holds k finished units, plus a delay that lands inside the next unit; resume it with --resume.
    The resumed run finishes, leaves no units behind and has the uninterrupted run's metrics exactly.
    One kill point per test, so each stays well inside the suite's per-test time limit."""
    path = REPO / "experiments" / "quickstart.toml"
    command = [sys.executable, "-m", "bayesrobust.cli", "run", str(path), "--quiet", "--seed", "1"]
    if shared_data() is not None:
        command += ["--data-dir", str(shared_data())]
    for s in tiny_overrides(path):
        command += ["--set", s]
    out = tmp_path / "killed"
    proc = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if unit_records(out) >= k:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the run ended ({proc.returncode}) before its kill after {k} units"
    assert (out / INCOMPLETE).is_file()
    resumed = subprocess.run([*command, "--resume", str(out)], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert not (out / INCOMPLETE).exists() and not (out / "units").exists()
    assert (out / "report.html").is_file()
    assert results(out) == results(quickstart_run), f"kill after {k} units: the resumed run's numbers differ"
    assert len(json.loads((out / "env.json").read_text())["resumes"]) == 1


@pytest.fixture
def small_config(tmp_path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    return path


def test_a_crashed_run_resumes_without_recomputing_its_finished_units(tmp_path, small_config, monkeypatch):
    """A run that crashes in its last suite (attack runs after evaluation) resumes: the evaluation suite,
    finished before the crash, and the attack run that finished are read back from their units
    (evaluating again would raise here) and the numbers are an uninterrupted run's."""
    import bayesrobust.suites.attack as attack_suite
    import bayesrobust.suites.evaluation as evaluation
    from bayesrobust.experiment import run_experiment

    config = load_config(small_config, ["run.seed=3", "evaluation.rotations=[90]", "evaluation.shift_limit=20"])
    run_experiment(config, tmp_path / "reference", progress=False, report=False)
    run_batched = attack_suite.run_batched
    calls = []

    def crash_on_third_attack(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return run_batched(*args, **kwargs)

    monkeypatch.setattr(attack_suite, "run_batched", crash_on_third_attack)
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(config, out, progress=False, report=False)
    assert "simulated crash" in (out / INCOMPLETE).read_text()
    assert {p.parent.name for p in out.glob("units/*/*.json")} == {"models", "evaluation", "attack"}
    with pytest.raises(RunError, match="--resume"):  # a plain re-run suggests resuming
        run_experiment(config, out, progress=False, report=False)

    monkeypatch.setattr(attack_suite, "run_batched", run_batched)

    def no_evaluation(*args, **kwargs):
        raise AssertionError("a finished evaluation unit was computed again")

    monkeypatch.setattr(evaluation, "predictive_metrics", no_evaluation)
    monkeypatch.setattr(evaluation, "shift_metrics", no_evaluation)
    run_experiment(config, out, resume=True, progress=False, report=False)
    assert results(out) == results(tmp_path / "reference")
    assert not (out / "units").exists()


def test_resume_refuses_a_changed_config_and_names_the_keys(tmp_path, small_config, capsys):
    out = tmp_path / "run"
    run = RunDir.create(out)
    run.write_text("config.toml", dump_toml(to_plain(load_config(small_config, ["run.seed=3"]))))
    run.mark_failed(RuntimeError("killed"))
    assert main(["run", str(small_config), "--resume", str(out), "--seed", "4",
                 "--set", "models.mc.train.epochs=3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "run.seed" in err and "models.mc.train.epochs" in err
    assert "killed" in (out / INCOMPLETE).read_text()  # refused before anything was touched


def test_resume_refuses_what_it_cannot_continue(tmp_path, small_config, capsys):
    config = load_config(small_config)
    with pytest.raises(RunError, match="no such run folder"):
        RunDir.resume(tmp_path / "absent")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not a bayesrobust run folder"):
        RunDir.resume(tmp_path / "other")
    done = RunDir.create(tmp_path / "done")
    done.write_text("config.toml", dump_toml(to_plain(config)))
    done.finish()
    with pytest.raises(RunError, match="complete; nothing to resume"):
        RunDir.resume(done.path)
    live = RunDir.create(tmp_path / "live")  # held by this process until it finishes or fails
    live.write_text("config.toml", dump_toml(to_plain(config)))
    with pytest.raises(RunError, match="being written by another process"):
        RunDir.resume(live.path)
    live.mark_failed(RuntimeError("stopped"))
    RunDir.resume(live.path).mark_failed(RuntimeError("stopped again"))  # released: resumable now
    assert main(["run", str(small_config), "--resume", str(live.path), "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert main(["run", str(small_config), "--resume", str(live.path), "--out", str(tmp_path / "x")]) == 2
    assert "drop --out" in capsys.readouterr().err


def test_a_unit_is_kept_once_and_read_back_exactly(tmp_path):
    """A unit is computed once; later calls (a resumed run) read the same metrics — NaN included — and
    arrays back. Its randomness depends on its key alone, not on what ran before, and the caller's
    global RNG state is left as it was."""
    run = RunDir.create(tmp_path / "r")
    calls = []

    def compute():
        calls.append(1)
        draw = torch.rand(3)
        return {"m/nan": float("nan"), "m/draw": float(draw[0])}, {"a/draw": draw.numpy(), "a/flag": np.array([True, False])}

    torch.manual_seed(1)
    first = Units(run, "suite", seed=0)("grid/1", compute)
    after = torch.rand(1)
    torch.manual_seed(1)
    torch.rand(5)  # the global RNG elsewhere
    again = Units(run, "suite", seed=0)("grid/1", compute)
    assert len(calls) == 1
    assert np.isnan(again[0]["m/nan"]) and again[0]["m/draw"] == first[0]["m/draw"]
    assert all(np.array_equal(first[1][k], again[1][k]) for k in first[1]) and again[1]["a/flag"].dtype == bool
    fresh_run = RunDir.create(tmp_path / "fresh")
    torch.rand(7)
    fresh = Units(fresh_run, "suite", seed=0)("grid/1", compute)
    assert fresh[0]["m/draw"] == first[0]["m/draw"]  # the same key draws the same, whatever ran before
    torch.manual_seed(1)
    assert torch.equal(torch.rand(1), after)  # the unit's draws did not move the caller's RNG
    record = next(run.path.glob("units/suite/*.json"))
    record.write_text("{ truncated")
    with pytest.raises(RunError, match="unreadable.*delete"):
        Units(run, "suite", seed=0)("grid/1", compute)


def test_an_interrupted_sweep_trial_resumes(tmp_path, small_config, monkeypatch):
    """The sweep runner resumes an interrupted trial whose config is unchanged (its finished evaluation
    units are read back, not recomputed) and starts a trial whose config changed afresh."""
    import bayesrobust.suites.attack as attack_suite
    import bayesrobust.suites.evaluation as evaluation
    from bayesrobust.sweeps.execute import run_trial

    text, out = small_config.read_text(), tmp_path / "trial"
    predictive_metrics = evaluation.predictive_metrics

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    run_batched = attack_suite.run_batched
    monkeypatch.setattr(attack_suite, "run_batched", crash)
    assert run_trial(text, ["run.seed=3"], str(out), None, False, threads=0)["status"] == "failed"
    assert (out / INCOMPLETE).is_file() and list(out.glob("units/evaluation/*.json"))
    monkeypatch.setattr(attack_suite, "run_batched", run_batched)
    monkeypatch.setattr(evaluation, "predictive_metrics", crash)
    outcome = run_trial(text, ["run.seed=3"], str(out), None, False, threads=0)
    assert outcome["status"] == "complete", outcome["error"]  # resumed: the evaluation did not run again
    monkeypatch.setattr(attack_suite, "run_batched", crash)
    other = tmp_path / "changed"
    assert run_trial(text, ["run.seed=3"], str(other), None, False, threads=0)["status"] == "failed"
    monkeypatch.setattr(evaluation, "predictive_metrics", predictive_metrics)
    monkeypatch.setattr(attack_suite, "run_batched", run_batched)
    outcome = run_trial(text, ["run.seed=4"], str(other), None, False, threads=0)
    assert outcome["status"] == "complete", outcome["error"]  # another seed: run afresh, not refused
    assert json.loads((other / "env.json").read_text()).get("resumes") is None
