"""The files of a study's parent run: ``space.yaml``, ``summary.json``, ``pareto/front.csv`` and
``pareto/front.json``, the plots (:mod:`search.tracking.plots`: ``plots/pareto_<a>_vs_<b>.png``,
``plots/pareto_3d.png``, ``plots/hypervolume.png``, at the end ``plots/pareto_3d.html``) and, at the end
of a study with enough trials, ``importance.json`` and ``plots/importance.png``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from search.results.importance import MIN_TRIALS, compute, usable
from search.results.report import front_rows, hypervolume_curves, rows_to_csv, study_summary
from search.study.study import Study, dump_yaml


def write_study_artifacts(study: Study, out: Path, record: Mapping[str, Any] | None = None,
                          interactive: bool = True,
                          curves: Mapping[int, tuple[float, float]] | None = None, plots: bool = True) -> list[Path]:
    """Write the parent run's artifacts into ``out``: space, summary, front table, plots.

    Args:
        study: the study.
        out: the directory to write into.
        record: the study's ``mlflow.json`` (goes into the summary).
        interactive: also write ``plots/pareto_3d.html`` (plotly inlined, 4-5 MB).
        curves: the hypervolume curves already computed (:func:`hypervolume_curves`); default:
            computed here, one hypervolume per finished trial.
        plots: write the plots (else the space, the summary and the front only).

    Returns:
        The written files.
    """

    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto").mkdir(exist_ok=True)
    files = [out / "space.yaml", out / "summary.json", out / "pareto" / "front.csv", out / "pareto" / "front.json"]
    files[0].write_text(study.space.text or dump_yaml(study.space), encoding="utf-8")
    files[1].write_text(json.dumps(study_summary(study, record), indent=1, default=str), encoding="utf-8")
    rows = front_rows(study)
    files[2].write_text(rows_to_csv(rows), encoding="utf-8")
    files[3].write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    return files + (_write_plots(study, out, interactive, curves) if plots else [])


def _write_plots(study: Study, out: Path, interactive: bool,
                 curves: Mapping[int, tuple[float, float]] | None) -> list[Path]:
    from search.tracking import plots  # matplotlib and plotly: only when plots are written

    files: list[Path] = []
    points = plots.study_points(study)
    objectives = study.space.objectives
    if points:
        files += plots.pairwise_pngs(points, objectives, out / "plots")
        if len(objectives) >= 3:
            files.append(plots.pareto_3d_png(points, objectives, out / "plots" / "pareto_3d.png"))
        if interactive:
            files.append(plots.interactive_html(points, objectives, out / "plots" / "pareto_3d.html",
                                                title=f"Pareto front of {study.name}"))
    if interactive:  # the study's end: which parameters drove each objective (search.results.importance)
        files += _importance_artifacts(study, out)
    curves = dict(curves) if curves is not None else hypervolume_curves(study)
    if curves:
        steps = sorted(curves)
        files.append(plots.hypervolume_png(steps, [curves[n][1] for n in steps], out / "plots" / "hypervolume.png",
                                           raw=[curves[n][0] for n in steps]))
    return files


def _importance_artifacts(study: Study, out: Path) -> list[Path]:
    """``importance.json`` and ``plots/importance.png`` once the study has enough trials (else none)."""
    from search.tracking import plots  # matplotlib: only when artifacts are written

    if len(usable(study)) < MIN_TRIALS:
        return []
    found = compute(study)
    (out / "importance.json").write_text(json.dumps(found.to_json(), indent=1), encoding="utf-8")
    (out / "plots").mkdir(exist_ok=True)
    png = plots.importance_png(found.groups, out / "plots" / "importance.png",
                               title=f"parameter importance in {study.name} ({found.trials} trials)")
    return [out / "importance.json", png]


@dataclass
class ArtifactClock:
    """When the parent run's plots were last written and what that cost (seconds), shared by the
    trackers of a per-user study (:meth:`search.tracking.tracker.Tracker.share`).

    With a budget ``b`` (the share of wall time plots may take), after a write that took ``c``
    seconds the next is due ``c * (1 - b) / b`` seconds later.
    """

    cost: float | None = None
    done: float = 0.0

    def due(self, budget: float) -> bool:
        """True when plots may be written now."""
        if budget <= 0:
            return False
        return self.cost is None or time.monotonic() - self.done >= self.cost * (1.0 - budget) / budget

    def spent(self, started: float) -> None:
        """A write that began at ``started`` (``time.monotonic()``) ended now."""
        self.done = time.monotonic()
        self.cost = self.done - started
