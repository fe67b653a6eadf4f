"""Typed result keys: one declaration formats, parses and globs a family of metric keys."""

from __future__ import annotations

import pytest

from bayesrobust.keys import Key, owned_by


def test_a_key_formats_parses_and_globs_its_family():
    run = Key("adv/{run}/{model}/{measure}")
    assert run(run="fgsm", model="lenet", measure="l2") == "adv/fgsm/lenet/l2"
    assert run.parse("adv/bim_a@adaptive/mc lenet/success_rate") == {"run": "bim_a@adaptive", "model": "mc lenet",
                                                                     "measure": "success_rate"}
    assert run.parse("adv/fgsm/lenet") is None and run.parse("adv/fgsm/lenet/l2/extra") is None
    assert run.parse("calib/fgsm/lenet/l2") is None  # the literal parts must match
    assert run.glob(model="lenet") == "adv/*/lenet/*" and run.glob() == "adv/*/*/*"
    keys = ["adv/fgsm/lenet/l2", "adv/fgsm/mc/l2", "adv/bim/lenet/l2", "clean/lenet/acc"]
    assert [k for k, _ in run.select(keys, model="lenet")] == ["adv/fgsm/lenet/l2", "adv/bim/lenet/l2"]
    assert run.get({"adv/fgsm/lenet/l2": 0.5}, run="fgsm", model="lenet", measure="l2") == 0.5
    assert run.get({}, -1.0, run="fgsm", model="lenet", measure="l2") == -1.0


def test_floats_are_written_as_g_and_round_trip():
    kos = Key("kos/{model}/{loss}/{lam}/{measure}")
    key = kos(model="vae", loss="latent", lam=0.1, measure="l2")
    assert key == "kos/vae/latent/0.1/l2" and kos.parse(key)["lam"] == "0.1"
    assert kos(model="vae", loss="vae", lam=3.0, measure="l2") == "kos/vae/vae/3/l2"


def test_a_wrong_field_or_value_is_an_error_where_the_key_is_built():
    key = Key("clean/{model}/{measure}")
    with pytest.raises(KeyError, match="missing field measure"):
        key(model="lenet")
    with pytest.raises(KeyError, match="no field modle"):
        key(model="lenet", measure="acc", modle="x")
    with pytest.raises(ValueError, match="may not be empty or hold '/'"):
        key(model="a/b", measure="acc")
    with pytest.raises(ValueError, match="distinct"):
        Key("{a}/{a}")


def test_owned_by_takes_keys_and_globs():
    families = (Key("clean/{model}/{measure}"), "train/*")
    assert owned_by("clean/lenet/acc", families) and owned_by("train/lenet/epochs", families)
    assert not owned_by("clean/lenet/acc/extra", families) and not owned_by("calib/lenet/acc", families)
