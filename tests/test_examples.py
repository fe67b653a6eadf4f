"""The documentation's example scripts run verbatim (as Pyro's tests run its examples)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from bayesrobust.models import BayesianClassifier
from tests.conftest import REPO

EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.py"))
RUNNABLE = ["bring_your_own_model.py"]  # the others are modules the examples import


def test_every_example_script_is_run_or_imported():
    assert {p.name for p in EXAMPLES} == {*RUNNABLE, "my_nets.py"}


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNNABLE)
def test_example_runs_verbatim(name, tmp_path, monkeypatch):
    done = subprocess.run([sys.executable, str(REPO / "docs" / "examples" / name), str(tmp_path)], capture_output=True,
                          text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mutual information" in done.stdout and "ECE" in done.stdout and "MI detector" in done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for model in ("mine", "mine_plain", "mine_ts"):  # every form evaluated, calibrated and attacked
        assert {f"clean/{model}/acc", f"calib/{model}/ece", f"calib/{model}/fgsm/accuracy"} <= set(metrics), model
    assert metrics["train/mine_ts/temperature"] > 0
    assert (tmp_path / "run" / "report.html").is_file() and not (tmp_path / "run" / "INCOMPLETE").exists()
    # the run used the author's own weights: its checkpoints hold exactly the state_dict the script saved
    monkeypatch.syspath_prepend(str(REPO / "docs" / "examples"))
    saved = torch.load(tmp_path / "weights.pt", weights_only=True)
    for model in ("mine", "mine_plain"):
        loaded = BayesianClassifier.load(tmp_path / "run" / "checkpoints" / f"{model}.pt")
        assert loaded.params["module"] == "my_nets:MyCNN"
        assert all(torch.equal(saved[k], v) for k, v in loaded.network.state_dict().items())
