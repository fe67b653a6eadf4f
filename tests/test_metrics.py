"""Batched ranking metrics against scikit-learn row by row; bootstrap intervals: seeded, covering, paired."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from bayesrobust.metrics import ranking
from bayesrobust.metrics.bootstrap import batched_mean, bootstrap, paired_bootstrap, resample_indices
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


def test_bootstrap_refuses_bad_input():
    with pytest.raises(ValueError, match="length"):
        bootstrap(batched_mean, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="resamples"):
        resample_indices(5, 0, seed=0)
    with pytest.raises(ValueError, match="level"):
        bootstrap(batched_mean, np.zeros(3), level=1.5)
    with pytest.raises(ValueError, match="at least one example"):
        bootstrap(batched_mean, np.zeros(0))
