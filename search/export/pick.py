"""Pick expressions: which trial of a study's front to export.

``knee``, ``max:METRIC``, ``min:METRIC``, ``trial:N``, each optionally followed by
``where METRIC OP NUMBER [and ...]`` (``OP`` in ``<, <=, >, >=, ==, !=``); a metric named
``test_X`` reads the test value of ``X``. ``knee``/``max``/``min`` choose among the front's
trials (ties go to the lower trial number); ``trial:N`` takes any completed trial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from search.errors import ExportError
from search.pareto import knee_index
from search.results.report import front_text
from search.space import Condition, parse_condition
from search.study.study import Study, TrialRecord, TrialState

_HEAD_RE = re.compile(r"^(?:(knee)|(max|min):\s*([A-Za-z_][\w.\-]*)|(trial):\s*(\d+))$")


@dataclass(frozen=True)
class Pick:
    """A parsed pick expression.

    Attributes:
        kind: ``knee``, ``max``, ``min`` or ``trial``.
        metric: the metric of ``max``/``min``.
        number: the trial number of ``trial``.
        where: conditions every candidate must satisfy.
        text: the expression as given.
    """

    kind: str
    metric: str | None = None
    number: int | None = None
    where: tuple[Condition, ...] = field(default_factory=tuple)
    text: str = ""


def parse_pick(text: str) -> Pick:
    """Parse a pick expression (see the module docstring).

    Raises:
        ExportError: the expression does not follow the grammar.
    """
    usage = "use knee, max:METRIC, min:METRIC or trial:N, optionally with 'where METRIC>=NUMBER [and ...]'"
    parts = re.split(r"\s+where\s+", text.strip(), maxsplit=1)
    head, tail = parts[0].strip(), (parts[1] if len(parts) > 1 else None)
    match = _HEAD_RE.match(head)
    if match is None:
        raise ExportError(f"--pick {text!r}: cannot read {head!r}; {usage}")
    where: list[Condition] = []
    if tail is not None:
        for item in re.split(r"\s+and\s+", tail.strip()):
            try:
                where.append(parse_condition(item))
            except ValueError as err:
                raise ExportError(f"--pick {text!r}: condition {item!r} is not 'METRIC OP NUMBER'; {usage}") from err
    if match.group(1):
        return Pick("knee", where=tuple(where), text=text)
    if match.group(2):
        return Pick(match.group(2), metric=match.group(3), where=tuple(where), text=text)
    if where:
        raise ExportError(f"--pick {text!r}: trial:N names one trial and takes no where clause; drop it")
    return Pick("trial", number=int(match.group(5)), text=text)


def metric_value(trial: TrialRecord, metric: str) -> float | None:
    """A trial's value of ``metric`` (``test_X`` reads the test value of ``X``), or None."""
    if metric in trial.values:
        return trial.values[metric]
    if metric.startswith("test_"):
        return trial.test_values.get(metric[len("test_"):])
    return None


def pick_trial(study: Study, pick: Pick | str) -> TrialRecord:
    """The trial a pick expression selects.

    Raises:
        ExportError: bad expression, unknown metric, no such completed trial, or no front
            trial satisfies the conditions (the message lists the front).
    """
    pick = parse_pick(pick) if isinstance(pick, str) else pick
    if pick.kind == "trial":
        return _numbered(study, pick)
    known = sorted({m for t in study.completed() for m in t.values}
                   | {f"test_{m}" for t in study.completed() for m in t.test_values})
    for metric in [c.param for c in pick.where] + ([pick.metric] if pick.metric else []):
        if metric not in known:
            raise ExportError(f"--pick {pick.text!r}: study {study.name!r} has no metric {metric!r}; "
                              f"use one of: {', '.join(known) or '(no completed trial)'}")
    candidates = [t for t in study.pareto_trials() if all(_holds(t, c) for c in pick.where)]
    if pick.metric:
        candidates = [t for t in candidates if metric_value(t, pick.metric) is not None]
    if not candidates:
        if not study.pareto_trials():
            why = "the front is empty"
        elif pick.where:
            why = "no front trial satisfies " + " and ".join(f"{c.param}{c.op}{c.value:g}" for c in pick.where)
        else:
            why = f"no front trial has {pick.metric}"
        raise ExportError(f"--pick {pick.text!r} matches nothing in study {study.name!r}: {why}; "
                          f"relax the condition or pick one of:\n{front_text(study)}")
    if pick.kind == "knee":
        return _knee(study, candidates)
    sign = 1.0 if pick.kind == "max" else -1.0
    return max(candidates, key=lambda t: (sign * float(metric_value(t, pick.metric)), -t.number))


def _holds(trial: TrialRecord, condition: Condition) -> bool:
    value = metric_value(trial, condition.param)
    return value is not None and condition.holds(value)


def _numbered(study: Study, pick: Pick) -> TrialRecord:
    if pick.number >= len(study.trials):
        raise ExportError(f"--pick {pick.text!r}: study {study.name!r} has trials 0..{len(study.trials) - 1}; "
                          f"pick an existing one, e.g. from the front:\n{front_text(study)}")
    trial = study.trials[pick.number]
    if trial.state is not TrialState.COMPLETED:
        raise ExportError(f"--pick {pick.text!r}: trial {trial.number} is {trial.state.value}"
                          f"{' (' + trial.error + ')' if trial.error else ''}; pick a completed trial, e.g.:\n"
                          f"{front_text(study)}")
    return trial


def _knee(study: Study, candidates: list[TrialRecord]) -> TrialRecord:
    i = knee_index([t.values for t in candidates], study.space.objectives, study.space.parsed_constraints)
    return candidates[0 if i is None else i]
