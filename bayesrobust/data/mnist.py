"""MNIST and Fashion-MNIST from IDX files (LeCun et al. 1998; Xiao et al. 2017)."""

from __future__ import annotations

from bayesrobust.data.base import DATASETS, Dataset, DatasetInfo, DatasetSpec, to_dataset
from bayesrobust.data.download import RemoteFile, fetch
from bayesrobust.data.idx import parse_idx
from bayesrobust.errors import DatasetError

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


def idx_files(digests: dict[str, str], mirrors: tuple[str, ...]) -> dict[str, RemoteFile]:
    return {name: RemoteFile(name, digest, tuple(m + name + ".gz" for m in mirrors)) for name, digest in digests.items()}


def load_idx_dataset(name: str, subdir: str, files: dict[str, RemoteFile], split: str, root, download: bool,
                     extra_roots: tuple[str, ...] = ()) -> Dataset:
    prefix = "train" if split == "train" else "t10k"
    specs = [files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]]
    roots = [root, *extra_roots] if root is None else [root]
    last_error: DatasetError | None = None
    for candidate in roots:
        try:
            (img_path, img_bytes), (lbl_path, lbl_bytes) = (fetch(s, subdir, candidate, download) for s in specs)
            break
        except DatasetError as exc:
            last_error = exc
    else:
        raise last_error  # type: ignore[misc]
    x = parse_idx(img_bytes, source=str(img_path), expect_dims=3)
    y = parse_idx(lbl_bytes, source=str(lbl_path), expect_dims=1)
    if x.shape[1:] != (28, 28) or x.shape[0] != y.shape[0]:
        raise DatasetError(f"{img_path}: shape {x.shape} does not match labels {y.shape} / 28x28")
    info = DatasetInfo(name, split, str(img_path.parent), int(x.shape[0]), specs[0].digest[:16], verified=True)
    return to_dataset(x, y, info)


MNIST_REMOTE = idx_files(MNIST_FILES, _MNIST_MIRRORS)
FASHION_REMOTE = idx_files(FASHION_FILES, _FASHION_MIRRORS)


def load_mnist(split: str, root=None, download: bool = False) -> Dataset:
    return load_idx_dataset("mnist", "mnist", MNIST_REMOTE, split, root, download)


def load_fashion_mnist(split: str, root=None, download: bool = False) -> Dataset:
    # Debian's dataset-fashion-mnist package installs the same files here.
    return load_idx_dataset("fashion-mnist", "fashion-mnist", FASHION_REMOTE, split, root, download,
                            extra_roots=("/usr/share/datasets/fashion-mnist",))


DATASETS.add("mnist", DatasetSpec("mnist", load_mnist, ("train", "test"),
                                  "MNIST, 60,000 + 10,000 (IDX files)", remote_files=tuple(MNIST_REMOTE.values())))
DATASETS.add("fashion-mnist", DatasetSpec("fashion-mnist", load_fashion_mnist, ("train", "test"),
                                          "Fashion-MNIST, out-of-distribution set (IDX files)",
                                          remote_files=tuple(FASHION_REMOTE.values()), classes="clothing"))
