"""What a study found, as data: the front as rows (table, CSV, JSON), the hypervolume after every
trial, and a summary. The CLI tables, MLflow and export all report through these functions.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Collection, Mapping, Sequence

from runners.errors import ConfigError
from runners.spec import TrialConfig
from runners.metrics import metric_bounds
from search.results.config_view import config_record
from search.pareto import box_volume, clipped_hypervolume, hypervolume, is_feasible
from search.study.study import Study, TrialState


def front_rows(study: Study) -> list[dict[str, Any]]:
    """The front's trials as flat rows: number, knee flag, validation and test objectives,
    the active configuration (:func:`search.results.config_view.config_record`: a layer mask as its index
    list and ``lora.n_layers``; parameters that did nothing left out) and the MLflow run id."""
    knee = study.knee_trial()
    rows = []
    for t in sorted(study.pareto_trials(), key=lambda t: t.number):
        row: dict[str, Any] = {"trial": t.number, "knee": knee is not None and knee.number == t.number}
        row.update({m: t.values.get(m) for m in study.space.objectives})
        row.update({f"test_{m}": t.test_values.get(m) for m in study.space.objectives})
        row.update(config_record(study.space, t.config))
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        rows.append(row)
    return rows


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text: a column missing from a row is empty, booleans are ``true``/``false``, lists
    are JSON (``[2, 12, 22]``). A column first seen in a later row goes after the column it follows
    there, so a parameter some rows leave out stays beside its neighbours."""
    columns = _columns(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: _csv_cell(v) for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every key of the rows, each new one after the key it follows in its row."""
    columns: list[str] = []
    for row in rows:
        previous = None
        for key in row:
            if key not in columns:
                columns.insert(columns.index(previous) + 1 if previous is not None else 0, key)
            previous = key
    return columns


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


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


def hypervolume_curve(study: Study) -> dict[int, float]:
    """Raw hypervolume of the front after each finished trial, keyed by trial number.

    Each value uses only the trials numbered up to that one, and the study's reference point
    (:meth:`Study.reference_point`, fixed once the quasi-random start is done), so the curve
    never decreases.
    """
    return {n: hv for n, (hv, _) in hypervolume_curves(study).items()}


def hypervolume_fraction_curve(study: Study) -> dict[int, float]:
    """:func:`normalized_hypervolume` after each finished trial, keyed by trial number.

    Every value is a share of one box, the study's fixed normalisation box (:func:`normalization`),
    so the curve never falls: adding a trial can only keep or raise it.
    """
    return {n: fraction for n, (_, fraction) in hypervolume_curves(study).items()}


def hypervolume_curves(study: Study, numbers: Collection[int] | None = None) -> dict[int, tuple[float, float]]:
    """``(hypervolume, fraction of the normalisation box)`` after each finished trial (both in one pass)."""
    space, curve, done = study.space, {}, []
    box = normalization(study)
    ref = box[0] if box else study.reference_point()
    for trial in study.trials:
        if trial.state is TrialState.COMPLETED:
            done.append(trial.values)
        wanted = numbers is None or trial.number in numbers
        if wanted and trial.state in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED):
            hv = hypervolume(done, space.objectives, ref, space.parsed_constraints)
            curve[trial.number] = (hv, _fraction(done, space, box))
    return curve


def normalization(study: Study) -> tuple[dict[str, float], dict[str, float]] | None:
    """The box every hypervolume fraction of the study is a share of: ``(reference point, ideal point)``.

    The reference point is the study's (:meth:`Study.reference_point`: the space's
    ``optimizer.ref_point``, else inferred from the quasi-random start and fixed from then on).
    The ideal point, per objective: the space's ``optimizer.ideal_point``, else the bound of the
    metric's range in the objective's direction when the runner knows it (ROUGE 1, Persona-F1 100,
    storage 0: ``runners.metrics.METRIC_BOUNDS``), else the best value of the start plus the
    start's own spread beyond it (a value past an ideal point counts as the ideal point). The box
    is fixed, so a fraction never falls when the front improves and reads the same across studies
    of one space. None before the reference point exists.
    """
    ref = study.reference_point()
    if ref is None:
        return None
    given = dict(study.space.optimizer.ideal_point or {})
    start = _start_values(study)
    ideal = {}
    for metric, direction in study.space.objectives.items():
        low, high = metric_bounds(metric)
        bound = high if direction == "max" else low
        if metric in given:
            ideal[metric] = float(given[metric])
        elif bound is not None:
            ideal[metric] = float(bound)
        else:
            ideal[metric] = _frozen_ideal(start, metric, direction, ref[metric])
    return ref, ideal


def _start_values(study: Study) -> list[Mapping[str, float]]:
    """The feasible values of the quasi-random start (as many trials as it takes to hold one)."""
    space = study.space
    finished = [t.values if t.state is TrialState.COMPLETED else None for t in study.finished()]
    end = max(space.optimizer.init_trials, 1)
    feasible = [i for i, v in enumerate(finished) if is_feasible(v, space.objectives, space.parsed_constraints)]
    if feasible:
        end = max(end, feasible[0] + 1)
    return [v for v in finished[:end] if is_feasible(v, space.objectives, space.parsed_constraints)]


def _frozen_ideal(start: Sequence[Mapping[str, float]], metric: str, direction: str, ref: float) -> float:
    sign = 1.0 if direction == "max" else -1.0
    best = max((sign * float(v[metric]) for v in start), default=sign * ref)
    room = max(best - sign * ref, 1e-12)
    return sign * (best + room)


def _fraction(values: Sequence[Mapping[str, float]], space, box) -> float:
    if box is None:
        return 0.0
    ref, ideal = box
    volume = box_volume(space.objectives, ref, ideal)
    if volume <= 0:
        return 0.0
    return min(1.0, clipped_hypervolume(values, space.objectives, ref, ideal, space.parsed_constraints) / volume)


def normalized_hypervolume(study: Study, best_known: float | None = None) -> float:
    """The front's hypervolume as a fraction in [0, 1] that reads the same whatever the units.

    Without ``best_known``: the share of the study's fixed normalisation box (:func:`normalization`)
    the front covers. With ``best_known`` (the best hypervolume known for the problem, e.g. a
    benchmark's exact maximum, in the same raw units and reference point): the fraction of it.

    Returns:
        0.0 before any feasible trial.
    """
    if best_known is not None:
        hv = study.hypervolume()
        return hv / best_known if best_known > 0 else 0.0
    return _fraction([t.values for t in study.completed()], study.space, normalization(study))


def reference_fixed(study: Study) -> bool:
    """True once the reference point can no longer move (given, or the start is done with a feasible trial)."""
    given = study.space.optimizer.ref_point or {}
    if all(m in given for m in study.space.objectives):
        return True
    space = study.space
    finished = study.finished()
    return len(finished) >= space.optimizer.init_trials and any(
        is_feasible(t.values if t.state is TrialState.COMPLETED else None, space.objectives, space.parsed_constraints)
        for t in finished)


def box_text(study: Study) -> str:
    """The normalisation box in words: ``rougeL 0.12..1, persona_f1 3.1..100, storage_bytes 2.4e+06..0``."""
    box = normalization(study)
    if box is None:
        return "no reference point yet"
    ref, ideal = box
    return ", ".join(f"{m} {ref[m]:.3g}..{ideal[m]:.3g}" for m in study.space.objectives)


def hv_text(study: Study) -> str:
    """``HV 0.873`` (the share of the normalisation box), for progress lines, tables and status."""
    return f"HV {normalized_hypervolume(study):.3f}"


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
        "ideal_point": (normalization(study) or (None, None))[1],
        "mlflow": dict(record or {}),
    }
