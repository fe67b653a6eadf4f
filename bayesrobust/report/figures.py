"""The plotting helpers every report section shares: the house style and palette, figures made without
pyplot, panel grids of digits, heatmaps, rows of images, reliability diagrams, curves against a shift's
strength, and the note that lines coincide. A suite's or an analysis's own figures live beside its report
section (``report/*_sections.py``, ``analysis/*.py``); all of them are drawn from a run folder's arrays,
never from live models."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 200,
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
}
# Okabe & Ito's colour-blind-safe palette (blue, vermilion, bluish green, orange, reddish purple, sky blue)
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9"]


def new_figure(nrows: int = 1, ncols: int = 1, *, width: float = 3.2, height: float = 2.6, **kw):
    """A matplotlib ``Figure`` made without pyplot: no backend is chosen or switched (a notebook's stays
    as it is) and nothing is kept in pyplot's global figure list."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width * ncols, height * nrows))
        axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes



def displayable(image) -> np.ndarray:
    """One image as ``imshow`` takes it: (H, W) for grey — a (1, H, W) image or a flattened square — and
    (H, W, 3) for colour (C, H, W) images."""
    a = np.asarray(image)
    if a.ndim == 3:
        return a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        return a
    side = int(round(math.sqrt(a.size)))
    return a.reshape(side, side)

def coinciding(lines: dict[str, object], tol: float = 1e-9) -> list[list[str]]:
    """Groups (two or more names) of lines equal point for point: drawn on top of each other, only the last
    one drawn would show, and a reader would think the others missing. Missing points (None, NaN) match."""
    values = {name: np.asarray([np.nan if v is None else v for v in line], dtype=float) for name, line in lines.items()}
    groups: list[list[str]] = []
    for name, line in values.items():
        group = next((g for g in groups if values[g[0]].shape == line.shape
                      and np.allclose(values[g[0]], line, atol=tol, rtol=0, equal_nan=True)), None)
        if group is None:
            groups.append([name])
        else:
            group.append(name)
    return [g for g in groups if len(g) > 1]


def note_coinciding(ax, lines: dict[str, object]) -> None:
    """Say on the panel which of its lines coincide (e.g. a network and its temperature-scaled twin, whose
    accuracy is the same at every point)."""
    groups = coinciding(lines)
    if groups:
        ax.text(0.02, 0.02, "coincide: " + "; ".join(" = ".join(g) for g in groups), transform=ax.transAxes,
                fontsize=6, color="0.25", va="bottom", ha="left")


class PanelGrid:
    """A grid of image panels drawn on one axes that fills the figure, in inch coordinates (y down).

    One small matplotlib axes per digit made report building slow — every axes carries its own ticks
    and layout pass, and the report has hundreds of digits — so each panel is an image placed by its
    extent instead, titles and row labels are plain text, and no layout pass is needed."""

    def __init__(self, nrows: int, ncols: int, *, cell: float = 0.9, left: float = 0.0, top: float = 0.0, font: float = 7):
        self.cell, self.left, self.top, self.font = cell, left, top, font
        self.band = 0.16 * font / 7  # room for a one-line panel title above each image
        self.pitch = (cell + 0.06, cell + self.band + 0.06)  # cell width and height with gaps
        width, height = left + ncols * self.pitch[0], top + nrows * self.pitch[1]
        with matplotlib.rc_context(STYLE):
            self.fig = Figure(figsize=(width, height))
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(0, width)
        self.ax.set_ylim(height, 0)
        self.ax.set_axis_off()

    def _origin(self, row: int, col: int) -> tuple[float, float]:
        """Top-left corner of the image of panel (row, col)."""
        return self.left + col * self.pitch[0] + 0.03, self.top + row * self.pitch[1] + self.band + 0.03

    def image(self, row: int, col: int, image: np.ndarray, *, title: str = "", color: str = "black",
              cmap: str = "gray_r", vmin: float = 0.0, vmax: float = 1.0) -> None:
        x, y = self._origin(row, col)
        self.ax.imshow(displayable(image), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                       extent=(x, x + self.cell, y + self.cell, y), aspect="auto")
        if title:
            self.ax.text(x + self.cell / 2, y - 0.03, title, ha="center", va="bottom", fontsize=self.font, color=color)

    def row_label(self, row: int, text: str) -> None:
        x, y = self._origin(row, 0)
        self.ax.text(x - 0.06, y + self.cell / 2, text, ha="right", va="center", fontsize=self.font)

    def column_label(self, col: int, text: str) -> None:
        x, _ = self._origin(0, col)
        self.ax.text(x + self.cell / 2, 0.02, text, ha="center", va="top", fontsize=self.font)

    def heading(self, text: str) -> None:
        self.ax.text(self.ax.get_xlim()[1] / 2, 0.04, text, ha="center", va="top", fontsize=9)


def heatmap(matrix: np.ndarray, *, rows, columns, title: str, fmt: str = "{:.2f}", cmap: str = "viridis",
            xlabel: str = "", ylabel: str = ""):
    """Annotated matrix (NaN cells blank), e.g. source × target success rates."""
    n_rows, n_cols = matrix.shape
    fig, axes = new_figure(width=0.55 * n_cols + 1.6, height=0.45 * n_rows + 1.0)
    ax = axes[0][0]
    masked = np.ma.masked_invalid(matrix)
    image = ax.imshow(masked, cmap=cmap, aspect="auto")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n_cols), [str(c) for c in columns], rotation=0 if n_cols <= 10 else 45)
    ax.set_yticks(range(n_rows), [str(r) for r in rows])
    finite = matrix[np.isfinite(matrix)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(n_rows):
        for j in range(n_cols):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=6.5,
                        color="white" if matrix[i, j] < mid else "black")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def image_rows(rows: dict[str, np.ndarray], predicted: dict[str, np.ndarray] | None = None, ncols: int = 8):
    """One row of digits per named set (Lacok Figure 1: original, FGSM ε, noise)."""
    names = list(rows)
    grid = PanelGrid(len(names), ncols, cell=0.8, left=0.07 * max(len(n) for n in names) + 0.1)
    for r, name in enumerate(names):
        for c in range(min(ncols, len(rows[name]))):
            grid.image(r, c, rows[name][c], title=str(predicted[name][c]) if predicted is not None else "")
        grid.row_label(r, name)
    return grid.fig


def reliability_diagrams(bins: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], scheme: str = "width",
                         titles: dict[str, str] | None = None):
    """One panel per model: accuracy against mean confidence per bin (bars at the bins' mean confidence,
    the diagonal is perfect calibration), with the share of examples per bin underneath; ``titles``
    (by model) replace the model's name above its panel (the report puts its ECE and T there)."""
    names = list(bins)
    fig, axes = new_figure(2, len(names), width=2.6, height=1.6,
                           gridspec_kw={"height_ratios": [3, 1]}, sharex="col")
    for j, name in enumerate(names):
        count, confidence, accuracy = (np.asarray(a, dtype=float) for a in bins[name])
        edges = np.linspace(0, 1, len(count) + 1)
        centre = (edges[:-1] + edges[1:]) / 2 if scheme == "width" else np.nan_to_num(confidence)
        width = (edges[1] - edges[0]) * 0.9 if scheme == "width" else 0.02
        top, bottom = axes[0][j], axes[1][j]
        filled = count > 0
        top.bar(centre[filled], accuracy[filled], width=width, color=PALETTE[0], edgecolor="white", label="accuracy")
        low, high = np.minimum(confidence, accuracy)[filled], np.maximum(confidence, accuracy)[filled]
        top.bar(centre[filled], high - low, bottom=low, width=width, facecolor="none", edgecolor=PALETTE[1],
                hatch="///", lw=0.6, label="gap to mean confidence")
        top.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--")
        top.set(title=(titles or {}).get(name, name), ylim=(0, 1), xlim=(0, 1), ylabel="accuracy" if j == 0 else "")
        bottom.bar(centre[filled], count[filled] / max(count.sum(), 1), width=width, color="grey")
        bottom.set(xlabel="confidence", ylabel="share" if j == 0 else "", xlim=(0, 1))
    axes[0][0].legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


SHIFT_QUANTITIES = (("acc", "accuracy"), ("nll", "NLL (nats)"), ("ece", "ECE"), ("entropy", "mean entropy (nats)"))


def shift_curves(strengths: list[float], curves: dict[str, dict[str, list[float]]], unit: str,
                 quantities=SHIFT_QUANTITIES, bands: dict[str, dict[str, tuple[list, list]]] | None = None):
    """Ovadia et al.'s layout: each quantity (default: accuracy, NLL, ECE and mean entropy) against the
    shift's strength, one line per model (strength 0 = the unshifted test digits), with its interval as a
    band where ``bands[model][quantity]`` gives (low, high)."""
    fig, axes = new_figure(1, len(quantities), width=2.7, height=2.4)
    for i, (model, values) in enumerate(curves.items()):
        style = {"color": PALETTE[i % len(PALETTE)], "marker": "o", "markersize": 2.5, "label": model}
        for ax, (key, _) in zip(axes[0], quantities):
            ax.plot(strengths, values[key], **style)
            band = (bands or {}).get(model, {}).get(key)
            if band is not None and all(v is not None for v in (*band[0], *band[1])):
                ax.fill_between(strengths, band[0], band[1], color=style["color"], alpha=0.15, linewidth=0)
    for ax, (key, label) in zip(axes[0], quantities):
        ax.set(xlabel=unit, ylabel=label)
        ax.grid(alpha=0.3)
        note_coinciding(ax, {model: values[key] for model, values in curves.items()})
    if quantities[0][0] == "acc":
        axes[0][0].set_ylim(-0.02, 1.02)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    return fig


