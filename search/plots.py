"""Pictures of a study's front: pairwise Pareto scatter plots (PNG), an interactive 3-D plot
(self-contained HTML) and the hypervolume curve (PNG).

Matplotlib is used through ``Figure`` and the Agg canvas directly, so no global backend or
pyplot state is touched; plotly writes HTML with plotly.js inlined, so the file opens offline.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

FRONT_COLOR = "#d62728"
DOMINATED_COLOR = "#7f7f7f"
DOMINATED_ALPHA = 0.3


@dataclass(frozen=True)
class Point:
    """One completed trial in objective space.

    Attributes:
        number: the trial number.
        values: raw metric values (at least every objective).
        front: whether the trial is on the Pareto front.
    """

    number: int
    values: Mapping[str, float]
    front: bool


def study_points(study) -> list[Point]:
    """The completed trials of a study as plot points, front membership marked."""
    front = {t.number for t in study.pareto_trials()}
    return [Point(t.number, dict(t.values), t.number in front) for t in study.completed()]


def _label(metric: str, objectives: Mapping[str, str]) -> str:
    arrow = {"max": "higher is better", "min": "lower is better"}.get(objectives.get(metric, ""), "")
    return f"{metric} ({arrow})" if arrow else metric


def pairwise_pngs(points: Sequence[Point], objectives: Mapping[str, str], out_dir: str | Path) -> list[Path]:
    """One scatter plot per pair of objectives: front in color, dominated points faded.

    Args:
        points: completed trials.
        objectives: metric -> ``max``/``min``.
        out_dir: where ``pareto_<a>_vs_<b>.png`` files are written (created if missing).

    Returns:
        The written paths, one per pair (none with a single objective).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for x, y in itertools.combinations(list(objectives), 2):
        fig = Figure(figsize=(5.5, 4.2), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        for front, color, alpha, label in ((False, DOMINATED_COLOR, DOMINATED_ALPHA, "dominated"),
                                          (True, FRONT_COLOR, 1.0, "Pareto front")):
            chosen = [p for p in points if p.front is front]
            ax.scatter([p.values[x] for p in chosen], [p.values[y] for p in chosen],
                       c=color, alpha=alpha, label=f"{label} ({len(chosen)})", edgecolors="none")
            if front:
                for p in chosen:
                    ax.annotate(str(p.number), (p.values[x], p.values[y]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(_label(x, objectives))
        ax.set_ylabel(_label(y, objectives))
        ax.set_title(f"{y} vs {x}")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out / f"pareto_{x}_vs_{y}.png"
        fig.savefig(path)
        written.append(path)
    return written


def interactive_html(points: Sequence[Point], objectives: Mapping[str, str], path: str | Path,
                     title: str = "Pareto front") -> Path:
    """An interactive plot of the first three objectives (2-D when there are only two).

    The file embeds plotly.js (``include_plotlyjs=True``), so it works without a network.
    Hovering a point shows its trial number and every objective.

    Returns:
        The written path.
    """
    import plotly.graph_objects as go

    names = list(objectives)[:3]
    fig = go.Figure()
    for front, color, opacity, label in ((False, DOMINATED_COLOR, 0.35, "dominated"),
                                         (True, FRONT_COLOR, 1.0, "Pareto front")):
        chosen = [p for p in points if p.front is front]
        axes = [[p.values[m] for p in chosen] for m in names]
        hover = ["trial " + str(p.number) + "<br>" + "<br>".join(f"{m}={p.values[m]:.6g}" for m in objectives)
                 for p in chosen]
        marker = {"color": color, "opacity": opacity, "size": 5 if len(names) == 3 else 9}
        if len(names) == 3:
            fig.add_trace(go.Scatter3d(x=axes[0], y=axes[1], z=axes[2], mode="markers", name=label,
                                       marker=marker, text=hover, hoverinfo="text"))
        else:
            fig.add_trace(go.Scatter(x=axes[0], y=axes[1] if len(names) > 1 else [0] * len(chosen),
                                     mode="markers", name=label, marker=marker, text=hover, hoverinfo="text"))
    labels = [_label(m, objectives) for m in names]
    if len(names) == 3:
        fig.update_layout(scene={"xaxis_title": labels[0], "yaxis_title": labels[1], "zaxis_title": labels[2]})
    else:
        fig.update_layout(xaxis_title=labels[0], yaxis_title=labels[1] if len(labels) > 1 else "")
    fig.update_layout(title=title)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(str(out), include_plotlyjs=True, full_html=True)
    return out


def hypervolume_png(steps: Sequence[int], values: Sequence[float], path: str | Path) -> Path:
    """The hypervolume after each finished trial (a step plot).

    Returns:
        The written path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.step(list(steps), list(values), where="post", color=FRONT_COLOR)
    ax.plot(list(steps), list(values), "o", color=FRONT_COLOR, markersize=3)
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the front")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out
