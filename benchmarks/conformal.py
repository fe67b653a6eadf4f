"""Conformal sets and selective prediction: seconds for split conformal calibration and scoring (LAC, APS,
RAPS) on ``--predictions`` calibration and as many test predictions, ours (``bayesrobust.metrics.conformal``)
beside MAPIE's ``SplitConformalClassifier`` on the same probabilities; and AURC with ``--resamples``
bootstrap resamples, ours (``metrics.bootstrap`` on ``metrics.calibration``'s batched risk–coverage) beside
a plain loop over the same resamples (NumPy sort and cumulative sum per resample; timed on
``--peer-resamples`` of them and scaled when fewer), in one run.

Agreement, on the same probabilities: LAC's sets are MAPIE's set for set (``lac_sets_equal``). APS and
RAPS are randomised with different draws (and MAPIE's RAPS chooses its own λ and k_reg on part of the
calibration data), so their coverage and mean set size are printed beside ours rather than compared set
for set. The AURC intervals agree (``interval`` and ``loop_interval``: the same resample indices; equal
when the loop runs every resample and no two examples tie in uncertainty).

Prints JSON; ``speedup`` = peer seconds / our seconds (goal, issue 25: ≥ 1).

    python benchmarks/conformal.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from bayesrobust.metrics import calibration, conformal
from bayesrobust.metrics.bootstrap import bootstrap, resample_indices


def given_probabilities(classes: int):
    """A prefit scikit-learn classifier whose ``predict_proba(X)`` is ``X``: how MAPIE is handed the
    probabilities a model already gave."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class GivenProbabilities(ClassifierMixin, BaseEstimator):
        def fit(self, x, y):
            self.classes_ = np.arange(classes)
            return self

        def predict_proba(self, x):
            return np.asarray(x)

        def predict(self, x):
            return np.asarray(x).argmax(1)

    return GivenProbabilities()


def synthetic_predictions(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` softmax outputs of a fairly accurate, slightly over-confident classifier, and labels drawn
    from a tempered version of them (so the sets are non-trivial)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 2.0
    logits[np.arange(n), rng.integers(0, classes, n)] += 4.0
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    softer = probs ** 0.7
    softer /= softer.sum(1, keepdims=True)
    labels = (softer.cumsum(1) > rng.random(n)[:, None]).argmax(1)
    return probs, labels


def best_of(repeats: int, work) -> tuple[float, object]:
    """The fastest of ``repeats`` calls of ``work()`` and its (last) result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - start)
    return best, out


def ours(probs, labels, test_probs, method: str, alpha: float, u_cal, u_test) -> np.ndarray:
    q = conformal.calibrate(probs, labels, method, alpha, u=None if method == "lac" else u_cal)
    return conformal.prediction_sets(test_probs, q, method, u=None if method == "lac" else u_test)


def mapie_sets(probs, labels, test_probs, method: str, alpha: float, seed: int) -> np.ndarray:
    from mapie.classification import SplitConformalClassifier

    peer = SplitConformalClassifier(estimator=given_probabilities(probs.shape[1]).fit(probs, labels),
                                    confidence_level=1 - alpha, conformity_score=method, prefit=True, random_state=seed)
    peer.conformalize(probs, labels)
    return peer.predict_set(test_probs)[1][:, :, 0]


def one_row_aurc(uncertainty: np.ndarray, correct: np.ndarray) -> float:
    """AURC of one resample, written plainly: sort by uncertainty, the error rate of the kept prefix."""
    errors = np.cumsum(1.0 - correct[np.argsort(uncertainty, kind="stable")])
    return float(np.mean(errors / np.arange(1, len(errors) + 1)))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000, help="calibration predictions (and as many test ones)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of AURC")
    parser.add_argument("--peer-resamples", type=int, default=1000, help="loop iterations timed (then scaled to --resamples)")
    parser.add_argument("--repeats", type=int, default=3, help="timings repeated; the fastest is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n = args.predictions
    probs, labels = synthetic_predictions(2 * n, args.classes, args.seed)
    cal, test = slice(0, n), slice(n, None)
    u = conformal.uniforms(2 * n, args.seed)
    result = {"benchmark": "conformal", "predictions": n, "classes": args.classes, "alpha": args.alpha,
              "resamples": args.resamples, "machine": platform.machine(), "conformal": {}}
    for method in conformal.METHODS:
        seconds, sets = best_of(args.repeats, lambda m=method: ours(probs[cal], labels[cal], probs[test], m, args.alpha, u[cal], u[test]))
        row = {"seconds": seconds, "coverage": float(conformal.covered(sets, labels[test]).mean()), "size": float(sets.sum(1).mean())}
        try:
            peer_seconds, theirs = best_of(args.repeats, lambda m=method: mapie_sets(probs[cal], labels[cal], probs[test], m,
                                                                                    args.alpha, args.seed))
        except ImportError:
            row["peer"] = "MAPIE not installed (pip install 'bayesrobust[dev]')"
        else:
            row.update({"peer": "mapie.SplitConformalClassifier", "peer_seconds": peer_seconds, "speedup": peer_seconds / seconds,
                        "peer_coverage": float(conformal.covered(theirs, labels[test]).mean()),
                        "peer_size": float(theirs.sum(1).mean())})
            if method == "lac":
                row["lac_sets_equal"] = bool(np.array_equal(sets, theirs))
        result["conformal"][method] = row
    uncertainty = 1.0 - probs[test].max(1)
    correct = (probs[test].argmax(1) == labels[test]).astype(np.float64)
    seconds, interval = best_of(args.repeats, lambda: bootstrap(calibration.area_under_risk_coverage, uncertainty, correct,
                                                                resamples=args.resamples, seed=args.seed))
    indices = resample_indices(n, args.resamples, args.seed)
    start = time.perf_counter()
    loop = [one_row_aurc(uncertainty[rows], correct[rows]) for rows in indices[: args.peer_resamples]]
    loop_seconds = (time.perf_counter() - start) * args.resamples / min(args.peer_resamples, args.resamples)
    result["aurc_bootstrap"] = {"seconds": seconds, "loop_seconds": loop_seconds, "speedup": loop_seconds / seconds,
                                "loop": "numpy sort + cumsum per resample", "estimate": interval.estimate,
                                "interval": [interval.low, interval.high],
                                "loop_interval": [float(v) for v in np.percentile(loop, [2.5, 97.5])],
                                "loop_resamples": len(loop)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
