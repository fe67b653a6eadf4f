"""Sets from the user's own files (IDX pairs, .npz files, folders of PNGs per class) as ``data.shifted``
(labels optional), ``data.train`` and ``data.test``; sets whose labels name other classes; the transfer
tables with intervals and OOD rates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesrobust.cli import main
from bayesrobust.config import load_config
from bayesrobust.data.folder import load_folder, load_idx_folder, set_name
from bayesrobust.errors import ConfigError, DatasetError, DatasetMissing
from tests.data_files import idx_bytes


def write_folder(folder: Path, images: np.ndarray, labels: np.ndarray | None = None, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    write = gzip.compress if compress else (lambda b: b)
    (folder / f"my-images-idx3-ubyte{suffix}").write_bytes(write(idx_bytes(images)))
    if labels is not None:
        (folder / f"my-labels-idx1-ubyte{suffix}").write_bytes(write(idx_bytes(labels)))
    return folder


def tiny_lenet(name: str, mode: str, *, samples: int, bootstrap: int) -> str:
    """A config's tables for one tiny LeNet trained one epoch, and a small evaluation suite."""
    return f"""[models.{name}]
arch = "lenet"
mode = "{mode}"
params = {{ channels = [4, 8], hidden = 16 }}
[models.{name}.train]
epochs = 1
[evaluation]
samples = {samples}
bootstrap = {bootstrap}
"""


@pytest.fixture
def digit_arrays(digits5k):
    test = digits5k[1]
    x = (test.images[:50, 0].numpy() * 255).round().astype(np.uint8)
    return x, test.labels[:50].numpy().astype(np.uint8)


def test_labelled_folder_round_trips(tmp_path, digit_arrays):
    x, y = digit_arrays
    data = load_idx_folder(write_folder(tmp_path / "My Digits", x, y))
    assert data.labelled and data.info.name == "my-digits" and len(data) == 50
    assert np.array_equal(data.labels.numpy(), y) and np.allclose(data.images[:, 0].numpy() * 255, x)
    # the images file itself works too, raw (not gzipped), its labels found by the mirrored name
    raw = write_folder(tmp_path / "raw", x, y, compress=False)
    assert load_idx_folder(raw / "my-images-idx3-ubyte").labelled


def test_unlabelled_folder(tmp_path, digit_arrays):
    data = load_idx_folder(write_folder(tmp_path / "scans", digit_arrays[0]))
    assert not data.labelled and (data.labels == -1).all() and data.head(20).labelled is False


def test_bad_folders_are_refused_clearly(tmp_path, digit_arrays):
    x, y = digit_arrays
    with pytest.raises(DatasetMissing, match="does not exist"):
        load_idx_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no IDX images file"):
        load_idx_folder(tmp_path / "empty")
    big = write_folder(tmp_path / "big", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DatasetError, match="32x32.*must be 28x28"):
        load_idx_folder(big)
    wrong = write_folder(tmp_path / "wrong", x, y[:10])
    with pytest.raises(DatasetError, match="50 images but .* 10 labels"):
        load_idx_folder(wrong)
    labels = y.copy()
    labels[3] = 12
    with pytest.raises(DatasetError, match="label 12 out of range"):
        load_idx_folder(write_folder(tmp_path / "range", x, labels))
    two = write_folder(tmp_path / "two", x, y)
    (two / "other-images-idx3-ubyte").write_bytes(idx_bytes(x))
    with pytest.raises(DatasetError, match="2 IDX images files"):
        load_idx_folder(two)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "t-images-idx3-ubyte").write_bytes(idx_bytes(x)[:-100])
    with pytest.raises(DatasetError, match="truncated"):
        load_idx_folder(cut)


def test_shifted_sets_take_paths(tmp_path):
    """``data.shifted`` lists registered names and paths alike; a folder may not take a registered set's
    name, and the old ``[transfer] extra`` table says where its sets went."""
    base = tmp_path / "c.toml"
    base.write_text('[data]\ntrain = "mnist-5k"\nshifted = ["digits"]\n[models.m]\narch = "mlp"\n')
    assert load_config(base, [f"data.shifted={tmp_path / 'scans'}"]).data.shifted == (str(tmp_path / "scans"),)
    both = load_config(base, [f'data.shifted=["digits", "{tmp_path / "scans"}"]']).data.shifted
    assert both == ("digits", str(tmp_path / "scans"))
    with pytest.raises(ConfigError, match="named 'digits', already taken"):
        load_config(base, [f'data.shifted=["digits", "{tmp_path / "Digits"}"]'])
    with pytest.raises(ConfigError, match="unknown dataset 'digitz'"):
        load_config(base, ['data.shifted=["digitz"]'])
    with pytest.raises(ConfigError, match="transfer.*data.shifted now.*instead of transfer.extra"):
        load_config(base, [f"transfer.extra={tmp_path / 'scans'}"])
    assert set_name("/a/b/c-images-idx3-ubyte.gz") == "c-images-idx3-ubyte"


def test_run_evaluates_extra_folders_and_other_label_spaces(tmp_path, digit_arrays):
    """A labelled and an unlabelled folder beside a set whose labels name clothing: accuracy and
    log-likelihood with intervals only where labels are digits; OOD rates for every set."""
    x, y = digit_arrays
    labelled = write_folder(tmp_path / "labelled", x, y)
    scans = write_folder(tmp_path / "scans", 255 - x)  # inverted digits, no labels
    config = tmp_path / "t.toml"
    config.write_text(f"""
[data]
train = "mnist-5k"
train_limit = 300
test_limit = 80
shifted = ["digits", "{labelled}", "{scans}"]
""" + tiny_lenet("mc", "mc_dropout", samples=4, bootstrap=200))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for prefix in ("clean/mc", "shift/digits/mc", "shift/labelled/mc"):
        assert m[f"{prefix}/acc_low"] <= m[f"{prefix}/acc"] <= m[f"{prefix}/acc_high"]
        assert m[f"{prefix}/ll_low"] <= m[f"{prefix}/ll"] <= m[f"{prefix}/ll_high"]
        assert m[f"{prefix}/ll"] == pytest.approx(-m[f"{prefix}/nll"])
    assert "shift/scans/mc/acc" not in m and "shift/scans/mc/ll" not in m
    for s in ("digits", "labelled", "scans"):
        for score in ("entropy", "mi", "variance", "max_probability"):
            assert 0.0 <= m[f"shift/{s}/mc/auroc_{score}"] <= 1.0 and 0.0 <= m[f"shift/{s}/mc/fpr95_{score}"] <= 1.0
    # the rates are those of scikit-learn's ROC curve on the saved per-example entropies
    from sklearn.metrics import roc_auc_score, roc_curve

    arrays = np.load(out / "arrays" / "evaluation.npz")
    test_h, scan_h = arrays["test/mc/entropy"], arrays["shifted/scans/mc/entropy"]
    truth, scores = np.r_[np.zeros(len(test_h)), np.ones(len(scan_h))], np.r_[test_h, scan_h]
    fpr, tpr, _ = roc_curve(truth, scores)
    assert m["shift/scans/mc/auroc_entropy"] == pytest.approx(roc_auc_score(truth, scores))
    assert m["shift/scans/mc/fpr95_entropy"] == pytest.approx(fpr[tpr >= 0.95].min())
    data = json.loads((out / "data.json").read_text())
    assert data["scans"]["labelled"] is False and data["labelled"]["labelled"] is True
    report = (out / "report.md").read_text()
    assert "Transfer testing: accuracy / mean log-likelihood" in report and "Shifted set scans (unlabelled" in report


def test_other_label_space_is_unlabelled(tmp_path):
    """Fashion-MNIST's labels name clothing: for a digit model the set is scored without labels."""
    from bayesrobust.config import config_from_dict
    from bayesrobust.experiment import load_data
    from tests.conftest import require_shared

    root = require_shared("fashion-mnist")
    config = config_from_dict({"data": {"train": "mnist-5k", "shifted": ["fashion-mnist"], "shifted_limit": 30}})
    data = load_data(config, str(root), False)
    assert not data.shifted["fashion-mnist"].labelled and (data.shifted["fashion-mnist"].labels == -1).all()


def write_png_folder(folder: Path, images: np.ndarray, labels: np.ndarray, names=None) -> Path:
    """torchvision ImageFolder's layout: one subfolder per class (``names[label]``, default the digit)."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / (names[label] if names else str(int(label)))
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:04d}.png")
    return folder


def test_npz_files_and_png_folders_load_as_their_digits(tmp_path, digit_arrays):
    x, y = digit_arrays
    np.savez(tmp_path / "scans.npz", images=x, labels=y)
    dataset = load_folder(tmp_path / "scans.npz")
    assert dataset.info.name == "scans" and dataset.labelled and dataset.shape == (1, 28, 28)
    assert np.array_equal((dataset.images[:, 0].numpy() * 255).round().astype(np.uint8), x)
    assert np.array_equal(dataset.labels.numpy(), y)
    np.savez(tmp_path / "floats.npz", images=x[:, None] / 255.0)  # (N, C, H, W) floats, no labels
    unlabelled = load_folder(tmp_path / "floats.npz")
    assert not unlabelled.labelled and unlabelled.shape == (1, 28, 28)
    assert torch.allclose(unlabelled.images, dataset.images, atol=1e-6)

    pngs = load_folder(write_png_folder(tmp_path / "pngs", x, y))  # folders named by digit: those labels
    assert pngs.labelled and pngs.info.name == "pngs" and len(pngs) == len(x)
    order = np.argsort(y, kind="stable")  # read class folder by class folder, files in name order
    assert np.array_equal(pngs.labels.numpy(), y[order])
    assert torch.equal(pngs.images, dataset.images[torch.as_tensor(order)])
    named = load_folder(write_png_folder(tmp_path / "named", x[:6], np.array([0, 1, 2, 0, 1, 2]), ["zero", "one", "two"]))
    assert named.labels.tolist() == [0, 0, 1, 1, 2, 2]  # ImageFolder's rule: classes in sorted name order, so
    assert torch.equal(named.images[:2], dataset.images[[1, 4]])  # "one" is class 0: the images saved as 1
    assert "classes one, two, zero" in named.info.notes


def test_bad_npz_files_and_png_folders_are_refused_naming_the_file(tmp_path, digit_arrays):
    x, y = digit_arrays
    cases = {
        "no_images.npz": ({"pixels": x}, "no 'images' array \\(it holds pixels\\)"),
        "flat.npz": ({"images": x.reshape(len(x), -1)}, "must be \\(N, H, W\\) or \\(N, C, H, W\\)"),
        "few_labels.npz": ({"images": x, "labels": y[:10]}, "50 images but 10 labels"),
        "bright.npz": ({"images": x / 100.0}, "pixel values outside \\[0, 1\\]"),
        "float_labels.npz": ({"images": x, "labels": y.astype(float)}, "labels must be integers"),
        "label_12.npz": ({"images": x, "labels": np.full(len(x), 12)}, "labels out of range"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(DatasetError, match=f"{name}.*{message}"):
            load_folder(tmp_path / name)
    np.savez(tmp_path / "cut.npz", images=x, labels=y)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "cut.npz").read_bytes()[:-500])
    with pytest.raises(DatasetError, match="cut.npz: not a readable .npz file"):
        load_folder(tmp_path / "cut.npz")
    with pytest.raises(DatasetMissing, match="does not exist"):
        load_folder(tmp_path / "absent.npz")

    folder = write_png_folder(tmp_path / "broken", x[:4], y[:4])
    bad = next((folder / str(int(y[0]))).iterdir())
    bad.write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=f"{bad.name}: not a readable PNG or JPEG image"):
        load_folder(folder)
    from PIL import Image

    mixed = write_png_folder(tmp_path / "mixed", x[:4], y[:4])
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(mixed / str(int(y[0])) / "big.png")
    with pytest.raises(DatasetError, match="big.png: 32x32 pixels, but .* has 28x28"):
        load_folder(mixed)
    (tmp_path / "empty" / "0").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no PNG or JPEG images in its subfolders"):
        load_folder(tmp_path / "empty")


def test_a_run_trains_on_an_npz_file_and_tests_on_a_png_folder(tmp_path, digits5k):
    """``data.train`` and ``data.test`` take paths: the run trains on the file's digits, tests on the
    folder's, and records both files in data.json; a path for training without a test set is refused."""
    from bayesrobust.config import config_from_dict

    def as_bytes(dataset):
        return (dataset.images[:, 0].numpy() * 255).round().astype(np.uint8), dataset.labels.numpy()

    train_x, train_y = as_bytes(digits5k[0].head(300, seed=0))
    test_x, test_y = as_bytes(digits5k[1].head(60, seed=0))
    np.savez(tmp_path / "mine.npz", images=train_x, labels=train_y)
    write_png_folder(tmp_path / "heldout", test_x, test_y)
    config = tmp_path / "t.toml"
    config.write_text(f"""
[data]
train = "{tmp_path / 'mine.npz'}"
test = "{tmp_path / 'heldout'}"
shifted = ["digits"]
shifted_limit = 40
""" + tiny_lenet("m", "plain", samples=2, bootstrap=100))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    data = json.loads((out / "data.json").read_text())
    assert data["train"]["source"] == str(tmp_path / "mine.npz") and data["train"]["count"] == 270  # 10% validation
    assert data["test"]["source"] == str(tmp_path / "heldout") and data["test"]["count"] == 60
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["clean/m/acc"] <= 1.0 and "shift/digits/m/acc" in metrics  # the folder's labels are digits
    with pytest.raises(ConfigError, match="give data.test too"):
        config_from_dict({"data": {"train": str(tmp_path / "mine.npz")}})
    with pytest.raises(ConfigError, match="data.test: unknown dataset 'mnist-6k'"):
        config_from_dict({"data": {"test": "mnist-6k"}})
    np.savez(tmp_path / "unlabelled.npz", images=test_x)
    with pytest.raises(ConfigError, match="data.test .*unlabelled.npz' has no labels"):
        from bayesrobust.experiment import load_data

        load_data(config_from_dict({"data": {"test": str(tmp_path / "unlabelled.npz")}}), None, False)
