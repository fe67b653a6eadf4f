"""MNIST and Fashion-MNIST from IDX files (LeCun et al. 1998; Xiao et al. 2017)."""

from __future__ import annotations

from bayesrobust.data.base import DATASETS
from bayesrobust.data.download import RemoteFile
from bayesrobust.data.idx_sets import idx_spec, remote_idx_files

_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

# SHA-256 of the decompressed IDX files (the gzip wrappers differ between mirrors).
MNIST_FILES = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FASHION_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def mnist_layout(files: dict[str, RemoteFile]) -> dict[str, tuple[RemoteFile, RemoteFile]]:
    """MNIST's file names per split (train-*, t10k-*), which Fashion-MNIST shares."""
    return {split: (files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"])
            for split, prefix in (("train", "train"), ("test", "t10k"))}


DATASETS.add("mnist", idx_spec("mnist", "MNIST, 60,000 + 10,000 (IDX files)",
                               mnist_layout(remote_idx_files(MNIST_FILES, _MNIST_MIRRORS))))
# Debian's dataset-fashion-mnist package installs the same files in /usr/share/datasets.
DATASETS.add("fashion-mnist", idx_spec("fashion-mnist", "Fashion-MNIST, out-of-distribution set (IDX files)",
                                       mnist_layout(remote_idx_files(FASHION_FILES, _FASHION_MIRRORS)), classes="clothing",
                                       extra_roots=("/usr/share/datasets/fashion-mnist",)))
