"""Detectors on tiny cases with known answers; the mixed-set protocol; thresholds from validation only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayesrobust.attacks import build_attack
from bayesrobust.detection import (
    NotFittedError,
    UncertaintyDetector,
    build_mixed_set,
    choose_threshold,
    detection_metrics,
)
from bayesrobust.detection.hybrid import HybridDetector, five_crops, information_gain_threshold
from bayesrobust.errors import ConfigError, InputError


def test_threshold_from_separable_validation_scores_lies_between_them():
    clean, adv = np.array([0.1, 0.2, 0.3]), np.array([0.7, 0.8, 0.9])
    t = choose_threshold(clean, adv)
    assert 0.3 <= t < 0.7
    assert choose_threshold(np.linspace(0, 1, 101), None, max_fpr=0.05) == pytest.approx(0.95)


def test_max_fpr_bounds_the_clean_inputs_flagged_even_with_adversarial_examples():
    """Overlapping validation scores: the most accurate threshold flags many clean inputs; with max_fpr it
    flags at most that share of them (the most accurate such threshold), and an impossible max_fpr is a
    clear error. Tested on a plain user network too."""
    rng = np.random.default_rng(0)
    clean, adv = rng.normal(0, 1, 200), rng.normal(1, 1, 200)
    free = choose_threshold(clean, adv)
    assert (clean > free).mean() > 0.2  # the unconstrained optimum's false positives
    for max_fpr in (0.05, 0.01):
        t = choose_threshold(clean, adv, max_fpr=max_fpr)
        assert (clean > t).mean() <= max_fpr and t >= free
        looser = np.sort(clean)[np.sort(clean) < t]  # any lower threshold flags more than max_fpr
        assert looser.size == 0 or (clean > looser[-1]).mean() > max_fpr
    with pytest.raises(ValueError, match="max_fpr"):
        choose_threshold(clean, adv, max_fpr=1.5)

    import torch

    from bayesrobust import wrap
    from tests.user_nets import PlainMLP

    torch.manual_seed(0)
    model = wrap(PlainMLP(), "deterministic")
    x = torch.rand(120, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    detector = UncertaintyDetector(model, "entropy", samples=1, max_fpr=0.05).fit(x[:80], x[80:] * 0.5)
    assert detector.decide(x[:80]).mean() <= 0.05
    with pytest.raises(ValueError, match="max_fpr"):
        UncertaintyDetector(model, "entropy", max_fpr=0)


def test_detection_metrics_by_hand():
    truth = np.array([0, 0, 0, 1, 1, 1], bool)
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.8, 0.9])
    flagged = scores > 0.55
    predicted = np.array([1, 2, 3, 0, 0, 5])
    labels = np.array([1, 2, 0, 4, 0, 6])
    m = detection_metrics(truth, scores, flagged, predicted, labels)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 2, 1)
    assert m["detection_accuracy"] == pytest.approx(4 / 6)
    assert m["roc_auc"] == pytest.approx(8 / 9)  # 8 of the 9 clean–adversarial pairs are ordered right
    assert m["accuracy_passed"] == pytest.approx(2 / 3)  # passed: clean 0, clean 1, adversarial 3 (wrong)
    assert (m["clean_passed_correct"], m["adversarial_passed_incorrect"]) == (2, 1)
    for rate in ("roc_auc", "detection_accuracy", "aupr", "tpr_at_5_fpr", "accuracy_passed"):
        assert m[f"{rate}_low"] <= m[rate] <= m[f"{rate}_high"]
    assert detection_metrics(truth, scores, flagged, predicted, labels, seed=3) == detection_metrics(
        truth, scores, flagged, predicted, labels, seed=3)
    assert "roc_auc_low" not in detection_metrics(truth, scores, flagged, predicted, labels, resamples=0)
    perfect = detection_metrics(truth, truth.astype(float), truth, labels, labels)
    assert perfect["roc_auc"] == 1.0 and perfect["tpr_at_5_fpr"] == 1.0


def test_five_crops_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4) / 15
    crops = five_crops(x, 4)
    assert torch.allclose(crops, x.expand(5, 1, 1, 4, 4))  # full-size crops are the image itself
    two = five_crops(x, 2)  # 2×2 crops upsampled ×2: corners hold the crop's own values
    assert torch.allclose(two[0, 0, 0, 0, 0], x[0, 0, 0, 0]) and torch.allclose(two[3, 0, 0, -1, -1], x[0, 0, -1, -1])
    assert torch.allclose(two[1, 0, 0, -1, 0], x[0, 0, -1, 0]) and torch.allclose(two[2, 0, 0, 0, -1], x[0, 0, 0, -1])
    assert torch.allclose(two[4].mean(), x[0, 0, 1:3, 1:3].mean())
    with pytest.raises(ValueError, match="crop size"):
        five_crops(x, 5)


def test_information_gain_threshold_splits_separable_scores():
    assert 0.3 < information_gain_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.6, 0.7])) < 0.6


def test_hybrid_rule_and_search_use_validation_data_only(monkeypatch):
    """Known parts: uncertainties and crop agreements. The search finds a rule that is perfect on the
    validation data, and fitting reads nothing but the validation data."""
    detector = HybridDetector(model=None)
    parts = {"clean": (np.array([0.1, 0.2, 0.5, 0.55]), np.array([5, 5, 5, 5])),
             "adv": (np.array([0.5, 0.52, 0.9, 0.95]), np.array([2, 1, 5, 5]))}
    seen = []

    def fake_parts(x):
        seen.append(x)
        return parts[x]

    monkeypatch.setattr(detector, "_parts", fake_parts)
    detector.fit("clean", "adv")
    assert seen == ["clean", "adv"]
    u = np.concatenate([parts["clean"][0], parts["adv"][0]])
    agree = np.concatenate([parts["clean"][1], parts["adv"][1]])
    decided = detector._rule(u, agree, detector.low_, detector.high_, detector.agree_)
    assert decided.tolist() == [False] * 4 + [True] * 4  # the middle band needed the crops
    assert detector.low_ <= 0.5 and detector.high_ >= 0.55


def test_hybrid_crops_only_the_uncertain_band_and_decides_as_if_it_cropped_all(small_lenet, images, monkeypatch):
    """On a deterministic model (exact labels) with entropy as the score: ``decide`` crops just the
    images in [L, H], and its decisions equal the rule applied to every image's crops."""
    import bayesrobust.detection.hybrid as hybrid

    detector = HybridDetector(small_lenet.with_mode("plain"), uncertainty="entropy", samples=1)
    u, agree = detector._parts(images)
    detector.low_, detector.high_, detector.agree_ = np.quantile(u, [0.25, 0.75]).tolist() + [5]
    cropped = []
    original = hybrid.five_crops
    monkeypatch.setattr(hybrid, "five_crops", lambda x, size: cropped.append(len(x)) or original(x, size))
    decided = detector.decide(images)
    in_band = int(((u >= detector.low_) & (u <= detector.high_)).sum())
    assert cropped == [in_band] and 0 < in_band < len(images)
    assert decided.tolist() == detector._rule(u, agree, detector.low_, detector.high_, 5).tolist()


def test_hybrid_classifies_crops_with_its_own_number_of_draws(small_lenet, images, monkeypatch):
    detector = HybridDetector(small_lenet, samples=6, crop_samples=2)
    calls = []
    original = small_lenet.predictive
    monkeypatch.setattr(small_lenet, "predictive", lambda x, s, **kw: calls.append((len(x), s)) or original(x, s, **kw))
    detector._parts(images)
    assert calls == [(len(images), 6), (5 * len(images), 2)]
    assert HybridDetector(small_lenet, samples=6).crop_samples == 6


def test_unfitted_detectors_say_so(small_lenet, images):
    with pytest.raises(NotFittedError, match="fit"):
        UncertaintyDetector(small_lenet).decide(images)
    with pytest.raises(ConfigError, match="unknown uncertainty score"):
        UncertaintyDetector(small_lenet, "curvature")


def test_uncertainty_detector_is_deterministic_and_fits_on_validation(small_lenet, digits5k):
    x = digits5k[1].images[:40]
    detector = UncertaintyDetector(small_lenet, "mi", samples=8)
    assert np.array_equal(detector.score(x), detector.score(x))
    detector.fit(x[:20])
    threshold = detector.threshold_
    flagged = detector.decide(x[20:])
    assert flagged.shape == (20,) and detector.threshold_ == threshold  # scoring other data changes nothing
    assert np.mean(detector.score(x[:20]) > threshold) <= 0.05 + 1e-9


def test_mixed_set_keeps_correct_clean_digits_and_successful_attacks(small_lenet, digits5k, monkeypatch):
    import bayesrobust.detection.mixed as mixed_module
    from bayesrobust.detection.mixed import correctly_classified

    x, y = digits5k[1].images[:80], digits5k[1].labels[:80]
    results = []
    original = mixed_module.run_batched
    monkeypatch.setattr(mixed_module, "run_batched", lambda *a, **k: results.append(original(*a, **k)) or results[-1])
    attack = build_attack("fgsm", eps=0.3, eval_samples=8)
    mixed = build_mixed_set(small_lenet, attack, x, y, samples=8, seed=0)
    n = int(mixed.is_adversarial.sum())
    assert n > 0 and len(mixed) == 2 * n and torch.equal(mixed.labels, y[mixed.source])
    correct = correctly_classified(small_lenet, x, y, samples=8, seed=0)
    assert bool(correct[mixed.source].all())  # clean and attacked digits alike were classified correctly
    (result,) = results
    successful = {tuple(img.flatten()[:50].tolist()) for img in result.x_adv[result.success]}
    assert all(tuple(img.flatten()[:50].tolist()) in successful for img in mixed.adversarial)
    sources = mixed.source.tolist()
    assert len(set(sources)) == len(sources)  # no digit is both a clean and an attacked example
    val, test = mixed.split(0.5, seed=1)
    assert set(val.source.tolist()).isdisjoint(test.source.tolist()) and len(val) + len(test) == len(mixed)
    with pytest.raises(InputError, match="no successful"):
        build_mixed_set(small_lenet.with_mode("plain"), build_attack("fgsm", eps=1e-6), x, y, seed=0)


def test_log_kernel_density_matches_a_direct_sum():
    g = torch.Generator().manual_seed(0)
    points, queries = torch.randn(300, 5, generator=g), torch.randn(7, 5, generator=g)
    h = 1.2
    direct = torch.log(torch.exp(-torch.cdist(queries, points).double().pow(2) / (2 * h * h)).mean(1))
    from bayesrobust.detection import log_kernel_density

    assert torch.allclose(log_kernel_density(queries, points, h, chunk=3), direct, atol=1e-9)
    several = log_kernel_density(queries, points, [0.5, h], chunk=3)  # one distance pass for every bandwidth
    assert several.shape == (2, 7) and torch.allclose(several[1], direct, atol=1e-9)
    assert torch.allclose(several[0], log_kernel_density(queries, points, 0.5), atol=1e-9)


def _noise_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_density_and_one_class_detectors_tell_digits_from_noise(trained_lenet, digits5k):
    """A known answer: uniform-noise images lie far from every training digit, in pixels and in a
    trained net's features (a barely trained net's features do not separate them)."""
    from bayesrobust.detection import KernelDensityUncertainty, OneClassSVMDetector

    train = digits5k[0]
    x = digits5k[1].images[:60]
    kd = KernelDensityUncertainty(trained_lenet, train.images, train.labels, samples=4, bandwidth=1.0)
    with pytest.raises(NotFittedError):
        kd.score(x)
    kd.fit(x[:30], _noise_images(30))
    truth = np.r_[np.zeros(30), np.ones(30)]
    scores = np.r_[kd.score(x[30:]), kd.score(_noise_images(30, seed=1))]
    assert detection_metrics(truth, scores, scores > kd.threshold_, truth, truth)["roc_auc"] > 0.9
    svm = OneClassSVMDetector(trained_lenet, train.images, train.labels, per_class=100, samples=4).fit(x[:30])
    scores = np.r_[svm.score(x[30:]), svm.score(_noise_images(30, seed=1))]
    assert detection_metrics(truth, scores, svm.decide(torch.cat([x[30:], _noise_images(30, 1)])), truth, truth)["roc_auc"] > 0.9


@pytest.mark.parametrize("change, message", [
    ({"detectors": ["curvature"]}, "unknown detector"),
    ({"attacks": {"j": {"attack": "jsma"}}}, "targeted only"),
    ({"attacks": {"a": {"attack": "bim", "aware_of": "variance"}}}, "aware_of"),
    ({"attacks": {"a": {"attack": "bim", "aware_of": "mi", "params": {"max_uncertainty": 0.1}}}}, "aware_of sets"),
    ({"attacks": {"f": {"attack": "fgsm", "params": {"eps": "big"}}}}, "detection.attacks.f.params.eps"),
    ({"models": ["absent"]}, "detection.models"),
    ({"only": ["bim"]}, "detection.only: no attack 'bim'"),
    ({"attacks": {"a": {"attack": "bim", "aware_of": "reconstruction"}}}, "add a model with arch = 'vae'"),
    ({"attacks": {"a": {"attack": "bim", "aware_weight": 0.0}}}, "aware_weight must be > 0"),
    ({"attacks": {"a": {"attack": "jsma", "targets": "random", "aware_of": "kd"}}}, "jsma cannot take a detector's score"),
])
def test_detection_config_errors_name_their_key(change, message):
    from bayesrobust.config import config_from_dict

    raw = {"models": {"m": {"arch": "lenet"}}, "detection": {"attacks": {"f": {"attack": "fgsm"}}, **change}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_only_selects_configured_attacks_in_order():
    from bayesrobust.config import config_from_dict
    from bayesrobust.suites.detection import selected_attacks

    attacks = {"f": {"attack": "fgsm"}, "b": {"attack": "bim"}, "s": {"attack": "sign_noise"}}
    raw = {"models": {"m": {"arch": "lenet"}}, "detection": {"attacks": attacks, "only": ["s", "f"]}}
    assert list(selected_attacks(config_from_dict(raw).suites["detection"])) == ["f", "s"]
    del raw["detection"]["only"]
    assert list(selected_attacks(config_from_dict(raw).suites["detection"])) == ["f", "b", "s"]


def test_kd_bandwidth_chosen_on_clean_validation_digits(trained_lenet, digits5k):
    """'auto' picks the grid bandwidth of best held-out log-likelihood — a finite, interior value on real
    features — and needs fitting first; a fixed bandwidth is used as given."""
    from bayesrobust.detection import KernelDensityUncertainty

    train, x = digits5k[0], digits5k[1].images[:60]
    some = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:500]
    with pytest.raises(ValueError, match="every class"):  # the first digits of the split are all 0s to 3s
        KernelDensityUncertainty(trained_lenet, train.images[:300], train.labels[:300])
    kd = KernelDensityUncertainty(trained_lenet, train.images[some], train.labels[some], samples=4, bandwidth="auto")
    with pytest.raises(NotFittedError):
        kd.raw_scores(x)
    chosen = kd.choose_bandwidth(x[:30])
    feats = torch.cat(list(kd.class_features_.values()))
    scale = float(torch.pdist(feats[:2000].double()).median())
    assert scale / 64 < chosen < 4 * scale
    kd.fit(x[:30], _noise_images(30))
    assert kd.bandwidth_ == chosen and kd.score(x[30:]).shape == (30,)
    assert KernelDensityUncertainty(trained_lenet, train.images[some], train.labels[some], bandwidth=0.7).bandwidth_ == 0.7
    with pytest.raises(ValueError, match="bandwidth"):
        KernelDensityUncertainty(trained_lenet, train.images[some], train.labels[some], bandwidth=0)


def test_score_and_decide_is_score_and_decide_in_one_pass(small_lenet, images, monkeypatch):
    """The suite's one-pass evaluation gives what ``score`` and ``decide`` give separately, with one
    predictive over the images (the hybrid adds only its crops)."""
    detector = HybridDetector(small_lenet, samples=4)
    u, _ = detector._parts(images)
    detector.low_, detector.high_, detector.agree_ = float(np.quantile(u, 0.3)), float(np.quantile(u, 0.7)), 4
    uncertainty = UncertaintyDetector(small_lenet, "entropy", samples=4).fit(images[:10])
    for det in (detector, uncertainty):
        expected = det.score(images), det.decide(images)
        calls: list[int] = []
        original = small_lenet.predictive
        monkeypatch.setattr(small_lenet, "predictive",
                            lambda x, s, calls=calls, original=original, **kw: calls.append(len(x)) or original(x, s, **kw))
        scores, flagged = det.score_and_decide(images)
        monkeypatch.undo()
        assert np.array_equal(scores, expected[0]) and np.array_equal(flagged, expected[1])
        assert calls.count(len(images)) == 1


def test_kd_aware_attacks_pass_the_kernel_density_they_are_told_about(trained_lenet, digits5k):
    """Carlini & Wagner's KDE attack: the differentiable −log KD equals the detector's own (for digits
    whose deterministic and MC predictions agree) and has input gradients; with it as a penalty (scored
    under the class aimed at), BIM's and C&W's successful examples sit lower under the kernel density of
    the class they are predicted as than without, and C&W returns only examples under the cap."""
    from bayesrobust.attacks.base import Penalty
    from bayesrobust.detection import KernelDensityUncertainty

    torch.manual_seed(0)  # the MC predictives below draw from the global generator: independent of test order
    train, test = digits5k
    some = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:600]
    kd = KernelDensityUncertainty(trained_lenet, train.images[some], train.labels[some], samples=30, bandwidth="auto")
    cap = kd.density_cap(test.images[100:200])
    x, y = test.images[:40], test.labels[:40]
    xg = x.clone().requires_grad_(True)
    score = kd.density_score(xg)
    (grad,) = torch.autograd.grad(score.sum(), xg)
    assert grad.shape == x.shape and float(grad.abs().sum()) > 0
    agree = (trained_lenet.logits(x).argmax(1) == trained_lenet.predictive(x, 30).predicted).cpu()
    assert int(agree.sum()) >= 30
    assert torch.allclose(score.detach()[agree], torch.as_tensor(kd.raw_scores(x)[:, 0])[agree], rtol=1e-6)
    plain_model = trained_lenet.with_mode("plain")  # one prediction, so "the class aimed at" is the one predicted
    for name, params in (("bim", {"eps": 0.3, "alpha": 0.01, "steps": 40, "variant": "B"}),
                         ("cw_l2", {"steps": 100, "binary_search_steps": 5, "initial_const": 1.0, "lr": 0.1, "kappa": 2.0})):
        plain = build_attack(name, **params)(plain_model, x, y)
        aware = build_attack(name, **params).with_penalty(
            Penalty("-log kernel density", kd.density_score, cap, per_class=True))(plain_model, x, y)
        assert int(plain.success.sum()) >= 35 and int(aware.success.sum()) >= 30, name
        with torch.no_grad():
            before = kd.density_score(plain.x_adv)[plain.success]
            after = kd.density_score(aware.x_adv)[aware.success]
        assert float(after.mean()) < float(before.mean()), name
        under_before, under_after = float((before <= cap).float().mean()), float((after <= cap).float().mean())
        assert under_after > under_before or under_before == under_after == 1.0, name  # more under the cap, unless all were
        if name == "cw_l2":
            assert bool((after <= cap + 1e-6).all())
    with pytest.raises(InputError, match="cannot take a detector's penalty"):
        build_attack("jsma").with_penalty(Penalty("-log kernel density", kd.density_score, cap))


def test_kd_training_features_are_computed_once_per_defended_model(small_lenet, digits5k, monkeypatch):
    """The suite builds KD + BU for every attack and again for a KD-aware attack's penalty; with one
    ``built`` dict per model the pass over the training digits happens once, and each caller's copy keeps
    its own bandwidth and fitted regression."""
    from types import SimpleNamespace

    from bayesrobust.config import config_from_dict
    from bayesrobust.detection import KernelDensityUncertainty, density
    from bayesrobust.suites import detection as suite

    constructed: list[int] = []

    class Counting(KernelDensityUncertainty):
        def __init__(self, *args, **kwargs):
            constructed.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(density, "KernelDensityUncertainty", Counting)
    raw = {"models": {"m": {"arch": "lenet"}},
           "detection": {"detectors": ["kd_bu"], "samples": 4, "attacks": {"k": {"attack": "fgsm", "aware_of": "kd"}}}}
    section = config_from_dict(raw).suites["detection"]
    train, test = digits5k
    data = SimpleNamespace(train=train, val=SimpleNamespace(images=test.images[:40]))
    built: dict = {}
    penalty = suite.detector_penalty(section.attacks["k"], small_lenet, data, section, 0, built=built)
    first = suite.make_detector("kd_bu", small_lenet, data, section, 0, built=built)
    second = suite.make_detector("kd_bu", small_lenet, data, section, 0, built=built)
    assert len(constructed) == 1 and first.class_features_ is second.class_features_
    assert np.isfinite(penalty.cap) and built["kd_bu"].bandwidth_ is None and first.bandwidth_ is None
    first.fit(test.images[:30], _noise_images(30))
    assert first.weights_ is not None and second.weights_ is None and second.bandwidth_ is None
    suite.make_detector("kd_bu", small_lenet, data, section, 0)
    assert len(constructed) == 2  # without ``built``, a fresh one as before


def test_noisy_negatives_count_noise_that_looks_adversarial_against_the_detector(digits5k):
    """Feinman et al.'s negatives: a score that tells noise from clean digits but not from adversarial
    ones (here the "adversarial" digits *are* L2-matched noise, scored by total variation) separates
    clean from adversarial (almost) perfectly, and against clean + noisy negatives gets (1 + 1/2) / 2 = 0.75."""
    from bayesrobust.detection.density import gaussian_noise_like
    from bayesrobust.detection.mixed import MixedSet
    from bayesrobust.suites.detection import auc_with_noisy_negatives

    clean = digits5k[1].images[:100]
    adversarial = gaussian_noise_like(digits5k[1].images[100:200], 5.0, seed=5)
    images = torch.cat([clean, adversarial])
    l2 = torch.cat([torch.zeros(100), torch.full((100,), 5.0)])  # the noise's norm before clipping, as the noisy digits get
    test = MixedSet(images, digits5k[1].labels[:200], torch.arange(200) >= 100, torch.arange(200), l2)

    class TotalVariation:
        def score(self, x):
            return (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).sum(1).double().numpy()

    scores = TotalVariation().score(images)
    assert detection_metrics(test.is_adversarial.numpy(), scores, scores > 0, np.zeros(200), np.zeros(200),
                             resamples=0)["roc_auc"] > 0.99
    assert auc_with_noisy_negatives(TotalVariation(), test, scores, seed=0) == pytest.approx(0.75, abs=0.06)
