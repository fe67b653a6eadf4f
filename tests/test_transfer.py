"""Transfer sets: the user's own IDX folders (``transfer.extra``, labels optional), sets whose labels
name other classes, and the transfer tables with intervals and OOD rates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from bayesrobust.cli import main
from bayesrobust.config import load_config
from bayesrobust.data.folder import load_idx_folder, set_name
from bayesrobust.errors import ConfigError, DatasetError, DatasetMissing


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_folder(folder: Path, images: np.ndarray, labels: np.ndarray | None = None, compress: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    write = gzip.compress if compress else (lambda b: b)
    (folder / f"my-images-idx3-ubyte{suffix}").write_bytes(write(idx_bytes(images)))
    if labels is not None:
        (folder / f"my-labels-idx1-ubyte{suffix}").write_bytes(write(idx_bytes(labels)))
    return folder


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


def test_transfer_extra_config(tmp_path):
    base = tmp_path / "c.toml"
    base.write_text('[data]\ntrain = "mnist-5k"\nshifted = ["digits"]\n[models.m]\narch = "mlp"\n')
    assert load_config(base, [f"transfer.extra={tmp_path / 'scans'}"]).transfer.extra == (str(tmp_path / "scans"),)
    assert load_config(base).transfer.extra == ()
    with pytest.raises(ConfigError, match="named 'digits', already taken"):
        load_config(base, [f"transfer.extra={tmp_path / 'Digits'}"])
    with pytest.raises(ConfigError, match="unknown config key transfer.folders"):
        load_config(base, ["transfer.folders=x"])
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
shifted = ["digits"]
[transfer]
extra = ["{labelled}", "{scans}"]
[models.mc]
arch = "lenet"
mode = "mc_dropout"
params = {{ channels = [4, 8], hidden = 16 }}
[models.mc.train]
epochs = 1
[evaluation]
samples = 4
bootstrap = 200
""")
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
    test_h, scan_h = arrays["test/mc/entropy"], arrays["shift/scans/mc/entropy"]
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
