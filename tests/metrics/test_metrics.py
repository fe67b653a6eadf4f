"""Batched ranking metrics against scikit-learn row by row; bootstrap intervals: seeded, covering, paired."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bayesrobust.metrics import calibration as cal
from bayesrobust.metrics import ranking
from bayesrobust.metrics.bootstrap import (
    Interval,
    batched_mean,
    bootstrap,
    bootstrap_all,
    paired_bootstrap,
    resample_indices,
)
from bayesrobust.metrics.ood import auroc


def _cases(rows: int, n: int, seed: int, levels: int | None):
    """Random label/score rows; ``levels`` rounds scores so many ties occur."""
    rng = np.random.default_rng(seed)
    truth = rng.random((rows, n)) < rng.uniform(0.1, 0.9, size=(rows, 1))
    scores = rng.normal(size=(rows, n)) + truth * rng.uniform(0, 2, size=(rows, 1))
    if levels is not None:
        scores = np.round(scores * levels) / levels
    return truth, scores


def _sklearn_tpr_at(t, s, fpr):
    fprs, tprs, _ = roc_curve(t, s, drop_intermediate=False)  # the default drops collinear points
    return tprs[fprs <= fpr].max()


@pytest.mark.parametrize("levels", [None, 2, 5])
def test_batched_ranking_metrics_equal_sklearn_row_by_row(levels):
    truth, scores = _cases(40, 57, seed=levels or 0, levels=levels)
    auc, ap, tpr = ranking.roc_auc(truth, scores), ranking.average_precision(truth, scores), ranking.tpr_at_fpr(truth, scores, 0.1)
    for i in range(len(truth)):
        assert auc[i] == pytest.approx(roc_auc_score(truth[i], scores[i]), abs=1e-12)
        assert ap[i] == pytest.approx(average_precision_score(truth[i], scores[i]), abs=1e-12)
        assert tpr[i] == pytest.approx(_sklearn_tpr_at(truth[i], scores[i], 0.1), abs=1e-12)


def test_ranking_metrics_on_one_class_rows_are_nan_and_known_answers_hold():
    assert np.isnan(ranking.roc_auc([[True, True]], [[0.1, 0.2]])[0])
    assert np.isnan(ranking.average_precision([[False, False]], [[0.1, 0.2]])[0])
    assert np.isnan(ranking.tpr_at_fpr([[False, False]], [[0.1, 0.2]])[0])
    truth = np.array([0, 0, 1, 1], bool)
    assert ranking.roc_auc(truth, [0.1, 0.2, 0.3, 0.4])[0] == 1.0
    assert ranking.roc_auc(truth, [0.5, 0.5, 0.5, 0.5])[0] == 0.5  # all ties count half
    assert ranking.average_precision(truth, [0.1, 0.2, 0.3, 0.4])[0] == 1.0
    with pytest.raises(ValueError, match="shape"):
        ranking.roc_auc(truth, [0.1, 0.2])


def test_ood_auroc_is_sklearns():
    rng = np.random.default_rng(3)
    neg, pos = rng.normal(size=50), rng.normal(0.5, size=30)
    truth = np.r_[np.zeros(50, bool), np.ones(30, bool)]
    assert auroc(neg, pos) == pytest.approx(roc_auc_score(truth, np.r_[neg, pos]))
    assert auroc([1.0, 1.0], [1.0]) == 0.5


def test_bootstrap_is_seeded_and_its_interval_brackets_the_estimate():
    x = np.random.default_rng(0).normal(1.0, 2.0, size=400)
    a = bootstrap(batched_mean, x, resamples=500, seed=7)
    assert a == bootstrap(batched_mean, x, resamples=500, seed=7)
    assert a != bootstrap(batched_mean, x, resamples=500, seed=8)
    assert a.estimate == pytest.approx(x.mean())
    assert a.low < a.estimate < a.high
    # the percentile interval of a mean is close to the normal one, ±1.96 s/√n
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert a.high - a.low == pytest.approx(2 * half, rel=0.15)
    assert a.as_dict("m") == {"m": a.estimate, "m_low": a.low, "m_high": a.high}
    # chunking changes nothing
    assert bootstrap(batched_mean, x, resamples=500, seed=7, chunk=7) == a


def test_bias_corrected_interval_by_hand():
    corrected = Interval(0.010, 0.011, 0.029, 0.95, bias=0.008).bias_corrected(floor=0.0)
    assert (corrected.estimate, corrected.low, corrected.high) == pytest.approx((0.002, 0.0, 0.009))
    assert Interval(0.010, 0.011, 0.029, 0.95, bias=0.008).bias_corrected().low == pytest.approx(-0.009)
    # the bias is the mean of the resampled values minus the estimate: zero for a mean, up to noise
    x = np.random.default_rng(1).normal(size=2000)
    assert abs(bootstrap(batched_mean, x, resamples=400, seed=0).bias) < 0.01


def test_ece_bootstrap_bias_and_its_correction():
    """A calibrated model's binned ECE is biased upward and resampling adds that bias again (the
    percentile interval sits above the estimate); the bias-corrected estimate is nearer the true 0. On
    a model 0.2 overconfident the bias is negligible and both intervals hold the true 0.2."""
    rng = np.random.default_rng(0)
    ece = cal.ece_statistic(15, "width")
    confidence = rng.uniform(0.5, 1.0, size=3000)
    calibrated = bootstrap(ece, confidence, rng.random(3000) < confidence, resamples=500, seed=0)
    assert calibrated.bias > 0 and calibrated.low > 0.5 * calibrated.estimate
    corrected = calibrated.bias_corrected(floor=0.0)
    assert 0 <= corrected.estimate < calibrated.estimate
    assert corrected.low <= corrected.estimate <= corrected.high
    overconfident = bootstrap(ece, confidence, rng.random(3000) < confidence - 0.2, resamples=500, seed=0)
    assert abs(overconfident.bias) < 0.005
    for interval in (overconfident, overconfident.bias_corrected(floor=0.0)):
        assert interval.low < 0.2 < interval.high


def test_bootstrap_of_a_ranking_metric_and_of_a_paired_difference():
    truth, scores = _cases(1, 2000, seed=4, levels=None)
    truth, scores = truth[0], scores[0]
    interval = bootstrap(ranking.roc_auc, truth, scores, resamples=300, seed=0)
    assert interval.estimate == pytest.approx(roc_auc_score(truth, scores))
    assert interval.low < interval.estimate < interval.high < 1
    # a model compared with itself differs by exactly zero on every resample
    same = paired_bootstrap(ranking.roc_auc, (truth, scores), (truth, scores), resamples=200, seed=0)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    # a clearly better score: the whole interval of the difference is above zero
    better = paired_bootstrap(ranking.roc_auc, (truth, scores + 3 * truth), (truth, scores), resamples=200, seed=0)
    assert better.low > 0


@pytest.mark.parametrize("levels", [None, 4])  # continuous scores, and heavy ties
def test_weighted_forms_equal_the_resampled_statistics(levels):
    """The fast path (counts of each example per resample, the scores sorted once) gives the numbers
    resampled copies give, ties included."""
    from bayesrobust.metrics.bootstrap import batched_ratio, resample_counts

    truth, scores = _cases(1, 300, seed=11, levels=levels)
    truth, scores = truth[0], scores[0]
    indices = resample_indices(300, 60, seed=3)
    counts = resample_counts(indices)
    assert counts.sum(1).tolist() == [300.0] * 60 and counts[0, indices[0, 0]] >= 1
    t, s = truth[indices], scores[indices]
    for statistic in (ranking.roc_auc, ranking.average_precision, ranking.tpr_at_fpr_statistic(0.05),
                      ranking.fpr_at_tpr_statistic(0.95)):
        assert np.allclose(statistic.weighted(counts, truth, scores), statistic(t, s), equal_nan=True, atol=1e-12)
    confidence = 1 / (1 + np.exp(-scores))
    ece = cal.ece_statistic(10)
    assert np.allclose(ece.weighted(counts, confidence, truth), ece(confidence[indices], t), atol=1e-12)
    assert np.allclose(batched_ratio.weighted(counts, truth & (scores > 0), scores > 0),
                       batched_ratio(t & (s > 0), s > 0), equal_nan=True)
    assert not hasattr(cal.ece_statistic(10, "mass"), "weighted")  # equal-mass bins move with the resample


def test_bootstrap_all_shares_one_draw_and_matches_separate_calls():
    truth, scores = _cases(1, 500, seed=5, levels=None)
    truth, scores = truth[0], scores[0]
    plain = lambda t, s: ranking.roc_auc(t, s)  # noqa: E731  (no weighted form: resampled copies)
    together = bootstrap_all({"auc": (ranking.roc_auc, (truth, scores)), "auc_copies": (plain, (truth, scores)),
                              "accuracy": (batched_mean, (truth == (scores > 0),))}, resamples=200, seed=4)
    for name, (statistic, arrays) in {"auc": (ranking.roc_auc, (truth, scores)),
                                      "accuracy": (batched_mean, (truth == (scores > 0),))}.items():
        alone = bootstrap(statistic, *arrays, resamples=200, seed=4)
        assert together[name].estimate == alone.estimate
        assert together[name].low == pytest.approx(alone.low, abs=1e-12)
        assert together[name].high == pytest.approx(alone.high, abs=1e-12)
    assert together["auc_copies"].low == pytest.approx(together["auc"].low, abs=1e-12)
    with pytest.raises(ValueError, match="same examples"):
        bootstrap_all({"a": (batched_mean, (np.zeros(3),)), "b": (batched_mean, (np.zeros(4),))})


def test_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="length"):
        bootstrap(batched_mean, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="resamples"):
        resample_indices(5, 0, seed=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap(batched_mean, np.zeros(3), level=1.5)
    with pytest.raises(ValueError, match="at least one example"):
        bootstrap(batched_mean, np.zeros(0))


def test_fpr_at_tpr_against_the_full_roc_curve():
    truth, scores = _cases(30, 80, seed=9, levels=3)
    ours = ranking.fpr_at_tpr(truth, scores, 0.95)
    for i in range(len(truth)):
        fprs, tprs, _ = roc_curve(truth[i], scores[i], drop_intermediate=False)
        assert ours[i] == pytest.approx(fprs[tprs >= 0.95].min(), abs=1e-12)


def test_calibration_metrics_on_a_hand_built_case():
    from bayesrobust.metrics import calibration as cal

    # two bins of width 0.5: (0, 0.5] holds 0.3, 0.4 (one right: acc 0.5, conf 0.35);
    # (0.5, 1] holds 0.6, 0.9, 1.0 (two right: acc 2/3, conf 2.5/3)
    conf = np.array([0.3, 0.4, 0.6, 0.9, 1.0])
    hit = np.array([1, 0, 1, 0, 1])
    count, mean_conf, acc = cal.reliability(conf, hit, bins=2)
    assert count[0].tolist() == [2, 3] and mean_conf[0] == pytest.approx([0.35, 2.5 / 3]) and acc[0] == pytest.approx([0.5, 2 / 3])
    ece = 2 / 5 * 0.15 + 3 / 5 * (2.5 / 3 - 2 / 3)
    assert cal.expected_calibration_error(conf, hit, bins=2)[0] == pytest.approx(ece)
    assert cal.maximum_calibration_error(conf, hit, bins=2)[0] == pytest.approx(2.5 / 3 - 2 / 3)
    # equal mass, 5 bins: one example each, ECE = mean |hit - conf|
    assert cal.expected_calibration_error(conf, hit, bins=5, scheme="mass")[0] == pytest.approx(np.mean(np.abs(hit - conf)))
    # a confidence of exactly 0 lands in the first bin, of exactly 1 in the last
    assert cal.bin_index(np.array([0.0, 0.5, 1.0]), 2)[0].tolist() == [0, 0, 1]
    # perfectly calibrated: every bin's accuracy equals its confidence
    assert cal.expected_calibration_error(np.full(4, 0.5), np.array([1, 0, 1, 0]), bins=10)[0] == 0.0
    with pytest.raises(ValueError, match="scheme"):
        cal.bin_index(conf, 2, scheme="centre")


def test_brier_classwise_ece_and_risk_coverage_by_hand():
    from bayesrobust.metrics import calibration as cal

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    labels = np.array([0, 1])
    brier = ((0.3**2 + 0.2**2 + 0.1**2) + (0.1**2 + 0.9**2 + 0.8**2)) / 2
    assert cal.brier_score(probs, labels)[0] == pytest.approx(brier)
    assert cal.brier_score(probs, labels, ovadia=True)[0] == pytest.approx(brier - 1)
    from sklearn.metrics import brier_score_loss
    assert cal.brier_score(np.c_[1 - probs[:, 0], probs[:, 0]], labels == 0)[0] == pytest.approx(
        2 * brier_score_loss(labels == 0, probs[:, 0]))  # binary: twice scikit-learn's one-column score
    per_class = [cal.expected_calibration_error(probs[:, k], labels == k, bins=1)[0] for k in range(3)]
    assert cal.classwise_ece(probs, labels, bins=1)[0] == pytest.approx(np.mean(per_class))
    coverage, risk = cal.risk_coverage(np.array([0.1, 0.4, 0.2, 0.9]), np.array([1, 0, 1, 1]))
    assert coverage.tolist() == [0.25, 0.5, 0.75, 1.0]
    assert risk[0] == pytest.approx([0, 0, 1 / 3, 1 / 4])  # order: 0.1 ✓, 0.2 ✓, 0.4 ✗, 0.9 ✓
    assert cal.area_under_risk_coverage(np.array([0.1, 0.4, 0.2, 0.9]), np.array([1, 0, 1, 1]))[0] == pytest.approx(
        np.mean([0, 0, 1 / 3, 1 / 4]))


def test_batched_calibration_rows_equal_one_row_at_a_time():
    from bayesrobust.metrics import calibration as cal

    rng = np.random.default_rng(2)
    conf, hit = rng.uniform(0.1, 1, size=(6, 300)), rng.random((6, 300)) < 0.8
    for scheme in ("width", "mass"):
        batched = cal.expected_calibration_error(conf, hit, 15, scheme)
        assert batched == pytest.approx([cal.expected_calibration_error(c, h, 15, scheme)[0] for c, h in zip(conf, hit)])
    interval = bootstrap(lambda c, h: cal.expected_calibration_error(c, h), conf[0], hit[0], resamples=200, seed=0)
    assert interval.low <= interval.estimate <= interval.high
