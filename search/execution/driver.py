"""One study's side of a run loop: suggest with what is in flight, add the trial, record its outcome.

A :class:`StudyDriver` knows nothing of executors or slots: a loop asks it for up to ``n`` new
trials (:meth:`StudyDriver.start`), submits them wherever it likes, tells it where they went
(:meth:`StudyDriver.submitted`) and hands it their outcomes (:meth:`StudyDriver.finish`). Both
:func:`search.api.optimize` (one study, its own executor) and the cohort scheduler
(:mod:`search.execution.scheduler`: many users' studies on one executor) drive studies this way; the
process that runs the loop is the only writer of every study it drives.

A trial that raises (including ``MemoryError``), returns NaN for an objective, times out or loses
its worker twice is recorded as FAILED with the reason and the study goes on; an objective that
does not report an objective metric is an error (:class:`search.errors.SpaceError`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from search.encoding import canonical, config_key
from search.errors import SpaceError
from search.execution.executors import Objective, Outcome
from search.numbers import finite
from search.optimizers.base import KnownObjective, Observation, Optimizer
from search.optimizers.history import observations
from search.execution.stopping import StoppableObjective, stop_check
from search.study.study import ORIGIN_ATTR, WARM_START, Study, TrialRecord

Callback = Callable[[Study, TrialRecord], None]
PriorSource = Callable[[], Sequence[Sequence[Observation]]]


@dataclass(frozen=True)
class Started:
    """A trial just added to its study: submit ``objective`` on ``record.config``."""

    record: TrialRecord
    objective: Objective


class StudyDriver:
    """Drives one study: what to run next, and what its finished trials were.

    Args:
        study: the study, opened for writing (the caller holds its lock).
        optimizer: suggests the configurations.
        objective: configuration -> metrics (or an :class:`~search.execution.executors.Evaluation`).
        known: metric -> exact function of the configuration (fills in a metric the objective
            does not report).
        callbacks: called as ``callback(study, trial)`` after every finished trial; a callback
            with a ``trial_started(study, trial, slot)`` method also hears of every submitted one.
        initial: configurations to evaluate first (a warm start), those not yet in the study; their
            trials carry the user attr ``origin: warm_start``.
        prior: called before every suggestion of an optimiser that learns from earlier users
            (``learns_from_prior``): their observations as they are now, one sequence per user.
    """

    def __init__(self, study: Study, optimizer: Optimizer, objective: Objective, *,
                 known: Mapping[str, KnownObjective] | None = None, callbacks: Sequence[Callback] = (),
                 initial: Sequence[dict[str, Any]] = (), prior: PriorSource | None = None) -> None:
        self.study = study
        self.optimizer = optimizer
        self.objective = objective
        self.known = dict(known or {})
        self.callbacks = list(callbacks)
        self.prior = prior
        tried = {config_key(study.space, t.config) for t in study.trials}
        self._first = [c for c in initial if config_key(study.space, c) not in tried]
        self._in_flight: list[int] = []  # trial numbers, in submission order
        self._exhausted = False
        self.started_here = 0  # trials this driver added to the study

    # ----------------------------------------------------------------- state
    @property
    def in_flight(self) -> int:
        """Trials submitted and not finished yet."""
        return len(self._in_flight)

    def wanted(self) -> int:
        """Trials still to start for the study to reach its budget (``optimizer.trials``)."""
        return self.study.space.optimizer.trials - len(self.study.finished()) - len(self._in_flight)

    @property
    def done(self) -> bool:
        """Nothing in flight and nothing more to start: the budget is met, or the space has no new configuration."""
        return not self._in_flight and (self.wanted() <= 0 or self._exhausted)

    # ----------------------------------------------------------------- the loop's calls
    def start(self, n: int) -> list[Started]:
        """Add up to ``n`` new RUNNING trials (never past the budget) and return them to submit.

        The configurations of STOPPED trials run again first, then the warm start's points, then
        the optimiser's suggestions, which condition on the trials in flight (``pending``). An
        empty list with ``n > 0`` means the space has no configuration left to try now.
        """
        n = min(n, self.wanted())
        if n <= 0:
            return []
        started = time.perf_counter()
        configs = self.study.stopped_configs()[:n]
        origins = [self._origin(c) for c in configs]
        while self._first and len(configs) < n:
            configs.append(canonical(self.study.space, self._first.pop(0)))
            origins.append({ORIGIN_ATTR: WARM_START})
        given = len(configs)  # stopped trials run again and the warm start's points: not the optimiser's
        if len(configs) < n:
            configs += self._suggest(n - len(configs), configs)
        self._exhausted = not configs
        if not configs:
            return []
        seconds = (time.perf_counter() - started) / len(configs)
        out = []
        for i, config in enumerate(configs):
            record = self.study.add_trial(config, suggest_seconds=seconds,
                                          suggest_notes=self.optimizer.notes if i >= given else None,
                                          user_attrs=origins[i] if i < given else None)
            self._in_flight.append(record.number)
            self.started_here += 1
            out.append(Started(record, self._with_stopping(config)))
        return out

    def submitted(self, record: TrialRecord, slot: int) -> None:
        """Tell the callbacks that ``record`` went to worker ``slot``."""
        for callback in self.callbacks:
            started = getattr(callback, "trial_started", None)
            if started is not None:
                started(self.study, record, slot)

    def finish(self, number: int, outcome: Outcome) -> TrialRecord:
        """Record trial ``number``'s outcome (the study is saved), then call the callbacks.

        Raises:
            SpaceError: the objective does not report an objective metric (the trial is recorded
                as FAILED first).
        """
        if number in self._in_flight:
            self._in_flight.remove(number)
        trial = record_outcome(self.study, self.study.trials[number], outcome, self.known)
        for callback in self.callbacks:
            callback(self.study, trial)
        return trial

    # ----------------------------------------------------------------- helpers
    def _suggest(self, n: int, chosen: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.prior is not None and self.optimizer.learns_from_prior:
            self.optimizer.prior = [list(obs) for obs in self.prior() if obs]
        history = observations(self.study.trials, self.study.space, known=self.optimizer.known_objectives)
        pending = [self.study.trials[number].config for number in self._in_flight]
        return self.optimizer.suggest(history, n, pending=pending + chosen)

    def _origin(self, config: dict[str, Any]) -> dict[str, Any]:
        """The ``origin`` attr of the stopped trial a configuration reruns (a warm-start point stays one)."""
        key = config_key(self.study.space, config)
        origins = [t.user_attrs[ORIGIN_ATTR] for t in self.study.trials
                   if ORIGIN_ATTR in t.user_attrs and config_key(self.study.space, t.config) == key]
        return {ORIGIN_ATTR: origins[-1]} if origins else {}

    def _with_stopping(self, config: dict[str, Any]) -> Objective:
        """The objective with the study's stopping rule for this trial, when early stopping is on."""
        settings = self.study.space.early_stopping
        if not settings.enabled:
            return self.objective
        known = self.optimizer.known_objectives
        check = stop_check(self.study, settings, {m: float(fn(config)) for m, fn in known.items()})
        return StoppableObjective(self.objective, check)


def record_outcome(study: Study, record: TrialRecord, outcome: Outcome,
                   known: Mapping[str, KnownObjective]) -> TrialRecord:
    """Record a finished evaluation as COMPLETED, PRUNED or FAILED (a non-finite objective fails it).

    Raises:
        SpaceError: the values lack an objective metric (the trial is recorded as FAILED first).
    """
    if outcome.values is None:
        return study.fail_trial(record.number, outcome.error or "failed", outcome.user_attrs)
    if outcome.pruned is not None:
        values = {k: float(v) for k, v in outcome.values.items() if finite(v)}
        return study.prune_trial(record.number, values, outcome.user_attrs)
    values = dict(outcome.values)
    for metric, fn in known.items():
        values.setdefault(metric, float(fn(record.config)))
    try:
        study.space.check_objectives(set(values))
    except SpaceError as err:
        study.fail_trial(record.number, str(err), outcome.user_attrs)
        raise
    bad = [m for m in study.space.metrics if not finite(values[m])]
    if bad:
        shown = ", ".join(f"{m}={values[m]!r}" for m in bad)
        return study.fail_trial(record.number, f"non-finite metric: {shown}", outcome.user_attrs)
    values = {k: float(v) for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return study.complete_trial(record.number, values, outcome.user_attrs)
