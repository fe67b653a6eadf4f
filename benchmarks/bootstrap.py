"""Bootstrap cost: seconds for ``--resamples`` resamples of each headline metric on ``--predictions``
synthetic predictions, ours (vectorised, ``bayesrobust.metrics.bootstrap``) beside a loop over
scikit-learn's metric functions on the same resamples (timed on ``--peer-resamples`` and scaled; for ECE
and TPR at 5% FPR, which scikit-learn lacks as one call, a loop over our own one-row function), in one run.

Ours evaluates each statistic from resampling counts (sorting once, weighted cumulative sums and matrix
products; see ``metrics/bootstrap.py``) on the same index draws a resampling loop would use.

Prints JSON. Target (issue 12): 1,000 resamples of every headline metric on 10,000 predictions in
≤ 2 s on 2 cores: ``total_seconds`` sums separate calls (each draws its own indices),
``shared_draw_total_seconds`` evaluates all on one draw, as the detection suite's tables do.

    python benchmarks/bootstrap.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from bayesrobust.metrics import calibration, ranking
from bayesrobust.metrics.bootstrap import batched_mean, bootstrap, bootstrap_all, resample_indices, with_weighted


@with_weighted(lambda counts, t, p: batched_mean.weighted(counts, (p - t) ** 2))
def _brier(t, p):
    return batched_mean((p - t) ** 2)


def _one_row_tpr_at_5(truth, scores):
    return float(ranking.tpr_at_fpr(truth, scores, 0.05)[0])  # scikit-learn has no single call for it


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--peer-resamples", type=int, default=50, help="scikit-learn loop iterations timed, then scaled")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n = args.predictions
    positive = rng.random(n) < 0.5  # e.g. adversarial, or misclassified
    scores = rng.normal(size=n) + 1.5 * positive
    prob = 1 / (1 + np.exp(-scores))
    correct = rng.random(n) < 0.98
    confidence = np.clip(prob + rng.normal(0, 0.05, n), 0, 1)
    headline = {  # name: (our batched statistic, its arrays, the per-resample function a loop would call)
        "accuracy": (batched_mean, (correct,), lambda c: float(np.mean(c))),
        "brier": (_brier, (positive, prob), brier_score_loss),
        "ece_15_bins": (calibration.ece_statistic(15), (confidence, correct),
                        lambda c, h: calibration.expected_calibration_error(c, h)[0]),  # scikit-learn has no ECE
        "roc_auc": (ranking.roc_auc, (positive, scores), roc_auc_score),
        "aupr": (ranking.average_precision, (positive, scores), average_precision_score),
        "tpr_at_5_fpr": (ranking.tpr_at_fpr_statistic(0.05), (positive, scores), _one_row_tpr_at_5),
    }
    indices = resample_indices(n, args.peer_resamples, args.seed)
    result = {"benchmark": "bootstrap", "predictions": n, "resamples": args.resamples, "machine": platform.machine(),
              "metrics": {}}
    total = 0.0
    for name, (statistic, arrays, peer) in headline.items():
        start = time.perf_counter()
        interval = bootstrap(statistic, *arrays, resamples=args.resamples, seed=args.seed)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        for rows in indices:
            peer(*(a[rows] for a in arrays))
        peer_seconds = (time.perf_counter() - start) * args.resamples / args.peer_resamples
        total += ours
        result["metrics"][name] = {"seconds": ours, "loop_seconds": peer_seconds,
                                   "speedup": peer_seconds / ours, "loop": getattr(peer, "__name__", "lambda"), "interval": [interval.low, interval.high]}
    result["total_seconds"] = total
    start = time.perf_counter()
    bootstrap_all({name: (statistic, arrays) for name, (statistic, arrays, _) in headline.items()},
                  resamples=args.resamples, seed=args.seed)
    result["shared_draw_total_seconds"] = time.perf_counter() - start  # every metric on one index draw
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
