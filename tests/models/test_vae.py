"""The Pyro VAE as a Bayesian classifier, and the Kos et al. attacks on it."""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch

from bayesrobust.analysis.kos import pair_matrix, target_bank
from bayesrobust.attacks.kos import KosAttack
from bayesrobust.config import TrainSection, config_from_dict
from bayesrobust.data import load_dataset
from bayesrobust.errors import ConfigError, InputError
from bayesrobust.models import BayesianClassifier, build_model
from bayesrobust.seeding import seed_everything
from tests.conftest import gen


@pytest.fixture(autouse=True)
def _pyro_validation():
    """Pyro's argument and support checks on throughout (its VAE example fails them, Pyro #2038)."""
    pyro.enable_validation(True)
    yield
    pyro.enable_validation(False)


@pytest.fixture(scope="module")
def vae_and_data():
    train = load_dataset("mnist-5k", "train").head(2000, seed=0)
    val = load_dataset("mnist-5k", "train").head(2500, seed=0).take(torch.arange(2000, 2500))
    pyro.enable_validation(True)
    seed_everything(0)  # weight initialisation: the same model whichever tests ran before
    model = build_model("vae", hidden=128, latent=16, classifier_epochs=8)
    model.fit(train, TrainSection(epochs=5, batch_size=64, patience=3), val=val, seed=0, progress=False)
    return model, train, val


def test_elbo_improves_and_reconstructions_keep_their_class(vae_and_data):
    """SVI raises the validation ELBO epoch on epoch; the reconstruction-feedback classifier reads the
    reconstructions of training digits right far above chance."""
    model, train, val = vae_and_data
    elbos = [r["val_elbo"] for r in model.history_ if "val_elbo" in r]
    assert len(elbos) == 5 and elbos[-1] > elbos[0] + 20 and all(np.diff(elbos) > 0)
    untrained = build_model("vae", hidden=128, latent=16)
    assert model.mean_elbo(val) > untrained.mean_elbo(val) + 200
    x, y = train.images[:300], train.labels[:300]
    assert model.with_mode("feedback").predictive(x, 10, generator=gen()).accuracy(y) > 0.6
    assert model.predictive(x, 10, generator=gen()).accuracy(y) > 0.7


def test_elbo_bounds_and_detector_scores(vae_and_data):
    model, _, val = vae_and_data
    x = val.images[:100]
    with torch.no_grad():
        elbo = model.elbo(x, 32, generator=gen())
        iwae = model.importance_weighted_bound(x, 32, generator=gen())
        assert elbo.shape == iwae.shape == (100,)
        assert float(iwae.mean()) >= float(elbo.mean())  # the importance-weighted bound is the tighter one
        noise = torch.rand(100, 1, 28, 28, generator=gen(1))
        assert float(model.reconstruction_error(noise).min()) > float(model.reconstruction_error(x).median())
        assert float(model.elbo(noise, 4, generator=gen()).max()) < float(model.elbo(x, 4, generator=gen()).median())


def test_training_is_seeded_and_round_trips(vae_and_data, tmp_path):
    model, train, _ = vae_and_data
    small = train.head(200, seed=0)
    config = TrainSection(epochs=1, batch_size=50)
    runs = []
    for _ in range(2):
        seed_everything(3)  # weight initialisation, as the experiment runner does
        runs.append(build_model("vae", hidden=16, latent=4, classifier_epochs=1).fit(small, config, seed=3, progress=False))
    a, b = runs
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert len(pyro.get_param_store()) == 0  # training ran in its own parameter-store scope
    path = model.save(tmp_path / "vae.pt")
    loaded = BayesianClassifier.load(path)
    x = train.images[:20]
    assert torch.equal(loaded.predictive(x, 5, generator=gen()).probs, model.predictive(x, 5, generator=gen()).probs)
    assert torch.equal(loaded.reconstruct(x), model.reconstruct(x))


@pytest.mark.parametrize("loss", ["classifier", "latent", "vae"])
def test_each_kos_attack_lowers_its_objective_inside_the_box(vae_and_data, loss):
    model, train, _ = vae_and_data
    x, y = train.images[:20], train.labels[:20]
    target = (y + 1) % 10
    bank = target_bank(train.images, train.labels, torch.arange(20))
    attack = KosAttack(loss, lam=0.1, steps=40, lr=0.02, target_images=bank, eval_samples=4)
    feedback = model.with_mode("feedback")
    result = attack(feedback, x, y, target=target, generator=gen())
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1 and float(result.l2.mean()) > 0
    aim = attack._aim(model, target)
    with torch.no_grad():
        before = attack.objective(model, x, aim, target, gen(5)).mean()
        after = attack.objective(model, result.x_adv, aim, target, gen(5)).mean()
        floor = attack.objective(model, bank[target], aim, target, gen(5)).mean()  # x* = the target image itself
    assert before > floor and after < before - 0.5 * (before - floor)  # more than half the way to the target
    assert torch.equal(result.success, result.predictive.predicted == target)  # judged on the feedback classifier


def test_kos_attacks_refuse_what_they_cannot_do(small_lenet, images, labels):
    with pytest.raises(InputError, match="target_images"):
        KosAttack("latent")
    with pytest.raises(InputError, match="loss"):
        KosAttack("pixels")
    with pytest.raises(InputError, match="VAE"):
        KosAttack("classifier", steps=1)(small_lenet, images, labels, target=(labels + 1) % 10)
    with pytest.raises(InputError, match="targeted"):
        KosAttack("classifier", steps=1)(small_lenet, images, labels)


def test_a_partial_lambda_sweep_keeps_the_other_defaults():
    raw = {"models": {"v": {"arch": "vae"}}, "attack": {"kos": {"lams": {"latent": [2.0]}}}}
    kos = config_from_dict(raw).suites["attack"].kos
    assert kos.lams_of("latent") == (2.0,) and kos.lams_of("classifier") == (0.1, 0.3, 1.0)


def test_success_matrix_by_hand():
    source = np.array([0, 0, 0, 1, 1, 2])
    target = np.array([1, 1, 2, 0, 0, 0])
    hit = np.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    m = pair_matrix(hit, source, target)
    assert m[0, 1] == 0.5 and m[0, 2] == 1.0 and m[1, 0] == 1.0 and m[2, 0] == 0.0
    assert np.isnan(m[0, 0]) and np.isnan(m[3, 4]) and np.isnan(m).sum() == 100 - 4


def test_target_bank_skips_the_sources():
    y = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    x = torch.arange(12.0).view(12, 1, 1, 1).expand(12, 1, 28, 28)
    bank = target_bank(x, y, torch.tensor([0, 2]))
    assert bank[:, 0, 0, 0].tolist() == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    with pytest.raises(ValueError, match="class 2"):
        target_bank(x, y, torch.tensor([4]))


@pytest.mark.parametrize("change, message", [
    ({"kos": {}}, "add a model with arch = 'vae'"),
    ({"kos": {"model": "m"}}, "not a VAE"),
    ({"kos": {"losses": ["pixels"]}, "vae": True}, "unknown loss"),
    ({"kos": {"lams": {"latent": []}}, "vae": True}, "lams.latent"),
    ({"kos": {"lams": {"pixels": [1.0]}}, "vae": True}, "lams: unknown loss"),
    ({"kos": {"judge": "absent"}, "vae": True}, "judge"),
])
def test_kos_config_errors_name_their_key(change, message):
    models = {"m": {"arch": "lenet"}, **({"v": {"arch": "vae"}} if change.get("vae") else {})}
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"models": models, "attack": {"kos": change["kos"]}})


def test_generative_detectors_flag_noise_and_fit_on_validation_only(vae_and_data):
    from bayesrobust.detection import GenerativeDetector, NotFittedError, detection_metrics

    model, train, val = vae_and_data
    noise = lambda n, s: (train.images[:n] + 0.5 * torch.randn(n, 1, 28, 28, generator=gen(s))).clamp(0, 1)  # noqa: E731
    for kind in ("reconstruction", "elbo"):
        detector = GenerativeDetector(model, kind, samples=4)
        with pytest.raises(NotFittedError):
            detector.decide(val.images[:5])
        detector.fit(val.images[:100], noise(100, 1))
        threshold = detector.threshold_
        x = torch.cat([val.images[100:200], noise(100, 2)])
        truth = np.r_[np.zeros(100, bool), np.ones(100, bool)]
        m = detection_metrics(truth, detector.score(x), detector.decide(x), truth, truth, resamples=0)
        assert m["roc_auc"] > 0.95 and detector.threshold_ == threshold  # measured 1.0 for both scores
    with pytest.raises(ConfigError, match="needs a VAE"):
        GenerativeDetector(torch.nn.Linear(2, 2), "elbo")


def test_generative_detectors_need_a_vae_in_the_config():
    raw = {"models": {"m": {"arch": "lenet"}}, "detection": {"attacks": {"f": {"attack": "fgsm"}}, "detectors": ["elbo"]}}
    with pytest.raises(ConfigError, match="add a model with arch = 'vae'"):
        config_from_dict(raw)


def test_evaluation_adds_the_vaes_own_surprise_only_for_vaes(vae_and_data, small_lenet):
    from bayesrobust.suites.evaluation import generative_scores

    model, _, val = vae_and_data
    scores = generative_scores(model, val.images[:30], seed=0)
    assert set(scores) == {"elbo", "reconstruction"} and scores["elbo"].shape == (30,)
    assert np.allclose(-scores["elbo"], model.elbo(val.images[:30], 8, generator=gen(0)).detach().numpy(), rtol=1e-5)
    assert generative_scores(small_lenet, val.images[:30], seed=0) == {}
