"""The calibration suite: its metrics on a hand-built predictive, its attacks, its config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesrobust.attacks.spec import AttackSpec
from bayesrobust.config import config_from_dict
from bayesrobust.errors import ConfigError
from bayesrobust.predictive import Predictive
from bayesrobust.suites.calibration import (
    CalibrationSection,
    adversarial_confidence,
    calibration_metrics,
)


def test_metrics_of_a_hand_built_predictive():
    """Four examples, two classes: confidences 0.875, 0.875, 0.625, 0.625 (exact in float32), the first
    three right."""
    probs = torch.tensor([[0.875, 0.125], [0.875, 0.125], [0.375, 0.625], [0.625, 0.375]])
    labels = torch.tensor([0, 0, 1, 1])
    pred = Predictive(probs[None])
    values, bins = calibration_metrics(pred, labels, CalibrationSection(bins=10, bootstrap=100), seed=0)
    assert values["acc"] == 0.75
    assert values["nll"] == pytest.approx(-np.log([0.875, 0.875, 0.625, 0.375]).mean())
    assert values["brier"] == pytest.approx(np.mean([0.03125, 0.03125, 0.28125, 0.78125]))
    # bins (0.8, 0.9]: two examples, confidence 0.875, accuracy 1; (0.6, 0.7]: two, confidence 0.625, accuracy 0.5
    assert values["ece"] == pytest.approx(0.5 * 0.125 + 0.5 * 0.125)
    assert values["mce"] == pytest.approx(0.125)
    assert values["acc_low"] <= values["acc"] <= values["acc_high"]
    assert 0 <= values["ece_debiased_low"] <= values["ece_debiased_high"]
    count = bins["bins", "count"]
    assert count.sum() == 4 and count[8] == 2 and count[6] == 2
    unbootstrapped, _ = calibration_metrics(pred, labels, CalibrationSection(bins=10, bootstrap=0), seed=0)
    assert "ece_low" not in unbootstrapped and "ece_debiased" not in unbootstrapped and unbootstrapped["ece"] == values["ece"]


def test_confidence_under_attack(small_lenet, digits5k):
    _, test = digits5k
    subset = test.head(40, seed=0)
    out, sets = adversarial_confidence(small_lenet, subset, AttackSpec("fgsm", {"eps": 0.3}),
                                       CalibrationSection(samples=4, adaptive_eot_samples=2), seed=0)
    assert sets == {}  # no conformal thresholds given
    clean = small_lenet.predictive(subset.images, 4, generator=torch.Generator().manual_seed(0)).accuracy(subset.labels)
    assert out["accuracy"] < clean and 0 < out["confidence_wrong"] <= 1 and out["entropy"] > 0


@pytest.mark.parametrize("change, message", [
    ({"scheme": "quantile"}, "calibration.scheme"),
    ({"bins": 0}, "calibration.bins"),
    ({"bootstrap": -1}, "calibration.bootstrap"),
    ({"attacks": {"f": {"attack": "fgsm", "params": {"eps": "big"}}}}, "calibration.attacks.f.params.eps"),
    ({"resamples": 5}, "resamples"),
    ({"rotations": [400]}, "calibration.rotations"),
    ({"translations": [30]}, "calibration.translations"),
    ({"shift_limit": -1}, "calibration.shift_limit"),
])
def test_calibration_config_errors_name_their_key(change, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"models": {"m": {"arch": "lenet"}}, "calibration": change})


def test_logistic_adversarial_objective_is_the_exact_worst_case():
    """ζ(ε‖w‖₁ − y(wᵀx + b)) is the logistic loss at x − ε·y·sign(w) (unclipped), and no other point of the
    ε-box (clipped to [0, 1]) costs more than the clipped sign step."""
    from bayesrobust.analysis.logistic import linear_fgsm, logistic_objective

    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 784, generator=g, dtype=torch.float64) * 0.5 + 0.25  # inner pixels: ε 0.2 never clips
    y = torch.where(torch.rand(64, generator=g) < 0.5, -1.0, 1.0).double()
    w, b = torch.randn(784, generator=g, dtype=torch.float64) * 0.1, torch.tensor(0.3, dtype=torch.float64)
    eps = 0.2
    moved = x - eps * y[:, None] * torch.sign(w)
    assert torch.allclose(logistic_objective(w, b, x, y, adversarial_eps=eps), logistic_objective(w, b, moved, y))
    assert torch.allclose(linear_fgsm(x, y, w, eps), moved)
    x01 = torch.rand(64, 784, generator=g, dtype=torch.float64)  # now with clipping at the edges
    worst = torch.nn.functional.softplus(-y * (linear_fgsm(x01, y, w, eps) @ w + b))
    for _ in range(20):
        other = (x01 + eps * (2 * torch.rand(x01.shape, generator=g, dtype=torch.float64) - 1)).clamp(0, 1)
        assert (torch.nn.functional.softplus(-y * (other @ w + b)) <= worst + 1e-12).all()


def test_logistic_regression_reproduces_goodfellow_on_real_digits(digits5k):
    """3s vs 7s (1,500 training digits, 60 test digits): the plain model is nearly always wrong at ε 0.25 (published 99%); the adversarial objective
    cuts that error far more than L1 does at a similar clean error, with a smaller ‖w‖₁."""
    from bayesrobust.analysis.logistic import LogisticSection, run_logistic

    metrics, arrays = run_logistic(*digits5k, LogisticSection(epochs=15, l1=(0.0025,)), seed=0)
    plain, l1, adv = "logistic/plain", "logistic/l1=0.0025", "logistic/adversarial eps=0.25"
    assert metrics[f"{plain}/clean_error"] < 0.1 and metrics[f"{plain}/adv_error"] > 0.9
    assert metrics[f"{adv}/adv_error"] < 0.5 * metrics[f"{plain}/adv_error"] and metrics[f"{adv}/clean_error"] < 0.15
    assert metrics[f"{l1}/w_l1"] < metrics[f"{plain}/w_l1"] and metrics[f"{adv}/w_l1"] < metrics[f"{plain}/w_l1"]
    assert arrays[f"{adv}/weights"].shape == (28, 28) and arrays["logistic/examples_adv"].shape == (8, 28, 28)


def test_shift_protocol_runs_every_copy_and_shows_no_bar_without_shifts(trained_lenet, digits5k, monkeypatch, tmp_path):
    """Rotations and translations each start at strength 0; a run configured with neither computes nothing
    and prints no empty progress bar (every ordinary run passes through here)."""
    import io

    from bayesrobust import progress
    from bayesrobust.runs import RunDir
    from bayesrobust.suites.evaluation import EvaluationSection, run_shift_protocol
    from bayesrobust.units import Units

    log = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", log)
    monkeypatch.setattr(progress, "_QUIET", {"value": False})
    plain = trained_lenet.with_mode("plain")  # deterministic, so both strength-0 copies score alike
    config = EvaluationSection(shift_limit=50, samples=2, batch_size=50, bootstrap=200)
    units = Units(RunDir.create(tmp_path / "run"), "evaluation", 0)
    assert run_shift_protocol({"m": plain}, digits5k[1], config, seed=0, units=units) == ({}, {})
    assert log.getvalue() == ""
    config = EvaluationSection(shift_limit=50, samples=2, batch_size=50, bootstrap=200, rotations=(90.0,), translations=(4,))
    metrics, arrays = run_shift_protocol({"m": plain, "mc": trained_lenet}, digits5k[1], config, seed=0, units=units)
    copies = {"ovadia/rotate_0", "ovadia/rotate_90", "ovadia/translate_0", "ovadia/translate_4"}
    assert {k.rsplit("/", 2)[0] for k in metrics} == copies
    assert metrics["ovadia/rotate_0/m/acc"] == metrics["ovadia/translate_0/m/acc"] > metrics["ovadia/rotate_90/m/acc"]
    # per-example NLL and Brier behind the means and their intervals, for paired differences
    for copy, model in (("rotate_90", "m"), ("translate_4", "mc")):
        key, per_example = f"ovadia/{copy}/{model}", f"ovadia/{copy}/{model}/per_example"
        assert arrays[f"{per_example}/nll"].shape == arrays[f"{per_example}/brier"].shape == (50,)
        assert metrics[f"{key}/nll"] == pytest.approx(float(arrays[f"{per_example}/nll"].mean()), rel=1e-5)
        assert metrics[f"{key}/brier_low"] <= metrics[f"{key}/brier"] <= metrics[f"{key}/brier_high"]
        assert metrics[f"{key}/nll_low"] <= metrics[f"{key}/nll"] <= metrics[f"{key}/nll_high"]
    assert "shift protocol" in log.getvalue() and "4/4" in log.getvalue()


def test_paired_shift_differences_cancel_what_both_models_share():
    """Two models whose per-example NLL differ by a constant on every digit: the paired interval is that
    constant exactly, however much the digits vary (an unpaired comparison would overlap)."""
    import numpy as np

    from bayesrobust.analysis.paired import paired_shift_differences, shift_copies

    rng = np.random.default_rng(0)
    hard = rng.exponential(2.0, 500)
    from bayesrobust.suites.evaluation import OVADIA_EXAMPLES as key

    arrays = {key(copy="rotate_90", model="a", quantity="nll"): hard + 0.1, key(copy="rotate_90", model="b", quantity="nll"): hard,
              key(copy="rotate_90", model="a", quantity="brier"): hard * 0.0,
              key(copy="rotate_90", model="b", quantity="brier"): hard * 0.0 + 0.2,
              key(copy="translate_4", model="a", quantity="nll"): hard, key(copy="translate_4", model="b", quantity="nll"): hard,
              key(copy="rotate_90", model="c", quantity="nll"): hard}
    assert shift_copies(arrays, "a") == ["rotate_90", "translate_4"]
    diff = paired_shift_differences(arrays, "a", "b", resamples=200)
    assert set(diff) == {"rotate_90/nll", "rotate_90/brier", "translate_4/nll"}
    assert diff["rotate_90/nll"].low == pytest.approx(0.1) and diff["rotate_90/nll"].high == pytest.approx(0.1)
    assert diff["rotate_90/brier"].estimate == pytest.approx(-0.2)
    assert diff["translate_4/nll"].estimate == 0.0


def test_paired_differences_between_models_cancel_the_digits_they_share():
    """Model B's NLL is A's plus 0.1 on every digit and its correctness the same: ΔNLL is exactly 0.1 with a
    zero-width paired interval and Δaccuracy 0, however much the digits vary; the reference is skipped."""
    import numpy as np

    from bayesrobust.suites.calibration import paired_differences

    rng = np.random.default_rng(0)
    nll = rng.exponential(1.0, 500)
    correct = rng.random(500) < 0.8
    confidence = rng.uniform(0.5, 1.0, 500)
    arrays = {}
    for model, shift in (("a", 0.0), ("b", 0.1)):
        arrays.update({f"calib/{model}/examples/nll": nll + shift, f"calib/{model}/examples/correct": correct,
                       f"calib/{model}/examples/brier": nll / 10 + shift, f"calib/{model}/examples/confidence": confidence})
    out = paired_differences(arrays, "test", ["a", "b"], "a", CalibrationSection(bootstrap=300), seed=0)
    out = {k.removeprefix("calib_paired/test/"): v for k, v in out.items()}
    assert not any(k.startswith("a/") for k in out)
    assert out["b/nll"] == pytest.approx(0.1) and out["b/nll_low"] == pytest.approx(0.1) == out["b/nll_high"]
    assert out["b/acc"] == 0.0 == out["b/acc_low"] == out["b/acc_high"] and out["b/ece"] == pytest.approx(0.0)


def test_the_report_warns_where_post_hoc_calibration_makes_a_shifted_set_worse(tmp_path):
    """A temperature-scaled model whose NLL on a shifted set is higher than its reference's, the paired
    interval above 0: the calibration section says so above its tables; on the test split it does not."""
    import numpy as np

    from bayesrobust.report.calibration_sections import calibration_section
    from bayesrobust.runs import RunDir

    run = RunDir.create(tmp_path / "run")
    bins = {f"{p}/{m}/bins/{k}": np.ones(3) for p in ("calib", "calib_shift/semeion") for m in ("lenet", "lenet_ts")
            for k in ("count", "confidence", "accuracy")}
    run.save_arrays("arrays/calibration.npz", **bins)
    run.write_json("arrays/calibration.json", {"models": ["lenet", "lenet_ts"], "bins": 3, "scheme": "width", "bootstrap": 100,
                                               "samples": 1, "attacks": {}, "sets": ["test", "semeion"], "reference": "lenet",
                                               "temperatures": {"lenet_ts": 0.75}, "logistic": None})
    paired = {f"calib_paired/{s}/lenet_ts/{k}": v for s in ("test", "semeion") for k, v in
              (("nll", 0.29), ("nll_low", 0.2), ("nll_high", 0.4), ("acc", 0.0), ("brier", 0.0), ("ece", 0.0))}
    run.update_metrics({**paired, "calib/lenet_ts/ece": 0.02})
    section = calibration_section(run)
    reliability = dict((name, fig) for name, fig, _ in section.figures)["reliability"]
    assert [ax.get_title() for ax in reliability.axes[:2]] == ["lenet", "lenet_ts, ECE 2.00%, T = 0.750"]
    assert len(section.warnings) == 1 and "made semeion worse" in section.warnings[0] and "0.750" in section.warnings[0]
    table = next(t for t in section.tables if t.caption.startswith("Paired differences"))
    assert table.rows[1][:3] == ["semeion", "lenet_ts − lenet", "+0.0000"] and table.rows[1][3].endswith("*")


def test_selective_prediction_by_hand():
    """Four digits ordered by uncertainty, the third wrong: risk 0, 0, 1/3, 1/4 at coverages ¼ … 1, so
    AURC = (1/3 + 1/4) / 4, accuracy 1 on the most certain half and 2/3 on the most certain three quarters;
    a batch of rows (bootstrap resamples) is scored row by row."""
    import numpy as np

    from bayesrobust.metrics import calibration as cal

    u, correct = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1, 1, 0, 1], bool)
    assert cal.area_under_risk_coverage(u, correct)[0] == pytest.approx((1 / 3 + 1 / 4) / 4)
    assert cal.accuracy_at_coverage(0.5)(u, correct)[0] == 1.0
    assert cal.accuracy_at_coverage(0.75)(u, correct)[0] == pytest.approx(2 / 3)
    assert cal.accuracy_at_coverage(1.0)(u, correct)[0] == 0.75
    rows = cal.accuracy_at_coverage(0.5)(np.stack([u, u[::-1]]), np.stack([correct, correct]))
    assert rows.tolist() == [1.0, 0.5]  # reversed certainty keeps digits 3 and 4 (one wrong)
    with pytest.raises(ValueError, match="coverage"):
        cal.accuracy_at_coverage(0.0)


def test_selective_statistics_from_resampling_counts_equal_the_resampled_rows():
    """The bootstrap's weighted AURC and accuracy at coverage (one sort, counts per resample) give what
    scoring every resampled row does, on examples without ties; a hand-built resample too: digits
    (a right, b wrong) drawn as a, b, b: risk 0, 1/2, 2/3 → AURC 7/18."""
    import numpy as np

    from bayesrobust.metrics import calibration as cal
    from bayesrobust.metrics.bootstrap import resample_counts, resample_indices

    assert cal.area_under_risk_coverage.weighted(np.array([[1.0, 2.0]]), np.array([0.1, 0.2]),
                                                 np.array([1, 0]))[0] == pytest.approx(7 / 18)
    rng = np.random.default_rng(3)
    u, correct = rng.random(300), rng.random(300) < 0.7
    rows = resample_indices(300, 40, seed=5)
    counts = resample_counts(rows)
    statistics = [cal.area_under_risk_coverage, *(cal.accuracy_at_coverage(c) for c in (0.9, 0.5, 0.01, 1.0))]
    for statistic in statistics:
        np.testing.assert_allclose(statistic.weighted(counts, u, correct), statistic(u[rows], correct[rows]), atol=1e-12)


def test_rotated_and_translated_copies_are_labelled_sets_of_the_same_digits(digits5k):
    """Each grid point is the same ``shift_limit`` test digits, shifted: labels kept, images moved; the
    evaluation suite's copies are the same digits under the same names, with the unshifted ones first."""
    from bayesrobust.data.shift import rotate
    from bayesrobust.suites.evaluation import EvaluationSection

    test = digits5k[1]
    grid = dict(rotations=(90.0,), translations=(4,), shift_limit=50)
    copies = {name: d for name, (_, _, d) in CalibrationSection(**grid).copies(test).items()}
    assert list(copies) == ["rotate_90", "translate_4"]
    evaluated = EvaluationSection(**grid).copies(test, identity=True)
    assert list(evaluated) == ["rotate_0", "rotate_90", "translate_0", "translate_4"]
    assert torch.equal(evaluated["rotate_90"][2].images, copies["rotate_90"].images)
    base = test.head(50, seed=0)
    for copy in copies.values():
        assert copy.labelled and torch.equal(copy.labels, base.labels) and not torch.equal(copy.images, base.images)
    assert torch.equal(copies["rotate_90"].images, rotate(base.images, 90.0))
    assert (copies["translate_4"].images[..., :4] == 0).all()
