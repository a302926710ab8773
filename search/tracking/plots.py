"""Pictures of a study's front: pairwise Pareto scatter plots, a 3-D view (PNG, and interactive
HTML) and the hypervolume curve.

Every PNG is titled after its file (``pareto_<a>_vs_<b>.png`` is "Pareto front: <a> vs <b>", with
``a`` on the vertical axis) and carries that title in its PNG metadata. Byte metrics
(``storage_bytes``) are drawn in B, KB or MB, whichever reads best. Front trials are labelled with
their number, placed where no label or marker is covered (a label that finds no free place is
left out rather than drawn over another); front trials evaluated on the test queries also show
their test point (hollow square) joined to the validation point.

Matplotlib is used through ``Figure`` and the Agg canvas directly, so no global backend or
pyplot state is touched. Plotly writes the HTML with plotly.js inlined, so the file opens offline
(MLflow's artifact preview runs HTML in a sandboxed frame where plotly does not draw: the 3-D PNG
is what the preview shows).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#7f7f7f"
DOMINATED_ALPHA = 0.3
TEST_MARKER = "s"
_UNITS = ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1.0, "B"))
_LABEL_RADII = (5, 10, 16, 24, 34)  # offsets of a label from its point, in points
_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
_MARKER_PX = 4.0  # half the size of a marker, for label collisions
_LABEL_GAP_PX = 1.0  # the least space between two labels (or a label and an obstacle), in display pixels


@dataclass(frozen=True)
class Point:
    """One completed trial in objective space.

    Attributes:
        number: the trial number.
        values: raw validation metric values (at least every objective).
        front: whether the trial is on the Pareto front.
        test: raw test values (front trials evaluated on the test queries; else empty).
    """

    number: int
    values: Mapping[str, float]
    front: bool
    test: Mapping[str, float] = field(default_factory=dict)


def study_points(study) -> list[Point]:
    """The completed trials of a study as plot points, front membership and test values marked."""
    front = {t.number for t in study.pareto_trials()}
    return [Point(t.number, dict(t.values), t.number in front, dict(t.test_values)) for t in study.completed()]


# --------------------------------------------------------------------------- units and labels
def unit_scale(metric: str, values: Sequence[float]) -> tuple[float, str]:
    """``(divisor, unit)`` to show a metric in: bytes as B/KB/MB/GB (decimal), others unchanged."""
    if not metric.endswith("_bytes"):
        return 1.0, ""
    top = max((abs(v) for v in values), default=0.0)
    return next(((d, u) for d, u in _UNITS if top >= d), (1.0, "B"))


def axis_label(metric: str, objectives: Mapping[str, str], unit: str = "") -> str:
    """``storage (MB, lower is better)``, ``rougeL (higher is better)``."""
    name = metric[: -len("_bytes")] if metric.endswith("_bytes") and unit else metric
    arrow = {"max": "higher is better", "min": "lower is better"}.get(objectives.get(metric, ""), "")
    inside = ", ".join(p for p in (unit, arrow) if p)
    return f"{name} ({inside})" if inside else name


def pair_title(y: str, x: str) -> str:
    """The title of ``pareto_<y>_vs_<x>.png``."""
    return f"Pareto front: {y} vs {x}"


def _scaled(points: Sequence[Point], metric: str) -> tuple[float, str]:
    values = [p.values[metric] for p in points] + [p.test[metric] for p in points if metric in p.test]
    return unit_scale(metric, values)


def _overlaps(box, others) -> bool:
    pad = _LABEL_GAP_PX
    return any(box.x0 - pad < o.x1 and o.x0 < box.x1 + pad and box.y0 - pad < o.y1 and o.y0 < box.y1 + pad
               for o in others)


def place_labels(ax, anchors: Sequence[tuple[float, float, str]], markers: Sequence[tuple[float, float]],
                 avoid: Sequence = ()) -> list:
    """Annotate ``anchors`` (data x, data y, text) so that no label covers another label, a marker
    or one of the ``avoid`` boxes (display space, e.g. the legend).

    Candidates run outwards from each point (8 directions at growing distances, with a thin leader
    line beyond the nearest ring); the first free one inside the axes is kept. Call it once the
    figure's layout is final (positions are in display space).

    Returns:
        The placed annotations (a point whose label found no free place gets none).
    """
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    to_px = ax.transData.transform
    obstacles = list(avoid)
    for x, y in markers:
        px, py = to_px((x, y))
        obstacles.append(Bbox.from_extents(px - _MARKER_PX, py - _MARKER_PX, px + _MARKER_PX, py + _MARKER_PX))
    placed, boxes = [], []
    for x, y, text in anchors:
        for radius, (dx, dy) in itertools.product(_LABEL_RADII, _DIRECTIONS):
            ha = "left" if dx > 0 else "right" if dx < 0 else "center"
            va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
            leader = {"arrowstyle": "-", "lw": 0.5, "color": "#555555", "shrinkA": 0, "shrinkB": 2}
            note = ax.annotate(text, (x, y), xytext=(dx * radius, dy * radius), textcoords="offset points",
                               fontsize=7, ha=ha, va=va, arrowprops=leader if radius > _LABEL_RADII[0] else None)
            note.update_positions(renderer)
            box = Text.get_window_extent(note, renderer)
            inside = (box.x0 >= frame.x0 and box.x1 <= frame.x1 and box.y0 >= frame.y0 and box.y1 <= frame.y1)
            if inside and not _overlaps(box, boxes) and not _overlaps(box, obstacles):
                placed.append(note)
                boxes.append(box)
                break
            note.remove()
    return placed


# --------------------------------------------------------------------------- pairwise plots
def pareto_figure(points: Sequence[Point], y: str, x: str, objectives: Mapping[str, str]):
    """The scatter plot of ``y`` against ``x``: front in color (validation filled, test hollow,
    joined), dominated trials faded, front trials labelled with their numbers.

    Returns:
        A matplotlib ``Figure`` on an Agg canvas (``fig.savefig`` writes it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    (sx, ux), (sy, uy) = _scaled(points, x), _scaled(points, y)
    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    front = sorted((p for p in points if p.front), key=lambda p: (p.values[x], p.values[y]))
    dominated = [p for p in points if not p.front]
    tested = [p for p in front if x in p.test and y in p.test]
    if dominated:
        ax.scatter([p.values[x] / sx for p in dominated], [p.values[y] / sy for p in dominated], s=22,
                   c=DOMINATED_COLOR, alpha=DOMINATED_ALPHA, edgecolors="none", label=f"dominated ({len(dominated)})")
    ax.scatter([p.values[x] / sx for p in front], [p.values[y] / sy for p in front], s=30, c=FRONT_COLOR,
               edgecolors="none", label=f"Pareto front, validation ({len(front)})", zorder=3)
    if tested:
        for p in tested:
            ax.plot([p.values[x] / sx, p.test[x] / sx], [p.values[y] / sy, p.test[y] / sy], ls=":", lw=0.8,
                    color=FRONT_COLOR, zorder=2)
        ax.scatter([p.test[x] / sx for p in tested], [p.test[y] / sy for p in tested], s=30, marker=TEST_MARKER,
                   facecolors="none", edgecolors=FRONT_COLOR, linewidths=1.0, zorder=3,
                   label=f"Pareto front, test ({len(tested)})")
    ax.set_xlabel(axis_label(x, objectives, ux))
    ax.set_ylabel(axis_label(y, objectives, uy))
    ax.set_title(pair_title(y, x))
    ax.margins(0.12)
    ax.legend(loc="best", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    fig.canvas.draw()
    markers = [(p.values[x] / sx, p.values[y] / sy) for p in points]
    markers += [(p.test[x] / sx, p.test[y] / sy) for p in tested]
    legend = ax.get_legend()
    avoid = [legend.get_window_extent(fig.canvas.get_renderer())] if legend is not None else []
    place_labels(ax, [(p.values[x] / sx, p.values[y] / sy, str(p.number)) for p in front], markers, avoid)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    title = fig.axes[0].get_title() if fig.axes else ""
    fig.savefig(path, metadata={"Title": title})
    return path


def pairwise_pngs(points: Sequence[Point], objectives: Mapping[str, str], out_dir: str | Path) -> list[Path]:
    """One scatter plot per pair of objectives (:func:`pareto_figure`).

    Args:
        points: completed trials.
        objectives: metric -> ``max``/``min``.
        out_dir: where ``pareto_<a>_vs_<b>.png`` files are written (created if missing); ``a``
            (the earlier objective) is on the vertical axis.

    Returns:
        The written paths, one per pair (none with a single objective).
    """
    out = Path(out_dir)
    return [_save(pareto_figure(points, a, b, objectives), out / f"pareto_{a}_vs_{b}.png")
            for a, b in itertools.combinations(list(objectives), 2)]


def pareto_3d_png(points: Sequence[Point], objectives: Mapping[str, str], path: str | Path) -> Path:
    """A static 3-D view of the first three objectives (what MLflow's artifact preview shows).

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the 3d projection)

    names = list(objectives)[:3]
    scales = [_scaled(points, m) for m in names]
    fig = Figure(figsize=(6.4, 5.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(projection="3d")

    def coords(chosen, attr="values"):
        return [[getattr(p, attr)[m] / s for p in chosen] for m, (s, _) in zip(names, scales)]

    dominated = [p for p in points if not p.front]
    front = [p for p in points if p.front]
    tested = [p for p in front if all(m in p.test for m in names)]
    if dominated:
        ax.scatter(*coords(dominated), s=14, c=DOMINATED_COLOR, alpha=DOMINATED_ALPHA, depthshade=False,
                   label=f"dominated ({len(dominated)})")
    ax.scatter(*coords(front), s=24, c=FRONT_COLOR, depthshade=False,
               label=f"Pareto front, validation ({len(front)})")
    if tested:
        ax.scatter(*coords(tested, "test"), s=24, marker=TEST_MARKER, facecolors="none", edgecolors=FRONT_COLOR,
                   depthshade=False, label=f"Pareto front, test ({len(tested)})")
    ax.set_xlabel(axis_label(names[0], objectives, scales[0][1]), fontsize=8)
    ax.set_ylabel(axis_label(names[1], objectives, scales[1][1]), fontsize=8)
    ax.set_zlabel(axis_label(names[2], objectives, scales[2][1]), fontsize=8)
    ax.set_title(f"Pareto front 3-D: {' vs '.join(names)}")
    legend = ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    kept = [legend.get_window_extent(renderer)]
    for p in front:  # a label that would cover another one (or the legend) is left out
        label = ax.text(*(c[0] for c in coords([p])), f" {p.number}", fontsize=7)
        box = label.get_window_extent(renderer)
        if _overlaps(box, kept):
            label.remove()
        else:
            kept.append(box)
    return _save(fig, Path(path))


def interactive_html(points: Sequence[Point], objectives: Mapping[str, str], path: str | Path,
                     title: str = "Pareto front") -> Path:
    """An interactive plot of the first three objectives (2-D when there are only two).

    The file embeds plotly.js (``include_plotlyjs=True``), so it works without a network.
    Hovering a point shows its trial number and every objective (validation and test).

    Returns:
        The written path.
    """
    import plotly.graph_objects as go

    names = list(objectives)[:3]
    scales = {m: _scaled(points, m) for m in names}
    labels = [axis_label(m, objectives, scales[m][1]) for m in names]
    fig = go.Figure()

    def hover(p: Point) -> str:
        rows = [f"{m}={p.values[m]:.6g}" + (f" (test {p.test[m]:.6g})" if m in p.test else "") for m in objectives]
        return f"trial {p.number}<br>" + "<br>".join(rows)

    front = [p for p in points if p.front]
    groups = [([p for p in points if not p.front], "values", "dominated",
               {"color": DOMINATED_COLOR, "opacity": 0.35}),
              (front, "values", "Pareto front, validation", {"color": FRONT_COLOR, "opacity": 1.0}),
              ([p for p in front if all(m in p.test for m in names)], "test", "Pareto front, test",
               {"color": FRONT_COLOR, "symbol": "square-open", "opacity": 1.0})]
    for chosen, attr, label, marker in groups:
        axes = [[getattr(p, attr)[m] / scales[m][0] for p in chosen] for m in names]
        marker = {**marker, "size": 5 if len(names) == 3 else 9}
        text = [hover(p) for p in chosen]
        if len(names) == 3:
            fig.add_trace(go.Scatter3d(x=axes[0], y=axes[1], z=axes[2], mode="markers", name=label,
                                       marker=marker, text=text, hoverinfo="text"))
        else:
            fig.add_trace(go.Scatter(x=axes[0], y=axes[1] if len(names) > 1 else [0] * len(chosen),
                                     mode="markers", name=label, marker=marker, text=text, hoverinfo="text"))
    if len(names) == 3:
        fig.update_layout(scene={"xaxis_title": labels[0], "yaxis_title": labels[1], "zaxis_title": labels[2]})
    else:
        fig.update_layout(xaxis_title=labels[0], yaxis_title=labels[1] if len(labels) > 1 else "")
    fig.update_layout(title=title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(out), include_plotlyjs=True, full_html=True, default_height="90vh")
    return out


def hypervolume_png(steps: Sequence[int], values: Sequence[float], path: str | Path,
                    raw: Sequence[float] | None = None) -> Path:
    """The hypervolume after each finished trial, as a share of the study's normalisation box (a step plot).

    Args:
        steps: trial numbers.
        values: the share of the box (reference point to ideal point) covered after each of them.
        path: the PNG to write.
        raw: the raw hypervolume at the same steps (its last value goes in the title).

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(list(steps), list(values), where="post", color=FRONT_COLOR)
    ax.plot(list(steps), list(values), "o", color=FRONT_COLOR, markersize=3)
    ax.set_xlabel("trial")
    ax.set_ylabel("HV: share of the box")
    top = max(values, default=0.0)
    ax.set_ylim(0, 1.05 if top > 0.5 else max(top * 1.25, 1e-3))
    ax.set_title(f"HV {values[-1]:.3f} of the box from the reference point to the ideal point" if values
                 else "hypervolume")
    fig.tight_layout()
    return _save(fig, Path(path))


def importance_png(rows: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "") -> Path:
    """Parameter importances as horizontal bars, one panel per objective (and the front).

    Args:
        rows: column (objective or ``front``) -> {row: importance}.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = list(rows)
    names = list(next(iter(rows.values()), {}))
    fig = Figure(figsize=(3.2 * max(len(columns), 1) + 1.6, 0.32 * max(len(names), 1) + 1.4), dpi=100)
    FigureCanvasAgg(fig)
    for i, column in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), i + 1)
        values = [rows[column].get(n, 0.0) for n in names]
        ax.barh(range(len(names)), values, color=FRONT_COLOR)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if i == 0 else [""] * len(names), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, max(1e-9, max(values, default=0.0)) * 1.15)
        ax.set_title(column, fontsize=9)
    fig.suptitle(title or "parameter importance", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))
