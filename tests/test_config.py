"""Configs: unknown keys and wrong types are errors naming the key; overrides go through the same checks."""

import pytest

from bayesrobust.config import config_from_dict, load_config
from bayesrobust.errors import ConfigError
from bayesrobust.schema import dump_toml, parse_override, to_plain, tomllib
from tests.conftest import REPO


def test_quickstart_parses():
    config = load_config(REPO / "experiments" / "quickstart.toml")
    assert set(config.models) == {"lenet", "lenet_ts", "lenet_iso", "mc_lenet", "gpdnn", "vae"}
    assert config.models["lenet_ts"].weights_of == "lenet" and config.models["lenet_ts"].calibrate == "temperature"
    assert config.models["lenet_iso"].calibrate == "isotonic" and config.suites["calibration"].rotations == (45.0, 90.0)
    assert config.models["vae"].arch == "vae" and "calibration" in config.suites
    assert config.models["lenet"].mode == "plain" and config.models["mc_lenet"].mode == "mc_dropout"
    assert config.models["gpdnn"].arch == "gpdnn" and config.models["gpdnn"].mode == ""  # the family's default
    assert config.data.shifted == ("digits",)


@pytest.mark.parametrize("raw, key", [
    ({"run": {"sede": 1}}, "run.sede"),
    ({"bogus": {}}, "bogus"),
    ({"models": {"a": {"arch": "mlp", "train": {"epoch": 3}}}}, "models.a.train.epoch"),
])
def test_unknown_keys_are_named(raw, key):
    with pytest.raises(ConfigError, match=f"unknown config key {key}"):
        config_from_dict(raw)


@pytest.mark.parametrize("raw, key", [
    ({"run": {"seed": "zero"}}, "run.seed"),
    ({"run": {"seed": True}}, "run.seed"),
    ({"data": {"val_fraction": "0.1"}}, "data.val_fraction"),
    ({"data": {"shifted": 3}}, "data.shifted"),
    ({"models": {"a": {"train": []}}}, "models.a.train"),
])
def test_wrong_types_are_named(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        config_from_dict(raw)


@pytest.mark.parametrize("raw, text", [
    ({"data": {"val_fraction": 1.5}}, "val_fraction"),
    ({"data": {"train_limit": -5}}, r"data.train_limit must be >= 0 \(0 keeps every example\), got -5"),
    ({"data": {"test_limit": -1}}, "data.test_limit must be >= 0"),
    ({"data": {"shifted_limit": -1}}, "data.shifted_limit must be >= 0"),
    ({"models": {"a": {"mode": "bayes"}}}, "mode"),
    ({"models": {"a": {"train": {"optimizer": "lbfgs"}}}}, "optimizer"),
    ({"models": {"a": {"train": {"epochs": 0}}}}, "epochs"),
    ({"run": {"device": "tpu"}}, "device"),
    ({"models": {"a": {"weights_of": "b"}, "b": {}}}, "models.a.weights_of: 'b' is not a model defined before"),
    ({"models": {"a": {}, "b": {"weights_of": "a", "params": {"hidden": 64}}}}, "models.b.weights_of: .*same network"),
    ({"models": {"a": {}, "b": {"weights_of": "a", "checkpoint": "x.pt"}}}, "either weights_of or checkpoint"),
    ({"models": {"a": {"calibrate": "platt"}}}, "models.a.calibrate must be"),
    ({"data": {"val_fraction": 0.0}, "models": {"a": {"calibrate": "temperature"}}}, "set data.val_fraction > 0"),
    ({"data": {"val_fraction": 0.1}, "models": {"a": {"arch": "gpdnn", "calibrate": "temperature"}}}, "no softmax logits"),
    ({"data": {"val_fraction": 0.1}, "models": {"a": {"calibrate": "histogram", "calibrate_bins": 0}}}, "calibrate_bins must be >= 1"),
    ({"data": {"val_fraction": 0.0}, "models": {"a": {"calibrate": "isotonic"}}}, "isotonic regression is fitted on the validation"),
])
def test_invalid_values(raw, text):
    with pytest.raises(ConfigError, match=text):
        config_from_dict(raw)


def test_overrides_are_typed_and_checked(tmp_path):
    path = REPO / "experiments" / "quickstart.toml"
    config = load_config(path, ["models.lenet.train.epochs=2", "run.name=other", "data.shifted=[]"])
    assert config.models["lenet"].train.epochs == 2 and config.run.name == "other" and config.data.shifted == ()
    with pytest.raises(ConfigError, match="models.lenet.train.epochz"):
        load_config(path, ["models.lenet.train.epochz=2"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("nothing")
    assert parse_override("a.b=1e-3") == (["a", "b"], 0.001)
    assert parse_override("a=word") == (["a"], "word")


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nseed = 1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)


def test_resolved_config_round_trips_through_toml():
    config = load_config(REPO / "experiments" / "quickstart.toml")
    again = config_from_dict(tomllib.loads(dump_toml(to_plain(config))))
    assert to_plain(again) == to_plain(config)


def test_a_suite_brings_its_own_section(monkeypatch):
    """Registering a suite is the only step: its table is parsed with its dataclass, validated with its
    function, written back by dump_toml, and unknown keys inside it are named."""
    from dataclasses import dataclass

    from bayesrobust.suites.registry import SUITES, Suite

    @dataclass(frozen=True)
    class ProbeSection:
        level: float = 0.5

    def validate_probe(config):
        if not 0 < config.suites["probe"].level < 1:
            raise ConfigError(f"probe.level must be in (0, 1), got {config.suites['probe'].level}")

    SUITES.names()  # the registered suites found before the probe joins them
    monkeypatch.setitem(SUITES._items, "probe", Suite(ProbeSection, lambda *a: {}, validate_probe))
    config = config_from_dict({"probe": {"level": 0.25}})
    assert config.suites["probe"] == ProbeSection(0.25)
    assert "[probe]\nlevel = 0.25" in dump_toml(to_plain(config))
    with pytest.raises(ConfigError, match="unknown config key probe.lvl"):
        config_from_dict({"probe": {"lvl": 0.25}})
    with pytest.raises(ConfigError, match="probe.level must be in"):
        config_from_dict({"probe": {"level": 2.0}})
    with pytest.raises(ConfigError, match="probe.level: expected a number"):
        config_from_dict({"probe": {"level": "high"}})


@pytest.mark.parametrize("old, new", [("sweep", "logit_sweep"), ("transfer", "crossmodel")])
def test_renamed_analysis_tables_are_refused_with_the_new_name(old, new):
    """"sweep" now means only the hyper-parameter grids and "transfer" only transfer testing: the old
    table names of Goodfellow's logit sweep and of the cross-model matrix say what to write instead."""
    raw = {"models": {"m": {"arch": "lenet"}}, "attack": {old: {}}}
    with pytest.raises(ConfigError, match=f"attack.{old} was renamed to attack.{new}: write \\[attack.{new}\\]"):
        config_from_dict(raw)
    raw["attack"] = {new: {}}
    assert getattr(config_from_dict(raw).suites["attack"], new) is not None


@pytest.mark.parametrize("table, key", [("papernot", "model"), ("logit_sweep", "model"), ("triptych", "model"),
                                        ("masking", "reference"), ("kos", "judge")])
def test_an_analysis_names_only_models_of_the_config(table, key):
    raw = {"models": {"m": {"arch": "lenet"}, "v": {"arch": "vae"}}, "attack": {table: {key: "nope"}}}
    with pytest.raises(ConfigError, match=f"attack.{table}.{key}: unknown model 'nope'"):
        config_from_dict(raw)
    raw["attack"][table][key] = "v" if table == "kos" and key == "model" else "m"
    config_from_dict(raw)
