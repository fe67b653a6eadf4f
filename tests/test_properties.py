"""Property-based tests (hypothesis): every bad input is a clear, named error — never another exception.

Bounded example counts keep the suite fast (60–80 cases per test); set BAYESROBUST_PROPERTY_EXAMPLES to
run more, e.g. 1000, before a release.
"""

from __future__ import annotations

import copy
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesrobust.attacks import ATTACKS, build_attack
from bayesrobust.config import config_from_dict
from bayesrobust.data.idx import parse_idx, read_idx_pair
from bayesrobust.data.semeion import parse_semeion
from bayesrobust.data.svhn import parse_svhn
from bayesrobust.errors import ConfigError, DatasetError, InputError
from bayesrobust.models import build_model
from bayesrobust.schema import tomllib
from tests.conftest import REPO, tiny_attack
from tests.data_files import idx_bytes, semeion_line, write_svhn

QUICKSTART = tomllib.loads((REPO / "experiments" / "quickstart.toml").read_text())
SCALE = int(os.environ.get("BAYESROBUST_PROPERTY_EXAMPLES", "0"))
FEW = settings(max_examples=SCALE or 60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MORE = settings(max_examples=SCALE or 80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- configs: one key mutated -------------------------------------------------------------------
def leaves(node, prefix=()):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def tables(node, prefix=()):
    yield prefix
    for key, value in node.items():
        if isinstance(value, dict):
            yield from tables(value, (*prefix, key))


LEAVES = list(leaves(QUICKSTART))
TABLES = [t for t in tables(QUICKSTART)]


def wrong_values(value):
    """Values no schema field of ``value``'s type accepts."""
    if isinstance(value, bool):
        return [7, "yes", [True]]
    if isinstance(value, int):
        return ["seven", 2.5, True, [1]]
    if isinstance(value, float):
        return ["abc", True, [0.1]]
    if isinstance(value, str):
        return [5, 1.5, ["a"]]
    if isinstance(value, list):
        return ["x", 3]
    raise AssertionError(value)


@FEW
@given(st.data())
def test_a_mutated_config_value_is_a_config_error_naming_its_key(data):
    path, value = data.draw(st.sampled_from(LEAVES), label="leaf")
    bad = data.draw(st.sampled_from(wrong_values(value)), label="wrong value")
    raw = copy.deepcopy(QUICKSTART)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = bad
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    message = str(info.value)
    dotted = ".".join(path)
    # a list element is named with its index; a name-valued key (an attack, an architecture) by its table
    assert dotted in message or ".".join(path[:-1]) + "." in message, (dotted, message)


@FEW
@given(st.sampled_from(TABLES), st.sampled_from(["bogus_key", "epsilon", "lr_"]))
def test_an_unknown_key_anywhere_is_a_config_error_naming_it(table, name):
    raw = copy.deepcopy(QUICKSTART)
    node = raw
    for key in table:
        node = node[key]
    node[name] = 1
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    message = str(info.value)
    assert name in message
    named = ".".join(k for k in table if k != "params")
    assert named in message, (named, message)


# --- data files: random corruptions -------------------------------------------------------------
def mutate(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero-prefix"]), label="corruption")
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[: draw(st.integers(0, len(buf) - 1), label="cut")])
    if kind == "insert":
        at = draw(st.integers(0, len(buf)), label="at")
        return bytes(buf[:at] + draw(st.binary(min_size=1, max_size=16), label="junk") + buf[at:])
    if kind == "zero-prefix":
        n = draw(st.integers(1, min(64, len(buf))), label="zeros")
        return bytes(n) + bytes(buf[n:])
    for _ in range(draw(st.integers(1, 8), label="flips")):
        i = draw(st.integers(0, len(buf) - 1), label="where")
        buf[i] ^= draw(st.integers(1, 255), label="mask")
    if bytes(buf) == data:  # flips that cancelled out: still corrupt one byte
        buf[0] ^= 0xFF
    return bytes(buf)


IDX_IMAGES = idx_bytes(np.random.default_rng(0).integers(0, 256, (4, 28, 28)))
IDX_LABELS = idx_bytes(np.arange(4))


@FEW
@given(st.data())
def test_corrupt_idx_files_are_dataset_errors_naming_the_file(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("idx")
    gz = data.draw(st.booleans(), label="gzip")
    which = data.draw(st.sampled_from(["images", "labels"]), label="file")
    files = {"images": IDX_IMAGES, "labels": IDX_LABELS}
    for name, payload in files.items():
        payload = gzip.compress(payload, mtime=0) if gz else payload
        if name == which:
            payload = mutate(payload, data.draw)
        (folder / (name + (".gz" if gz else ""))).write_bytes(payload)
    images, labels = (folder / ("images" + (".gz" if gz else ""))), (folder / ("labels" + (".gz" if gz else "")))
    try:
        x, y = read_idx_pair(images, labels)
    except DatasetError as exc:
        assert str(images if which == "images" else labels) in str(exc) or str(images) in str(exc), str(exc)
    else:  # the corruption kept a valid file (pixel bytes changed): still a well-formed dataset
        assert x.shape == (4, 28, 28) and x.dtype == np.uint8 and y.shape == (4,) and int(y.max()) < 10


@FEW
@given(st.data())
def test_corrupt_semeion_text_is_a_dataset_error_naming_the_file(data):
    text = "\r\n".join(semeion_line(i % 10, i) for i in range(6)).encode()
    corrupt = mutate(text, data.draw).decode("latin-1")
    try:
        pixels, labels = parse_semeion(corrupt, "semeion.data")
    except DatasetError as exc:
        assert "semeion.data" in str(exc)
    else:
        assert pixels.shape[1:] == (16, 16) and set(np.unique(pixels)) <= {0, 1} and labels.max() < 10


@pytest.fixture(scope="module")
def svhn_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("svhn") / "test_32x32.mat"
    write_svhn(path, n=4)
    return path.read_bytes()


@FEW
@given(st.data())
def test_corrupt_svhn_files_are_refused_before_the_mat_reader(svhn_bytes, tmp_path_factory, monkeypatch, data):
    """scipy's MAT reader can crash the interpreter (a segmentation fault, found by this test's first
    version) on some corrupt bytes, so the loader must never hand it unverified bytes: every corruption
    is a checksum DatasetError naming the file, and the parser is not called."""
    import hashlib

    import bayesrobust.data.svhn as svhn
    from bayesrobust.data.download import RemoteFile

    root = tmp_path_factory.mktemp("root")
    (root / "svhn").mkdir()
    (root / "svhn" / "test_32x32.mat").write_bytes(mutate(svhn_bytes, data.draw))
    monkeypatch.setitem(svhn.SVHN_FILES, "test", RemoteFile("test_32x32.mat", hashlib.md5(svhn_bytes).hexdigest(), (), algorithm="md5"))
    monkeypatch.setattr(svhn, "parse_svhn", lambda *a: pytest.fail("unverified bytes reached the MAT reader"))
    with pytest.raises(DatasetError, match="test_32x32.mat: checksum mismatch"):
        svhn.load_svhn("test", root=root)


@FEW
@given(shape=st.sampled_from([(32, 32, 3, 4), (32, 32, 4), (28, 28, 3, 4), (32, 32, 1, 4), (4, 32, 32, 3)]),
       dtype=st.sampled_from([np.uint8, np.float32, np.int16]),
       labels=st.lists(st.integers(-1, 12), min_size=0, max_size=6))
def test_svhn_parser_refuses_well_formed_files_with_wrong_contents(tmp_path_factory, shape, dtype, labels):
    import scipy.io

    path = tmp_path_factory.mktemp("svhn") / "test_32x32.mat"
    scipy.io.savemat(path, {"X": np.zeros(shape, dtype=dtype), "y": np.asarray(labels, dtype=np.int64).reshape(-1, 1)})
    try:
        images, parsed = parse_svhn(path.read_bytes(), str(path))
    except DatasetError as exc:
        assert str(path) in str(exc)
    else:
        assert shape == (32, 32, 3, 4) and dtype is np.uint8 and len(labels) == 4 and all(1 <= v <= 10 for v in labels)
        assert images.shape == (4, 32, 32, 3) and parsed.max() <= 9


def test_real_files_with_one_flipped_byte_fail_their_checksum(tmp_path):
    """The loaders verify checksums of what they read: one changed byte of a real file is refused."""
    from tests.conftest import shared_data

    root = shared_data()
    if root is None or not (root / "semeion" / "semeion.data").exists():
        pytest.skip("real Semeion file not available")
    from bayesrobust.data import load_dataset

    (tmp_path / "semeion").mkdir()
    payload = bytearray((root / "semeion" / "semeion.data").read_bytes())
    payload[1000] = ord("1") if payload[1000] != ord("1") else ord("0")
    (tmp_path / "semeion" / "semeion.data").write_bytes(bytes(payload))
    with pytest.raises(DatasetError, match="semeion.data"):
        load_dataset("semeion", "all", root=tmp_path)


# --- tensors into models and attacks ------------------------------------------------------------
@pytest.fixture(scope="module", params=["lenet", "gpdnn", "vae"])
def tiny_model(request):
    """Every family: the dropout net, the GP (its validation and quadrature paths), the VAE."""
    torch.manual_seed(0)
    if request.param == "gpdnn":
        return build_model("gpdnn", channels=(2, 4), hidden=8, features=4, inducing=4)
    if request.param == "vae":
        return build_model("vae", mode="feedback", hidden=8, latent=2, classifier_hidden=4)
    return build_model("lenet", mode="mc_dropout", channels=(2, 4), hidden=8)


DTYPES = [torch.float32, torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool, torch.complex64]
VALUES = ["valid", "nan", "inf", "negative", "above_one"]


def tensor_input(draw):
    shape = draw(st.sampled_from([(3, 1, 28, 28), (1, 1, 28, 28), (3, 28, 28), (3, 3, 28, 28), (3, 1, 32, 32), (0, 1, 28, 28),
                                  (784,), (2, 784)]), label="shape")
    dtype = draw(st.sampled_from(DTYPES), label="dtype")
    values = draw(st.sampled_from(VALUES), label="values")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    if values == "nan" and x.numel():
        x.view(-1)[0] = float("nan")
    if values == "inf" and x.numel():
        x.view(-1)[-1] = float("inf")
    if values == "negative":
        x = x - 0.5
    if values == "above_one":
        x = x + 0.5
    return x.to(dtype), shape, dtype, values


def valid(shape, dtype, values) -> bool:
    return shape[1:] == (1, 28, 28) and shape[0] > 0 and dtype.is_floating_point and values == "valid"


@MORE
@given(st.data())
def test_predictive_gives_input_error_or_a_valid_result(tiny_model, data):
    x, shape, dtype, values = tensor_input(data.draw)
    try:
        pred = tiny_model.predictive(x, 3, generator=torch.Generator().manual_seed(0))
    except InputError:
        assert not valid(shape, dtype, values)
        return
    assert valid(shape, dtype, values)
    assert pred.probs.shape == (3, shape[0], 10) and torch.isfinite(pred.probs).all()


@MORE
@given(st.data())
def test_every_attack_gives_input_error_or_a_valid_result(tiny_model, data):
    name = data.draw(st.sampled_from(sorted(ATTACKS.names())), label="attack")
    x, shape, dtype, values = tensor_input(data.draw)
    n = shape[0] if len(shape) == 4 else 3
    label_kind = data.draw(st.sampled_from(["ok", "float", "out_of_range", "wrong_length"]), label="labels")
    y = {"ok": torch.arange(n) % 10, "float": (torch.arange(n) % 10).float(), "out_of_range": torch.full((n,), 10),
         "wrong_length": torch.zeros(n + 1, dtype=torch.long)}[label_kind]
    attack = build_attack(name, **{**tiny_attack(name), "eval_samples": 2})
    target = ((y + 1) % 10 if label_kind == "ok" else y) if not attack.supports_untargeted else None
    try:
        result = attack(tiny_model, x, y, target=target, generator=torch.Generator().manual_seed(0))
    except InputError:
        assert not (valid(shape, dtype, values) and label_kind == "ok")
        return
    assert valid(shape, dtype, values) and label_kind == "ok"
    assert result.x_adv.shape == (n, 1, 28, 28) and result.x_adv.dtype == torch.float32
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1


def test_the_property_tests_cover_every_format():
    assert Path(parse_idx.__code__.co_filename).name == "idx.py"
