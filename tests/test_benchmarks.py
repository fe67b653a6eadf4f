"""Every benchmark script runs once with tiny settings (their numbers live in docs/results.md)."""

from __future__ import annotations

import pytest

from bayesrobust.models import build_model
from tests.conftest import REPO, load_benchmark

SCRIPTS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))


def tiny_run_folder(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    model = build_model("lenet", mode="mc_dropout", channels=(4, 8), hidden=16)
    model.save(tmp_path / "checkpoints" / "mc.pt")
    model.with_mode("plain").save(tmp_path / "checkpoints" / "plain.pt")
    return tmp_path


TINY = {
    "bootstrap": lambda tmp: ["--predictions", "200", "--resamples", "20", "--peer-resamples", "2"],
    "conformal": lambda tmp: ["--predictions", "300", "--resamples", "20", "--peer-resamples", "5", "--repeats", "1"],
    "detection": lambda tmp: ["--checkpoint", str(tiny_run_folder(tmp) / "checkpoints" / "mc.pt"), "--images", "20",
                              "--train-images", "200", "--ocsvm-per-class", "10", "--samples", "3"],
    "gpdnn": lambda tmp: ["--images", "300", "--test-images", "20", "--epochs", "1", "--inducing", "8",
                          "--samples", "2", "--hidden", "16", "--repeats", "1", "--extractors", "lenet", "residual_sn",
                          "--residual-channels", "4", "8"],
    "mc_dropout": lambda tmp: ["--samples", "4", "--images", "8", "--repeats", "1"],
    "attacks": lambda tmp: ["--checkpoint", str(tiny_run_folder(tmp) / "checkpoints" / "plain.pt"), "--images", "6",
                            "--cw-images", "2", "--slow-peer-images", "2", "--square-queries", "20",
                            "--apgd-steps", "5", "--starts", "2"],
    "sweep": lambda tmp: ["--trials", "2", "--images", "100", "--epochs", "1"],
    "vae": lambda tmp: ["--images", "200", "--epochs", "2", "--hidden", "16", "--latent", "4"],
    "stochastic_attacks": lambda tmp: ["--run", str(tiny_run_folder(tmp)), "--limit", "10", "--eval-samples", "3",
                                       "--rows", "bim_a", "bim_a eot10 k1"],
}


def test_every_benchmark_has_tiny_settings():
    assert set(TINY) == set(SCRIPTS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group("ray")) if n == "sweep" else n
                                  for n in SCRIPTS])  # the sweep benchmark starts Ray: in the Ray tests' worker
def test_benchmark_runs(name, tmp_path, capsys):
    if name == "sweep":
        pytest.importorskip("ray", reason="the sweep benchmark compares against Ray: pip install 'bayesrobust[distributed]'")
    report = load_benchmark(name).main(TINY[name](tmp_path))
    assert isinstance(report, dict) and report
    assert capsys.readouterr().out.strip()  # prints its JSON
    if name == "gpdnn":  # the residual extractor is timed against the LeNet one at the same M
        assert report["gpdnn_residual_sn"]["M8"]["epoch_ratio_to_lenet_extractor"] > 0
        assert report["gpdnn_residual_sn"]["M8"]["channels"] == [4, 8]  # the residual widths alone
        assert report["gpdnn"]["M8"]["channels"] == [32, 64]


def test_stochastic_attack_benchmark_skips_eot_only_rows_on_plain_models(tmp_path):
    report = load_benchmark("stochastic_attacks").main(["--run", str(tiny_run_folder(tmp_path)), "--limit", "10", "--eval-samples", "3",
                                              "--rows", "bim_a", "bim_a eot10", "bim_a eot10 k1"])
    assert set(report["models"]) == {"mc", "plain"}
    assert "bim_a eot10" in report["models"]["mc"] and "bim_a eot10" not in report["models"]["plain"]
    assert "bim_a eot10 k1" in report["models"]["plain"]  # a margin changes a plain model's attack too
    row = report["models"]["mc"]["bim_a"]
    assert 0.0 <= row["claimed_rate"] <= row["success_rate"] <= 1.0 and row["seconds"] > 0


def test_conformal_benchmark_agrees_with_its_peers(capsys):
    """LAC's sets are MAPIE's set for set, and the AURC interval is the plain loop's on the same resamples."""
    pytest.importorskip("mapie")
    report = load_benchmark("conformal").main(["--predictions", "400", "--resamples", "30", "--peer-resamples", "30", "--repeats", "1"])
    assert report["conformal"]["lac"]["lac_sets_equal"]
    for method in ("aps", "raps"):
        assert report["conformal"][method]["peer_coverage"] >= 0.85
    aurc = report["aurc_bootstrap"]
    assert aurc["loop_interval"] == pytest.approx(aurc["interval"], abs=1e-12)
