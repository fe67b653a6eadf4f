"""Split conformal prediction sets: hand-built scores, the coverage guarantee on exchangeable data, and
MAPIE's sets on the same probabilities."""

import numpy as np
import pytest

from bayesrobust.metrics import conformal


def test_scores_and_sets_by_hand():
    """p = (0.5, 0.3, 0.2): LAC scores 1 − p; APS the mass of the classes at least as probable, (0.5, 0.8,
    1.0); RAPS adds λ per class beyond the k_reg-th, (0.5, 0.9, 1.2) with λ 0.1, k_reg 1."""
    p = np.array([[0.5, 0.3, 0.2]])
    assert conformal.class_scores(p, "lac")[0] == pytest.approx([0.5, 0.7, 0.8])
    assert conformal.class_scores(p, "aps")[0] == pytest.approx([0.5, 0.8, 1.0])
    assert conformal.class_scores(p, "raps", lam=0.1, k_reg=1)[0] == pytest.approx([0.5, 0.9, 1.2])
    assert conformal.class_scores(p[:, [2, 0, 1]], "aps")[0] == pytest.approx([1.0, 0.5, 0.8])  # order-free
    assert conformal.prediction_sets(p, 0.8, "aps")[0].tolist() == [True, True, False]
    # randomised: only u of the candidate's own mass counts (Romano et al.)
    assert conformal.class_scores(p, "aps", u=np.array([0.5]))[0] == pytest.approx([0.25, 0.65, 0.9])
    # q̂ is the ⌈(n + 1)(1 − α)⌉-th smallest score; too few examples for 1 − α: every class, every set
    assert conformal.conformal_threshold(np.arange(1, 10) / 10, 0.2) == pytest.approx(0.8)
    assert conformal.conformal_threshold(np.array([0.1, 0.2]), 0.1) == float("inf")
    with pytest.raises(ValueError, match="alpha"):
        conformal.conformal_threshold(np.ones(5), 1.0)
    with pytest.raises(ValueError, match="unknown conformal method"):
        conformal.class_scores(p, "thr2")


@pytest.mark.parametrize("method,randomised", [("lac", False), ("aps", False), ("aps", True), ("raps", True)])
def test_coverage_holds_on_exchangeable_data_within_the_finite_sample_bound(method, randomised):
    """Over 300 random calibration / test splits of i.i.d. examples, the mean test coverage lies in
    [1 − α, 1 − α + 1/(n + 1)] (n = 200 calibration examples), up to the average's own noise, for the
    deterministic and the randomised scores; a model whose probabilities say little gets large sets,
    never less coverage."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(10, 0.3), 1500)
    labels = np.array([rng.choice(10, p=row) for row in probs])
    noisy = np.where(rng.random(1500) < 0.3, rng.integers(0, 10, 1500), labels)  # the model is wrong 27% of the time
    alpha, n, coverages, sizes = 0.1, 200, [], []
    for _ in range(300):
        order = rng.permutation(1500)
        cal, test = order[:n], order[n:]
        u = rng.random(1500) if randomised else None
        q = conformal.calibrate(probs[cal], noisy[cal], method, alpha, u=None if u is None else u[cal])
        sets = conformal.prediction_sets(probs[test], q, method, u=None if u is None else u[test])
        coverages.append(conformal.covered(sets, noisy[test]).mean())
        sizes.append(sets.sum(1).mean())
    mean = float(np.mean(coverages))
    assert 1 - alpha - 0.004 <= mean <= 1 - alpha + 1 / (n + 1) + 0.004, mean
    assert 1.0 < np.mean(sizes) < 10.0


def test_lac_sets_are_mapies_and_aps_differs_only_by_its_definition():
    """On the same probabilities MAPIE's LAC sets are ours, set for set. MAPIE's APS draws its own
    randomisation (and by default keeps the class that crosses q̂), so its sets are not ours set for set:
    both keep the coverage, with mean sizes within 25% of each other."""
    mapie = pytest.importorskip("mapie.classification")
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Given(ClassifierMixin, BaseEstimator):
        """predict_proba(X) = X: the probabilities a model already gave."""

        def fit(self, x, y):
            self.classes_ = np.arange(x.shape[1])
            return self

        def predict_proba(self, x):
            return np.asarray(x)

        def predict(self, x):
            return np.asarray(x).argmax(1)

    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(10, 0.5), 3000)
    labels = np.array([rng.choice(10, p=row) for row in probs])
    cal, test = slice(0, 1000), slice(1000, None)
    for method in ("lac", "aps"):
        peer = mapie.SplitConformalClassifier(estimator=Given().fit(probs[cal], labels[cal]), confidence_level=0.9,
                                              conformity_score=method, prefit=True, random_state=0)
        peer.conformalize(probs[cal], labels[cal])
        theirs = peer.predict_set(probs[test])[1][:, :, 0]
        u = None if method == "lac" else rng.random(3000)
        q = conformal.calibrate(probs[cal], labels[cal], method, 0.1, u=None if u is None else u[cal])
        ours = conformal.prediction_sets(probs[test], q, method, u=None if u is None else u[test])
        if method == "lac":
            assert np.array_equal(ours, theirs)
        else:
            for sets in (ours, theirs):
                assert conformal.covered(sets, labels[test]).mean() >= 0.88
            assert abs(ours.sum(1).mean() / theirs.sum(1).mean() - 1) < 0.25
