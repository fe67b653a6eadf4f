"""Image-panel figures: one axes, every digit square, inside the figure, never overlapping another."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bayesrobust.analysis.triptych import triptych_figure
from bayesrobust.report import figures
from bayesrobust.report.calibration_sections import weight_maps
from bayesrobust.report.evaluation_sections import digit_grid, uncertainty_histograms


def panel_extents(fig) -> list[tuple[float, float, float, float]]:
    (ax,) = fig.axes
    return [tuple(im.get_extent()) for im in ax.get_images()]


def test_panels_are_square_disjoint_and_inside_the_figure():
    rng = np.random.default_rng(0)
    images = rng.random((13, 784)).astype(np.float32)
    labels = np.arange(13) % 10
    predicted = labels.copy()
    predicted[3] = (labels[3] + 1) % 10
    fig = digit_grid(images, labels, predicted, np.full(13, 0.5), title="model", ncols=5)
    extents = panel_extents(fig)
    assert len(extents) == 13 and len(fig.axes) == 1
    width, height = fig.get_size_inches()
    for left, right, bottom, top in extents:  # y grows downwards: bottom > top
        assert np.isclose(right - left, bottom - top)  # square pixels: the axes spans the figure in inches
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
    for a, b in itertools.combinations(extents, 2):
        assert a[1] <= b[0] or b[1] <= a[0] or a[2] <= b[3] or b[2] <= a[3]
    colours = [t.get_color() for t in fig.axes[0].texts if "(" in t.get_text()]
    assert colours.count("#d62728") == 1  # the one wrong prediction is red


def test_row_labels_sit_left_of_their_rows_and_titles_above_their_panels():
    rows = {"original": np.zeros((4, 784)), "FGSM eps=0.25": np.ones((4, 784))}
    fig = figures.image_rows(rows, predicted={"original": np.arange(4), "FGSM eps=0.25": np.arange(4)}, ncols=4)
    fig.canvas.draw()
    ax = fig.axes[0]
    first_left = min(e[0] for e in panel_extents(fig))
    labels = [t for t in ax.texts if t.get_text() in rows]
    assert len(labels) == 2 and all(t.get_position()[0] < first_left for t in labels)
    titles = [t for t in ax.texts if t.get_text() in "0123"]

    def above_a_panel(x, y):  # centred on a panel, within 0.1 in above its top edge
        return any(np.isclose(x, (left + right) / 2) and 0 < top - y < 0.1 for left, right, _, top in panel_extents(fig))

    assert len(titles) == 8 and all(above_a_panel(*t.get_position()) for t in titles)


def test_triptych_and_weight_maps_draw_every_panel():
    original = np.random.default_rng(1).random((3, 784))
    labels = {k: (np.array([2, 2, 2]), np.array([0.9, 0.8, 0.7])) for k in ("original", "delta", "adversarial")}
    assert len(panel_extents(triptych_figure(original, original - 0.5, original, labels))) == 9
    assert len(panel_extents(weight_maps({"plain": original[0], "l1": original[1]}))) == 4


def test_uncertainty_histograms_share_both_axes():
    """Models compare at a glance: every panel has the same x and y limits (a shared axis, not one
    rescaled per model), and only the first panel labels the density."""
    rng = np.random.default_rng(0)
    fig = uncertainty_histograms({"a": rng.random(200), "b": rng.random(200) * 0.1},
                                         {"shifted": {"a": rng.random(100), "b": rng.random(100)}})
    first, second = fig.axes
    assert first.get_ylim() == second.get_ylim() and first.get_xlim() == second.get_xlim()
    assert first.get_ylabel() == "density" and second.get_ylabel() == ""


def test_two_sections_that_name_one_figure_alike_are_an_error():
    from bayesrobust.errors import RunError
    from bayesrobust.report.build import unique_figures
    from bayesrobust.report.sections import Section

    first, second = object(), object()
    a, b = Section("Calibration", figures=[("entropy", first, "")]), Section("Attacks", figures=[("entropy", second, "")])
    assert unique_figures([a]) == [("entropy", first)]
    with pytest.raises(RunError, match="figure name 'entropy' is written by section 'Calibration' and by 'Attacks'"):
        unique_figures([a, b])


def test_a_cell_with_an_interval_never_wraps_and_a_text_cell_may():
    from bayesrobust.report.build import _CSS, _cell

    assert _cell("0.969 [0.958, 0.980] / -0.118 [-0.166, -0.074]") == "<td class='iv'>0.969 [0.958, 0.980] / -0.118 [-0.166, -0.074]</td>"
    assert _cell("trained here on 3600 digits") == "<td>trained here on 3600 digits</td>"
    assert _cell("[x]") == "<td>[x]</td>" and "td.iv{white-space:nowrap}" in _CSS


def test_a_single_pass_models_spread_between_draws_shows_as_a_dash():
    """A plain network's MI and variance between draws are 0 by construction: its MI cell and its MI and
    variance OOD scores are "–", not a measured-looking 0.500 / 1.000; a stochastic model keeps its numbers."""
    from bayesrobust.report.calibration_sections import risk_coverage_curves
    from bayesrobust.report.evaluation_sections import ood_table

    values = {"confidence": 0.8, "entropy": 0.5, "auroc_entropy": 0.9, "fpr95_entropy": 0.3, "auroc_mi": 0.5,
              "fpr95_mi": 1.0, "auroc_variance": 0.5, "fpr95_variance": 1.0, "auroc_max_probability": 0.9,
              "fpr95_max_probability": 0.3}
    metrics = {f"shift/d/{m}/{k}": v for m in ("plain", "mc") for k, v in {**values, "mi": 0.0 if m == "plain" else 0.2}.items()}
    plain, mc = ood_table(metrics, ["plain", "mc"], "d", False, {"plain"}).rows
    assert plain[3] == "–" and plain[5] == plain[6] == "– / –" and plain[4] == plain[7] == "0.900 / 0.300"
    assert mc[3] == "0.200" and mc[5] == mc[6] == "0.500 / 1.000"
    coverage = np.linspace(0, 1, 5)
    fig = risk_coverage_curves({"plain": {"confidence": coverage, "entropy": coverage},
                                "mc": {"confidence": coverage, "entropy": coverage, "mi": coverage}}, coverage)
    assert [len(ax.lines) for ax in fig.axes] == [2, 2, 1] and fig.axes[2].get_title() == "abstaining by mi"


def test_lines_that_coincide_are_said_to_coincide():
    """A network and its temperature-scaled twin have the same accuracy at every shift: drawn on top of each
    other one line would hide the other, so the panel names them; lines that differ anywhere are not named."""
    from bayesrobust.report.figures import coinciding, shift_curves

    same = [0.99, 0.7, 0.3]
    assert coinciding({"lenet": same, "lenet_ts": list(same), "mc": [0.99, 0.72, 0.3], "gp": [0.9, None, 0.1],
                       "gp2": [0.9, float("nan"), 0.1]}) == [["lenet", "lenet_ts"], ["gp", "gp2"]]
    assert coinciding({"a": [1.0, 2.0], "b": [1.0, 2.0 + 1e-6]}) == []
    curves = {m: {"acc": same, "nll": [0.1, 0.5, 2.0 + i], "ece": [0.01, 0.1, 0.3], "entropy": [0.1, 0.4, 1.0 + i]}
              for i, m in enumerate(("lenet", "lenet_ts"))}
    fig = shift_curves([0.0, 45.0, 90.0], curves, "rotation (degrees)")
    notes = [[t.get_text() for t in ax.texts] for ax in fig.axes]
    assert notes == [["coincide: lenet = lenet_ts"], [], ["coincide: lenet = lenet_ts"], []]  # accuracy and ECE panels


def test_a_run_folder_under_other_key_names_is_a_clear_error(tmp_path):
    """A folder whose arrays use names the report no longer reads (an older bayesrobust wrote it) gets a
    RunError naming the section and the key, not a KeyError from deep inside a section."""
    from bayesrobust.errors import RunError
    from bayesrobust.report import build_report
    from bayesrobust.runs import RunDir

    run = RunDir.create(tmp_path / "run")
    run.write_json("arrays/evaluation.json", {"models": ["m"], "shifted": ["digits"], "unlabelled": [], "samples": 2,
                                              "test": "mnist-5k", "rotations": [], "translations": [], "shift_examples": 0})
    run.save_arrays("arrays/evaluation.npz", **{"test/labels": np.zeros(3), "test/m/entropy": np.zeros(3),
                                                "test/m/mutual_information": np.zeros(3), "shift/digits/m/entropy": np.zeros(3)})
    run.update_metrics({"clean/m/acc": 1.0})
    with pytest.raises(RunError, match="section 'evaluation' needs 'shifted/digits/m/entropy'.*other key names"):
        build_report(run)
