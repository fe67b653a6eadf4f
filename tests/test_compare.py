"""``bayesrobust compare``: side-by-side metrics, paired differences marked only where they are real."""

from __future__ import annotations

import json

import numpy as np

from bayesrobust.cli import main
from bayesrobust.compare import compare_runs


def fake_run(path, correct: np.ndarray, labels_sha: str = "abc", extra: dict | None = None):
    """A run folder as the calibration suite leaves it (metrics, per-example arrays, metadata)."""
    (path / "arrays").mkdir(parents=True)
    confidence = np.full(len(correct), 0.9)
    nll = np.where(correct, 0.1, 2.3)
    metrics = {"calib/m/acc": float(correct.mean()), "calib/m/acc_low": 0.0, "calib/m/acc_high": 1.0,
               "calib/m/nll": float(nll.mean()), "clean/m/acc": float(correct.mean()), **(extra or {})}
    (path / "metrics.json").write_text(json.dumps(metrics))
    np.savez(path / "arrays" / "calibration.npz", **{"calib/m/examples/correct": correct, "calib/m/examples/nll": nll,
                                                     "calib/m/examples/brier": 1.0 - correct, "calib/m/examples/confidence": confidence})
    (path / "arrays" / "calibration.json").write_text(json.dumps({"test_labels_sha256": labels_sha, "bins": 15, "scheme": "width"}))
    return path


def test_paired_differences_are_marked_only_when_their_interval_excludes_zero(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.random(2000) < 0.9
    better = base | (rng.random(2000) < 0.5)  # fixes about half the errors, breaks nothing
    noisy = base.copy()
    flip = np.r_[np.flatnonzero(base)[:4], np.flatnonzero(~base)[:4]]
    noisy[flip] = ~noisy[flip]  # four digits got right, four others got wrong: no real difference
    a, b, c = fake_run(tmp_path / "a", base), fake_run(tmp_path / "b", better), fake_run(tmp_path / "c", noisy)
    table = compare_runs([a, b, c], ["calib/*/acc", "calib/*/nll"], resamples=300)
    assert table.keys == ["calib/m/acc", "calib/m/nll"]
    assert table.cells["calib/m/acc", 0].endswith("[0.0000, 1.0000]")  # the interval the run wrote
    assert table.cells["calib/m/acc", 1].endswith(" *") and "Δ +0.0" in table.cells["calib/m/acc", 1]
    assert "Δ" in table.cells["calib/m/acc", 2] and not table.cells["calib/m/acc", 2].endswith("*")
    other = fake_run(tmp_path / "d", better, labels_sha="other digits")
    assert "Δ" not in compare_runs([a, other], ["calib/*/acc"], resamples=50).cells["calib/m/acc", 1]  # not the same digits


def test_compare_command_writes_markdown_and_csv(tmp_path, capsys):
    a = fake_run(tmp_path / "a", np.ones(50, bool))
    b = fake_run(tmp_path / "b", np.ones(50, bool), extra={"clean/other/acc": 0.5})
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "t.md"), "--csv", str(tmp_path / "t.csv"),
                 "--resamples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| clean/other/acc | – | 0.5000 |" in printed and (tmp_path / "t.md").read_text() == printed
    assert (tmp_path / "t.csv").read_text().splitlines()[0] == f"metric,{a},{b}"
    assert main(["compare", str(a), "--metric", "nothing/*"]) == 2  # a pattern matching nothing is an error
    assert "'nothing/*' matches no metric" in capsys.readouterr().err
    # one pattern matches, the other is a typo: refused, not silently dropped from the table
    assert main(["compare", str(a), str(b), "--metric", "calib/*/acc", "--metric", "calib/*/ece_typo"]) == 2
    assert "'calib/*/ece_typo'" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
