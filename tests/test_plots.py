"""The study plots: readable units, labels that do not overlap, validation and test points, titles
that match the files, a 3-D view MLflow can preview, and the hypervolume as a fraction."""

from __future__ import annotations

import itertools

import pytest

from search.tracking.plots import (
    Point,
    axis_label,
    hypervolume_png,
    pairwise_pngs,
    pareto_3d_png,
    pareto_figure,
    unit_scale,
)

OBJECTIVES = {"rougeL": "max", "persona_f1": "max", "storage_bytes": "min"}


def crowded_points() -> list[Point]:
    """40 dominated trials spread out, and a front of 15 trials packed in a small corner, half of
    them with test values."""
    points = [Point(i, {"rougeL": 0.01 * (i % 23), "persona_f1": float(i % 17), "storage_bytes": 1.0e5 * i},
                    False) for i in range(40)]
    for j in range(15):
        t = j / 15
        values = {"rougeL": 0.30 + 0.01 * t, "persona_f1": 20 + t, "storage_bytes": 3.0e6 + 1.0e5 * t}
        test = {"rougeL": 0.29 + 0.01 * t, "persona_f1": 19 + t, "storage_bytes": 3.0e6 + 1.0e5 * t} if j % 2 else {}
        points.append(Point(40 + j, values, True, test))
    return points


def test_bytes_are_drawn_in_kb_or_mb():
    assert unit_scale("storage_bytes", [3.2e6, 10.0]) == (1e6, "MB")
    assert unit_scale("storage_bytes", [16032.0]) == (1e3, "KB")
    assert unit_scale("storage_bytes", [512.0]) == (1.0, "B")
    assert unit_scale("rougeL", [0.3]) == (1.0, "")
    assert axis_label("storage_bytes", OBJECTIVES, "MB") == "storage (MB, lower is better)"
    assert axis_label("rougeL", OBJECTIVES) == "rougeL (higher is better)"

    fig = pareto_figure(crowded_points(), "rougeL", "storage_bytes", OBJECTIVES)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "storage (MB, lower is better)"
    assert ax.get_xlim()[1] < 10, "storage is plotted in MB, not in raw bytes"


def test_front_labels_never_overlap_each_other_or_markers():
    from matplotlib.text import Text

    fig = pareto_figure(crowded_points(), "rougeL", "storage_bytes", OBJECTIVES)
    renderer = fig.canvas.get_renderer()
    labels = fig.axes[0].texts
    assert len(labels) >= 12, "a crowded front still gets most of its labels (with leader lines)"
    assert {t.get_text() for t in labels} <= {str(n) for n in range(40, 55)}, "only front trials are labelled"
    boxes = [Text.get_window_extent(t, renderer) for t in labels]
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    frame = fig.axes[0].get_window_extent(renderer)
    assert all(frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1) for b in boxes)


def test_validation_and_test_points_are_both_marked():
    fig = pareto_figure(crowded_points(), "rougeL", "persona_f1", OBJECTIVES)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["dominated (40)", "Pareto front, validation (15)", "Pareto front, test (7)"]
    hollow = fig.axes[0].collections[-1]
    assert len(hollow.get_offsets()) == 7 and not hollow.get_facecolors().any(), "test points are hollow squares"


def test_titles_match_the_file_names_and_3d_renders_as_png(tmp_path):
    from PIL import Image

    points = crowded_points()
    files = pairwise_pngs(points, OBJECTIVES, tmp_path)
    assert [f.name for f in files] == ["pareto_rougeL_vs_persona_f1.png", "pareto_rougeL_vs_storage_bytes.png",
                                       "pareto_persona_f1_vs_storage_bytes.png"]
    for f in files:
        a, b = f.stem[len("pareto_"):].split("_vs_")
        assert Image.open(f).text["Title"] == f"Pareto front: {a} vs {b}"
    cube = pareto_3d_png(points, OBJECTIVES, tmp_path / "pareto_3d.png")
    with Image.open(cube) as image:
        assert image.format == "PNG" and image.size == (640, 560)
        assert image.text["Title"] == "Pareto front 3-D: rougeL vs persona_f1 vs storage_bytes"
    curve = hypervolume_png([0, 1, 2], [0.2, 0.5, 0.5], tmp_path / "hypervolume.png", raw=[1.0, 2.5, 2.5])
    assert Image.open(curve).text["Title"] == "HV 0.500 of the box from the reference point to the ideal point"


@pytest.mark.parametrize("n", [1, 3])
def test_small_fronts_plot(tmp_path, n):
    points = [Point(i, {"rougeL": 0.1 * i, "persona_f1": 1.0 * i, "storage_bytes": 1e4 * i}, True) for i in range(n)]
    assert len(pairwise_pngs(points, OBJECTIVES, tmp_path)) == 3
    assert pareto_3d_png(points, OBJECTIVES, tmp_path / "p.png").stat().st_size > 10_000
