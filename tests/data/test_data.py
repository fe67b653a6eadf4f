"""Dataset parsers on fixture files written here, and on the real files when present."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesrobust.data import DATASETS, load_dataset, stratified_split
from bayesrobust.data.download import RemoteFile, download, fetch
from bayesrobust.data.idx import parse_idx, read_bytes, read_idx_pair
from bayesrobust.data.semeion import parse_semeion
from bayesrobust.data.svhn import load_svhn, parse_svhn
from bayesrobust.data.transforms import mnist_style
from bayesrobust.errors import DatasetError
from tests.conftest import require_shared
from tests.data_files import idx_bytes, semeion_line, write_svhn


def write_idx_pair(folder: Path, n: int = 5, gz: bool = True, labels=None) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    y = np.arange(n) % 10 if labels is None else np.asarray(labels)
    paths = []
    for name, arr in (("images", x), ("labels", y)):
        data = idx_bytes(arr)
        path = folder / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths[0], paths[1]


# --- IDX ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_idx_pair_round_trip(tmp_path, gz):
    img, lbl = write_idx_pair(tmp_path, n=7, gz=gz)
    x, y = read_idx_pair(img, lbl)
    assert x.shape == (7, 28, 28) and x.dtype == np.uint8
    assert y.tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_idx_truncated_file_is_named(tmp_path):
    data = idx_bytes(np.zeros((3, 28, 28), np.uint8))[:-10]
    with pytest.raises(DatasetError, match="truncated"):
        parse_idx(data, source="x.idx", expect_dims=3)


def test_idx_wrong_magic(tmp_path):
    data = b"\x00\x00\x0d\x03" + idx_bytes(np.zeros((1, 28, 28), np.uint8))[4:]
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(data, source="x.idx", expect_dims=3)


def test_idx_wrong_dimensions(tmp_path):
    with pytest.raises(DatasetError, match="dimensions"):
        parse_idx(idx_bytes(np.zeros((3, 28), np.uint8)), source="x.idx", expect_dims=3)
    img = tmp_path / "img"
    img.write_bytes(idx_bytes(np.zeros((2, 20, 20), np.uint8)))
    lbl = tmp_path / "lbl"
    lbl.write_bytes(idx_bytes(np.zeros((2,), np.uint8)))
    with pytest.raises(DatasetError, match="28x28"):
        read_idx_pair(img, lbl)


def test_idx_labels_out_of_range(tmp_path):
    img, lbl = write_idx_pair(tmp_path, n=3, labels=[1, 2, 11])
    with pytest.raises(DatasetError, match="out of range"):
        read_idx_pair(img, lbl)


def test_idx_count_mismatch(tmp_path):
    img, _ = write_idx_pair(tmp_path, n=3)
    lbl = tmp_path / "other"
    lbl.write_bytes(idx_bytes(np.zeros((4,), np.uint8)))
    with pytest.raises(DatasetError, match="3 images but"):
        read_idx_pair(img, lbl)


def test_corrupt_gzip_is_a_dataset_error(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(0).bytes(4000))[:-100])
    with pytest.raises(DatasetError, match="gzip"):
        read_bytes(path)


def test_mnist_checksum_mismatch_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        arr = np.zeros((2, 28, 28) if "images" in name else (2,), np.uint8)
        (folder / (name + ".gz")).write_bytes(gzip.compress(idx_bytes(arr)))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("mnist", "test", root=tmp_path)


def test_mnist_missing_files_message_lists_the_ways(tmp_path, monkeypatch):
    monkeypatch.delenv("BAYESROBUST_DATA", raising=False)
    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", "test", root=tmp_path)
    text = str(info.value)
    assert "t10k-images-idx3-ubyte" in text and "--data-dir" in text and "BAYESROBUST_DATA" in text and "--download" in text


def test_real_mnist_and_fashion_when_present():
    root = require_shared("mnist", "t10k-images-idx3-ubyte.gz")
    test = load_dataset("mnist", "test", root=root)
    assert len(test) == 10000 and test.info.verified
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert test.images.dtype == torch.float32 and 0 <= float(test.images.min()) and float(test.images.max()) <= 1
    assert abs(float(test.images.mean()) - 0.1325) < 1e-3
    if (root / "fashion-mnist").exists():
        fashion = load_dataset("fashion-mnist", "test", root=root)
        assert fashion.labels.bincount().tolist() == [1000] * 10


# --- download -------------------------------------------------------------------------------------
@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_good_file_verifies_and_caches(http_server):
    www, base = http_server
    payload = idx_bytes(np.arange(10, dtype=np.uint8))
    (www / "good.gz").write_bytes(gzip.compress(payload))
    spec = RemoteFile("good", hashlib.sha256(payload).hexdigest(), (base + "good.gz",))
    path, data = fetch(spec, "fixture", None, download_missing=True)
    assert data == payload and path.name == "good.gz" and path.exists()
    # second call finds the cached copy without the network
    path2, _ = fetch(spec, "fixture", None, download_missing=False)
    assert path2 == path


def test_download_corrupt_file_leaves_nothing(http_server):
    www, base = http_server
    (www / "bad.gz").write_bytes(gzip.compress(b"not what we expect"))
    spec = RemoteFile("bad", hashlib.sha256(b"something else").hexdigest(), (base + "bad.gz",))
    with pytest.raises(DatasetError, match="checksum mismatch"):
        download(spec, "fixture")
    from bayesrobust.data.base import cache_dir

    assert not list((cache_dir() / "fixture").glob("bad*"))


def test_download_missing_file_tries_every_mirror(http_server):
    _, base = http_server
    spec = RemoteFile("absent", "0" * 64, (base + "absent.gz", base + "absent"))
    with pytest.raises(DatasetError, match="could not download absent") as info:
        download(spec, "fixture")
    assert str(info.value).count("127.0.0.1") == 2


# --- Semeion -------------------------------------------------------------------------------------
def test_semeion_parser_on_fixture_crlf_and_unterminated():
    text = "\r\n".join(semeion_line(i % 10, i) for i in range(12))  # last line unterminated
    pixels, labels = parse_semeion(text, "fixture")
    assert pixels.shape == (12, 16, 16) and labels.tolist() == [i % 10 for i in range(12)]


def test_semeion_parser_rejects_short_rows_and_bad_labels():
    with pytest.raises(DatasetError, match="266"):
        parse_semeion("1 0 1\n", "fixture")
    bad = semeion_line(3, 0).replace(" 0 0 0 1 ", " 0 0 1 1 ")
    with pytest.raises(DatasetError, match="one-hot"):
        parse_semeion(bad, "fixture")


def test_real_semeion_when_present():
    root = require_shared("semeion", "semeion.data")
    ds = load_dataset("semeion", "all", root=root)
    assert len(ds) == 1593
    assert ds.labels.bincount().tolist() == [161, 162, 159, 159, 161, 159, 161, 158, 155, 158]
    assert tuple(ds.images.shape) == (1593, 1, 28, 28)
    stretched = load_dataset("semeion-resized", "test", root=root)
    assert torch.equal(stretched.labels, ds.labels) and tuple(stretched.images.shape) == (1593, 1, 28, 28)
    # no MNIST framing: the digits reach the border instead of sitting in the central 20×20 box
    border = lambda x: torch.cat([x[..., :4, :].flatten(1), x[..., -4:, :].flatten(1)], 1).mean()  # noqa: E731
    assert float(border(stretched.images)) > 0.1 > float(border(ds.images))


# --- SVHN -------------------------------------------------------------------------------------
def test_svhn_format2_parser(tmp_path):
    path = tmp_path / "test_32x32.mat"
    x, y = write_svhn(path)
    images, labels = parse_svhn(path.read_bytes(), str(path))
    assert images.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(images[2], x[..., 2])
    assert labels.tolist() == [1, 2, 3, 4, 5, 6]
    _, y10 = parse_svhn(_mat_bytes(tmp_path, [10, 10, 1]), "m")
    assert y10.tolist() == [0, 0, 1]  # label 10 means digit 0


def _mat_bytes(tmp_path, labels):
    path = tmp_path / "tmp.mat"
    write_svhn(path, n=len(labels), labels=labels)
    return path.read_bytes()


def test_svhn_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="readable"):
        parse_svhn(b"garbage" * 10, "bad.mat")
    with pytest.raises(DatasetError, match="1..10"):
        parse_svhn(_mat_bytes(tmp_path, [0, 3]), "m")
    path = tmp_path / "f.mat"
    write_svhn(path, x_dtype=np.float32)
    with pytest.raises(DatasetError, match="uint8"):
        parse_svhn(path.read_bytes(), str(path))


def test_svhn_loader_checks_checksum(tmp_path):
    (tmp_path / "svhn").mkdir()
    write_svhn(tmp_path / "svhn" / "test_32x32.mat")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_svhn("test", root=tmp_path)


def test_svhn_conversion_to_28x28_grey(tmp_path, monkeypatch):
    (tmp_path / "svhn").mkdir()
    path = tmp_path / "svhn" / "test_32x32.mat"
    write_svhn(path)
    import bayesrobust.data.svhn as svhn

    spec = svhn.SVHN_FILES["test"]
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(svhn.SVHN_FILES, "test", RemoteFile(spec.name, digest, spec.urls, "md5"))
    ds = load_svhn("test", root=tmp_path)
    assert tuple(ds.images.shape) == (6, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.tolist() == [1, 2, 3, 4, 5, 6]


# --- embedded ---------------------------------------------------------------------------------------
def test_mnist5k_split_is_fixed_stratified_and_disjoint():
    train, test = load_dataset("mnist-5k", "train"), load_dataset("mnist-5k", "test")
    assert len(train) == 4000 and len(test) == 1000
    assert test.labels.bincount().tolist() == [100] * 10
    assert train.labels.bincount().tolist() == [400] * 10
    again = load_dataset("mnist-5k", "test")
    assert torch.equal(again.images, test.images)
    flat_train = {bytes(x.numpy().tobytes()) for x in train.images[:, 0]}
    assert not any(bytes(x.numpy().tobytes()) in flat_train for x in test.images[:50, 0])


def test_digits_framed_like_mnist():
    ds = load_dataset("digits", "all")
    assert len(ds) == 1797 and tuple(ds.images.shape[1:]) == (1, 28, 28)
    img = ds.images[0, 0].numpy()
    rows, cols = np.nonzero(img > 0.05)
    assert rows.min() >= 2 and rows.max() <= 25 and cols.min() >= 2 and cols.max() <= 25
    ys, xs = np.indices(img.shape)
    assert abs((img * ys).sum() / img.sum() - 13.5) < 0.6 and abs((img * xs).sum() / img.sum() - 13.5) < 0.6


def test_mnist_style_keeps_aspect_ratio():
    bar = np.zeros((1, 16, 16), np.float32)
    bar[0, 2:14, 7:9] = 1.0  # a tall thin stroke, 12 x 2
    out = mnist_style(bar)[0]
    rows, cols = np.nonzero(out > 0.1)
    assert 18 <= rows.max() - rows.min() + 1 <= 21
    assert cols.max() - cols.min() + 1 <= 6


def test_stratified_split_properties():
    labels = np.repeat(np.arange(10), 50)
    first, rest = stratified_split(labels, 100, seed=3)
    assert len(first) == 100 and len(rest) == 400 and not set(first) & set(rest)
    assert np.bincount(labels[first]).tolist() == [10] * 10


def test_unknown_dataset_and_split():
    from bayesrobust.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("cifar", "test")
    with pytest.raises(DatasetError, match="splits"):
        load_dataset("digits", "train")
    assert {"mnist", "mnist-5k", "semeion", "svhn", "digits", "fashion-mnist"} <= set(DATASETS.names())


# --- synthetic shift (Ovadia et al.) ----------------------------------------------------------------------
def test_rotation_and_translation_by_hand():
    from bayesrobust.data.shift import rotate, translate

    x = torch.zeros(2, 1, 28, 28)
    x[:, 0, 5:10, 13:15] = 1.0  # a vertical bar above the centre
    assert torch.allclose(rotate(x, 0), x, atol=1e-6)
    centre = rotate(x, 90)[0, 0].nonzero().float().mean(0)
    assert centre.tolist() == pytest.approx([13.0, 6.5], abs=0.6)  # counter-clockwise: above → left of centre
    assert torch.allclose(rotate(x, 360), x, atol=1e-4)
    shifted = translate(x, 3)
    assert torch.equal(shifted[:, :, :, 3:], x[:, :, :, :-3]) and shifted[..., :3].sum() == 0
    assert translate(x, 28).sum() == 0 and torch.equal(translate(x, 0), x)
    assert rotate(torch.rand(3, 1, 28, 28), 33).max() <= 1 and rotate(torch.rand(3, 1, 28, 28), 33).min() >= 0


@pytest.mark.parametrize("change, message", [
    ({"rotations": [0]}, "evaluation.rotations"), ({"translations": [28]}, "evaluation.translations"),
    ({"shift_limit": -1}, "evaluation.shift_limit"),
])
def test_shift_protocol_config_errors(change, message):
    from bayesrobust.config import config_from_dict
    from bayesrobust.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        config_from_dict({"models": {"m": {"arch": "lenet"}}, "evaluation": change})


def test_subset_is_stratified_and_shuffled_where_the_source_is_sorted_by_label():
    """mnist-5k is stored sorted by label (its first 200 test digits are 0s and 1s): ``subset`` draws every
    class in proportion, mixed, reproducibly; ``head`` keeps the source order for the configs."""
    test = load_dataset("mnist-5k", "test")
    assert set(test.labels[:200].tolist()) <= {0, 1}  # the trap the docstring warns about
    digits = test.subset(200, seed=0)
    assert torch.bincount(digits.labels, minlength=10).tolist() == [20] * 10
    assert len(set(digits.labels[:20].tolist())) >= 5  # mixed from the first rows on
    assert torch.equal(digits.images, test.subset(200, seed=0).images)
    assert not torch.equal(digits.labels, test.subset(200, seed=1).labels)
    assert torch.equal(torch.sort(test.head(200, seed=0).labels).values, test.head(200, seed=0).labels)
    uniform = test.subset(100, stratified=False, seed=0)
    assert len(uniform) == 100 and len(set(uniform.labels.tolist())) > 5
    everything = test.subset(seed=3)
    assert len(everything) == len(test) and not torch.equal(everything.labels, test.labels)
    with pytest.raises(ValueError, match="subset"):
        test.subset(len(test) + 1)
    with pytest.raises(ValueError, match="unlabelled"):
        test.without_labels().subset(10)


def test_a_new_idx_dataset_is_one_spec_with_its_file_names_and_a_transform(tmp_path):
    """An EMNIST-like set (its digits stored transposed) from one ``idx_spec``: the files found under its
    folder and checked against their digests, the transform applied before the shared pair checks, and a
    wrong digest or a 27-pixel image refused naming the file."""
    from bayesrobust.data.idx_sets import idx_spec, remote_idx_files

    rng = np.random.default_rng(1)
    stored = rng.integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    files = {"digits-test-images-idx3-ubyte": idx_bytes(stored), "digits-test-labels-idx1-ubyte": idx_bytes(np.arange(4))}
    (tmp_path / "emnist").mkdir()
    for name, data in files.items():
        (tmp_path / "emnist" / (name + ".gz")).write_bytes(gzip.compress(data))
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    remote = remote_idx_files(digests, ("https://example.invalid/",))
    spec = idx_spec("emnist-digits", "EMNIST digits", {"test": tuple(remote.values())}, folder="emnist",
                    transform=lambda x: x.transpose(0, 2, 1))
    test = spec.loader("test", tmp_path)
    assert test.info.verified and test.labels.tolist() == [0, 1, 2, 3] and spec.files_folder == "emnist"
    assert torch.equal(test.images[:, 0], torch.from_numpy(stored.transpose(0, 2, 1)).float() / 255)
    wrong = idx_spec("emnist-digits", "", {"test": tuple(remote_idx_files({n: "0" * 64 for n in digests}, ()).values())},
                     folder="emnist")
    with pytest.raises(DatasetError, match="checksum mismatch"):
        wrong.loader("test", tmp_path)
    cropped = idx_spec("emnist-digits", "", {"test": tuple(remote.values())}, folder="emnist",
                       transform=lambda x: x[:, :27])
    with pytest.raises(DatasetError, match="27x28, expected 28x28"):
        cropped.loader("test", tmp_path)
