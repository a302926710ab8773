"""What a study found, as data: the front as rows (table, CSV, JSON), the hypervolume after every
trial, and a summary. The CLI tables, MLflow and export all report through these functions.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Collection, Mapping, Sequence

from runners.errors import ConfigError
from runners.spec import TrialConfig
from search.pareto import hypervolume, is_feasible
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


def personalizes(config: Mapping[str, Any]) -> bool | None:
    """Whether a trial's flat configuration gives users parameters (LoRA memory or shared
    pieces); None for a configuration that is not a trial's (a black-box study's)."""
    try:
        parsed = TrialConfig.from_flat(config)
    except ConfigError:
        return None
    return parsed.has_memory or parsed.uses_pool


def beyond_retrieval(study: Study) -> dict[int, list[str]]:
    """Front trials with PEFT (memory or shared pieces) that no trial without one matches.

    A PEFT trial counts when, against every completed trial without PEFT (retrieval only, or
    nothing), it is above on some maximised objective by more than the two trials' combined
    standard error (``sqrt(se_a^2 + se_b^2)``, from the ``<metric>_se`` both carry).

    Returns:
        Front trial number -> the objectives on which it is beyond every such trial (empty list:
        within the noise of one of them); trials without PEFT are left out. Empty when the study
        has no completed trial without PEFT.
    """
    maximised = [m for m, d in study.space.objectives.items() if d == "max"]
    kinds = {t.number: personalizes(t.config) for t in study.completed()}
    if None in kinds.values():
        return {}
    others = [t for t in study.completed() if not kinds[t.number]]
    if not others:
        return {}
    out = {}
    for trial in study.pareto_trials():
        if kinds.get(trial.number):
            out[trial.number] = [m for m in maximised if all(_above(trial, o, m) for o in others)]
    return out


def _above(a, b, metric: str) -> bool:
    """``a``'s ``metric`` exceeds ``b``'s by more than their combined standard error."""
    va, vb = a.values.get(metric), b.values.get(metric)
    if va is None or vb is None:
        return False
    se = (a.values.get(f"{metric}_se") or 0.0) ** 2 + (b.values.get(f"{metric}_se") or 0.0) ** 2
    return va - vb > se ** 0.5


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
    return {n: hv for n, (hv, _) in hypervolume_curves(study, numbers).items()}


def hypervolume_fraction_curve(study: Study, numbers: Collection[int] | None = None) -> dict[int, float]:
    """:func:`normalized_hypervolume` after each finished trial, keyed by trial number.

    Each value uses only the trials numbered up to that one (their front and their best values),
    so unlike the raw curve it can dip: a trial that reaches a new best value in one objective
    enlarges the box before the front fills it.
    """
    return {n: fraction for n, (_, fraction) in hypervolume_curves(study, numbers).items()}


def hypervolume_curves(study: Study, numbers: Collection[int] | None = None) -> dict[int, tuple[float, float]]:
    """``(hypervolume, fraction of the reference box)`` after each finished trial (both curves in one pass)."""
    space, curve, done, ref = study.space, {}, [], study.reference_point()
    for trial in study.trials:
        if trial.state is TrialState.COMPLETED:
            done.append(trial.values)
        wanted = numbers is None or trial.number in numbers
        if wanted and trial.state in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED):
            hv = hypervolume(done, space.objectives, ref, space.parsed_constraints)
            curve[trial.number] = (hv, _fraction(hv, reference_box(done, space.objectives, ref,
                                                                     space.parsed_constraints)))
    return curve


def reference_box(values: Sequence[Mapping[str, float] | None], objectives: Mapping[str, str],
                  ref: Mapping[str, float] | None, constraints: Sequence = ()) -> float:
    """Volume of the box between the reference point and the ideal point (raw units).

    The ideal point holds the best value of each objective over the feasible points; an objective
    whose best value does not beat the reference point gives an empty box (0).
    """
    feasible = [v for v in values if is_feasible(v, objectives, constraints)]
    if ref is None or not feasible:
        return 0.0
    volume = 1.0
    for metric, direction in objectives.items():
        best = (max if direction == "max" else min)(float(v[metric]) for v in feasible)
        volume *= max(0.0, (best - ref[metric]) if direction == "max" else (ref[metric] - best))
    return volume


def _fraction(hv: float, box: float) -> float:
    return min(1.0, hv / box) if box > 0 else 0.0


def normalized_hypervolume(study: Study, best_known: float | None = None) -> float:
    """The front's hypervolume as a fraction in [0, 1] that reads the same whatever the units.

    Without ``best_known``: the fraction of the reference box, the box between the study's
    reference point and the ideal point (the best value reached in each objective by a feasible
    trial). 1 means one trial is best in every objective; 0.5 means the front covers half of what
    the best values found would allow. With ``best_known`` (the best hypervolume known for the
    problem, e.g. a benchmark's exact maximum, in the same raw units and reference point):
    the fraction of it.

    Returns:
        0.0 before any feasible trial.
    """
    hv = study.hypervolume()
    if best_known is not None:
        return hv / best_known if best_known > 0 else 0.0
    values = [t.values for t in study.completed()]
    return _fraction(hv, reference_box(values, study.space.objectives, study.reference_point(),
                                       study.space.parsed_constraints))


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
        "hypervolume_fraction": normalized_hypervolume(study),
        "reference_point": study.reference_point(),
        "mlflow": dict(record or {}),
    }
