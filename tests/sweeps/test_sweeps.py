"""``bayesrobust sweep``: the plan, resuming, fault isolation, aggregation, and a 2 × 2 grid × 2 seeds on
local Ray (skipped with the reason when Ray is not installed or cannot start)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bayesrobust.cli import main
from bayesrobust.errors import ConfigError
from bayesrobust.runs import RunDir
from bayesrobust.sweeps import run_sweep
from bayesrobust.sweeps.plan import parse_grid_option, parse_seeds, plan_trials, short_names, toml_literal
from bayesrobust.sweeps.report import seed_statistics

TINY = """
[run]
name = "tiny_sweep"
[data]
train = "mnist-5k"
train_limit = 200
test_limit = 100
val_fraction = 0.0
[models.mlp]
arch = "mlp"
mode = "plain"
params = { hidden = [8] }
[models.mlp.train]
epochs = 1
[evaluation]
samples = 1
grid_size = 4
[sweep]
grid = { "models.mlp.train.l1" = [0.0, 0.001] }
seeds = [0, 1]
"""


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_grid_and_seed_options():
    assert parse_grid_option("models.a.train.l1=1e-3, 1e-4") == ("models.a.train.l1", (1e-3, 1e-4))
    assert parse_grid_option('models.a.params.hidden=[8, 8],[16],"x,y",word') == \
        ("models.a.params.hidden", ([8, 8], [16], "x,y", "word"))
    assert parse_seeds("0-3") == (0, 1, 2, 3) and parse_seeds("4,7") == (4, 7)
    for bad in ("3-1", "a", "1,1"):
        with pytest.raises(ConfigError, match="seed"):
            parse_seeds(bad)
    with pytest.raises(ConfigError, match="KEY=v1"):
        parse_grid_option("no-equals")
    assert short_names(["models.a.train.l1", "models.b.train.l1", "models.a.train.l2"]) == \
        {"models.a.train.l1": "a.train.l1", "models.b.train.l1": "b.train.l1", "models.a.train.l2": "l2"}
    for value in (1e-3, 3, True, "s", [1, 2.5]):
        assert parse_grid_option(f"k={toml_literal(value)}")[1] == (value,)
    trials = plan_trials({"models.m.train.l1": (0.0, 1e-3), "models.m.train.lr": (0.01,)}, (0, 1))
    assert [t.name for t in trials] == ["l1=0.0,lr=0.01,seed=0", "l1=0.0,lr=0.01,seed=1",
                                        "l1=0.001,lr=0.01,seed=0", "l1=0.001,lr=0.01,seed=1"]
    assert trials[3].overrides == ["models.m.train.l1=0.001", "models.m.train.lr=0.01", "run.seed=1"]


def test_bad_grid_key_fails_before_any_trial(tiny, tmp_path):
    with pytest.raises(ConfigError, match="sweep trial .*unknown config key models.mlp.train.l3"):
        run_sweep(tiny, grid_options=["models.mlp.train.l3=1"], out=tmp_path / "s", executor="serial", progress=False)
    assert not (tmp_path / "s").exists()
    assert main(["sweep", str(tiny), "--executor", "serial", "--grid", "models.mlp.train.epochs=0",
                 "--out", str(tmp_path / "s"), "--quiet"]) == 2


def test_seed_statistics_by_hand():
    stats = seed_statistics([1.0, 2.0, 3.0])
    assert stats["mean"] == 2.0 and stats["std"] == 1.0 and stats["n"] == 3
    assert 1.0 <= stats["low"] < 2.0 < stats["high"] <= 3.0  # the mean of resampled seeds stays in their range


def test_serial_sweep_isolates_failures_and_resumes_interrupted_trials(tiny, tmp_path, monkeypatch):
    """One trial fails (a missing checkpoint): recorded, the rest complete. One is interrupted
    (Ctrl-C): it stays INCOMPLETE, the sweep stops. The re-run does only those two, then all agree
    with a plain ``bayesrobust run`` of the same overrides."""
    import bayesrobust.experiment as experiment

    tiny.write_text(TINY.replace('grid = { "models.mlp.train.l1" = [0.0, 0.001] }', ""))
    out = tmp_path / "sweep"
    grid = ["models.mlp.checkpoint=\"\",\"" + str(tmp_path / "missing.pt") + "\""]
    real = experiment.run_experiment
    state = {"interrupt": True}

    def interrupting(config, path, **kw):
        if config.run.seed == 1 and not config.models["mlp"].checkpoint and state["interrupt"]:
            state["interrupt"] = False
            run = RunDir.create(path)
            run.mark_failed(KeyboardInterrupt())  # what run_experiment leaves when Ctrl-C arrives mid-run
            raise KeyboardInterrupt
        return real(config, path, **kw)

    monkeypatch.setattr(experiment, "run_experiment", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(tiny, grid_options=grid, seeds="0-1", out=out, executor="serial", progress=False)
    names = [t["name"] for t in json.loads((out / "manifest.json").read_text())["trials"]]
    assert len(names) == 4
    interrupted = next(n for n in names if n.endswith("seed=1") and "missing" not in n)
    assert (out / "trials" / interrupted / "INCOMPLETE").exists()
    assert (out / "sweep_report.md").exists()  # written even after Ctrl-C, listing what did not finish
    result = run_sweep(tiny, grid_options=grid, seeds="0-1", out=out, executor="serial", progress=False)
    assert result["skipped"] == 1 and result["complete"] == 1  # the interrupted one reran; seed 0 was kept
    assert [f["name"] for f in result["failed"]] == [n for n in names if "missing" in n]
    assert all("missing.pt" in f["error"] for f in result["failed"])
    report = (out / "sweep_report.md").read_text()
    assert "Trials not complete" in report and "missing.pt" in report
    summary = json.loads((out / "sweep_metrics.json").read_text())
    (point,) = [p for p in summary["metrics"]["clean/mlp/acc"]]
    assert summary["metrics"]["clean/mlp/acc"][point]["n"] == 2
    # a trial is exactly the run that `bayesrobust run --set ...` makes
    trial = next(n for n in names if n.endswith("seed=0") and "missing" not in n)
    assert main(["run", str(tiny), "--set", 'models.mlp.checkpoint=""', "--seed", "0", "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    strip = lambda m: {k: v for k, v in m.items() if not k.endswith("seconds")}  # noqa: E731
    assert strip(RunDir.open(out / "trials" / trial).metrics()) == strip(RunDir.open(tmp_path / "plain").metrics())
    with pytest.raises(ConfigError, match="holds a different sweep"):
        run_sweep(tiny, seeds="0-2", out=out, executor="serial", progress=False)


@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time: make test's workers would start two at once
def test_two_by_two_grid_two_seeds_on_local_ray(tiny, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'bayesrobust[distributed]')")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except Exception as exc:  # noqa: BLE001
        pytest.skip(f"Ray cannot start on this machine: {exc}")
    try:
        out = tmp_path / "ray"
        code = main(["sweep", str(tiny), "--grid", "models.mlp.train.lr=0.001,0.01", "--seeds", "0-1", "--out", str(out),
                     "--quiet"])
    finally:
        ray.shutdown()
    assert code == 0
    outcomes = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(outcomes) == 8 and all(o["status"] == "complete" for o in outcomes)
    summary = json.loads((out / "sweep_metrics.json").read_text())
    acc = summary["metrics"]["clean/mlp/acc"]
    assert len(acc) == 4 and all(cell["n"] == 2 and cell["low"] <= cell["mean"] <= cell["high"] for cell in acc.values())
    assert (out / "figures" / "heat_clean_mlp_acc.png").stat().st_size > 1000
    assert "l1 \\ lr" in (out / "sweep_report.md").read_text()
    assert main(["sweep-report", str(out), "--metric", "clean/*/nll"]) == 0
    assert list(json.loads((out / "sweep_metrics.json").read_text())["metrics"]) == ["clean/mlp/nll"]
