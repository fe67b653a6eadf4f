"""Paper-style figures drawn from a run folder's arrays (never from live models)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 3.2, height: float = 2.6, **kw):
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kw)
    return fig, axes


def uncertainty_histograms(in_dist: dict[str, np.ndarray], shifted: dict[str, dict[str, np.ndarray]],
                           quantity: str = "predictive entropy (nats)", test_name: str = "test"):
    """One panel per model: the distribution of an uncertainty measure on the test split and on
    each shifted set (normalised histograms on a shared axis)."""
    models = list(in_dist)
    fig, axes = new_figure(1, len(models), width=3.4)
    upper = max([float(np.max(v)) for v in in_dist.values()] +
                [float(np.max(v)) for per in shifted.values() for v in per.values()] + [1e-3])
    bins = np.linspace(0.0, upper * 1.02, 40)
    for ax, model in zip(axes[0], models):
        ax.hist(in_dist[model], bins=bins, density=True, alpha=0.6, color=PALETTE[0], label=f"{test_name} (in-dist.)")
        for i, (set_name, per_model) in enumerate(shifted.items(), start=1):
            ax.hist(per_model[model], bins=bins, density=True, histtype="step", linewidth=1.5,
                    color=PALETTE[i % len(PALETTE)], label=set_name)
        ax.set_title(model)
        ax.set_xlabel(quantity)
        ax.set_ylabel("density")
    axes[0][0].legend(loc="upper right")
    fig.tight_layout()
    return fig


def digit_grid(images: np.ndarray, labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray,
               title: str = "", ncols: int = 8):
    """Digits with their predicted label and confidence; wrong predictions in red."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = new_figure(nrows, ncols, width=0.95, height=1.1)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        ok = predicted[i] == labels[i]
        ax.set_title(f"{predicted[i]} ({confidence[i]:.2f})", color="black" if ok else "#d62728", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
