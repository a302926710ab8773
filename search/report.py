"""What a study found, as data: the front as rows (table, CSV, JSON), the hypervolume after every
trial, and a summary. The CLI tables, MLflow and export all report through these functions.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Collection, Mapping, Sequence

from search.pareto import hypervolume
from search.space import mask_string
from search.study import Study, TrialState


def front_rows(study: Study) -> list[dict[str, Any]]:
    """The front's trials as flat rows: number, knee flag, validation and test objectives,
    the configuration (layer masks as ``0110...``) and the MLflow run id."""
    knee = study.knee_trial()
    rows = []
    for t in sorted(study.pareto_trials(), key=lambda t: t.number):
        row: dict[str, Any] = {"trial": t.number, "knee": knee is not None and knee.number == t.number}
        row.update({m: t.values.get(m) for m in study.space.objectives})
        row.update({f"test_{m}": t.test_values.get(m) for m in study.space.objectives})
        row.update({k: _flat(v) for k, v in t.config.items()})
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        rows.append(row)
    return rows


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text (columns in first-seen order; missing values empty)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def front_text(study: Study) -> str:
    """The front as indented lines, for error messages."""
    rows = front_rows(study)
    if not rows:
        return "  (the front is empty: no completed feasible trial)"
    objectives = list(study.space.objectives)
    return "\n".join(
        f"  trial {r['trial']}{' (knee)' if r['knee'] else ''}: "
        + ", ".join(f"{m}={r[m]:.6g}" for m in objectives if r[m] is not None) for r in rows
    )


def _flat(value: Any) -> Any:
    return mask_string(value) if isinstance(value, (list, tuple)) else value


def hypervolume_curve(study: Study, numbers: Collection[int] | None = None) -> dict[int, float]:
    """Hypervolume of the front after each finished trial, keyed by trial number.

    Each value uses only the trials numbered up to that one, and the study's fixed reference
    point (:meth:`Study.reference_point`), so the curve never decreases.

    Args:
        study: the study.
        numbers: compute only these trial numbers (default every finished trial).
    """
    space, curve, done, ref = study.space, {}, [], study.reference_point()
    for trial in study.trials:
        if trial.state is TrialState.COMPLETED:
            done.append(trial.values)
        wanted = numbers is None or trial.number in numbers
        if wanted and trial.state in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED):
            curve[trial.number] = hypervolume(done, space.objectives, ref, space.parsed_constraints)
    return curve


def study_summary(study: Study, record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A JSON-ready summary of a study: counts, front, knee, hypervolume, tracking record."""
    knee = study.knee_trial()
    states = [t.state.value for t in study.trials]
    return {
        "study": study.name,
        "directory": str(study.directory.resolve()),
        "space": study.space.source,
        "overrides": list(study.space.overrides),
        "optimizer": study.space.optimizer.model_dump(mode="json"),
        "objectives": dict(study.space.objectives),
        "constraints": list(study.space.constraints),
        "model": study.space.model.name,
        "trials": {s.value: states.count(s.value) for s in TrialState},
        "front": sorted(t.number for t in study.pareto_trials()),
        "knee": None if knee is None else knee.number,
        "hypervolume": study.hypervolume(),
        "mlflow": dict(record or {}),
    }
