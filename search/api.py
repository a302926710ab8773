"""The Python API: run any optimiser on any black-box function, with persistence and resume.

The loop is suggest -> evaluate (through an :class:`Executor`) -> record, one batch at a time.
A trial that raises (including ``MemoryError``) or returns NaN for an objective is recorded as
FAILED with the reason and the study goes on. ``KeyboardInterrupt`` stops the loop and leaves the
running trials RUNNING on disk; the next :func:`optimize` (or load) marks them STOPPED and runs
their configurations again first.
"""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from search.errors import SpaceError
from search.optimizers.base import (
    AcquisitionOptions,
    KnownObjective,
    Optimizer,
    check_optimizer,
    make_optimizer,
)
from search.space import Space, finite, load_space
from search.study import Study, TrialRecord

Objective = Callable[[dict[str, Any]], Mapping[str, float]]
Callback = Callable[[Study, TrialRecord], None]


@dataclass(frozen=True)
class Evaluation:
    """What an objective may return instead of a plain metrics dict.

    Attributes:
        values: validation metrics (objectives and any others).
        user_attrs: JSON-ready extras stored on the trial (artifact paths, run ids).
    """

    values: Mapping[str, float]
    user_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The result of evaluating one configuration: values, or an error string."""

    values: dict[str, float] | None
    error: str | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Runs the objective on configurations; the seam for parallel or remote execution (Ray)."""

    @abstractmethod
    def map(self, objective: Objective, configs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Outcome]]:
        """Evaluate ``configs``; yield ``(index, outcome)`` as each one finishes.

        Exceptions raised by the objective must be turned into outcomes with an error;
        ``KeyboardInterrupt`` and ``SystemExit`` propagate.
        """


class LocalExecutor(Executor):
    """Runs the objective in this process, one configuration after another."""

    def map(self, objective: Objective, configs: Sequence[dict[str, Any]]) -> Iterator[tuple[int, Outcome]]:
        """Evaluate in order (see :meth:`Executor.map`)."""
        for i, config in enumerate(configs):
            yield i, evaluate(objective, config)


def evaluate(objective: Objective, config: dict[str, Any]) -> Outcome:
    """Call the objective once, turning exceptions into an :class:`Outcome` with the reason."""
    try:
        result = objective(dict(config))
    except MemoryError as err:
        return Outcome(None, f"out of memory: {err or 'MemoryError'}")
    except Exception as err:  # noqa: BLE001  (any trial error is recorded, the study goes on)
        last = traceback.extract_tb(err.__traceback__)[-1:]
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        return Outcome(None, f"{type(err).__name__}: {err}{where}")
    if isinstance(result, Evaluation):
        return Outcome(dict(result.values), None, dict(result.user_attrs))
    return Outcome(dict(result))


def optimize(
    space: Space | str | Path,
    objective: Objective,
    *,
    optimizer: str | Optimizer | None = None,
    trials: int | None = None,
    init_trials: int | None = None,
    seed: int | None = None,
    study_name: str | None = None,
    study_dir: str | Path = "studies",
    known_objectives: Mapping[str, KnownObjective] | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = True,
    n_layers: int | None = None,
    executor: Executor | None = None,
    options: AcquisitionOptions | None = None,
) -> Study:
    """Optimise a black-box function over a space; return the study with its trials and front.

    Args:
        space: a :class:`Space`, a YAML path or a bundled space name.
        objective: configuration -> metrics dict (or an :class:`Evaluation`).
        optimizer: a registered name or a built optimiser; default ``optimizer.name`` of the space.
        trials: total finished trials wanted (overrides ``optimizer.trials``).
        init_trials: quasi-random start (overrides ``optimizer.init_trials``).
        seed: optimiser seed (overrides ``optimizer.seed``); combined with the trial index.
        study_name: default the space name.
        study_dir: parent directory of studies.
        known_objectives: metric -> exact function of the configuration (computed, not modelled;
            also fills the metric in when the objective does not report it).
        callbacks: called as ``callback(study, trial)`` after every finished trial.
        resume: continue an existing study of that name (else it is an error if one exists).
        n_layers: binds layer masks without a size.
        executor: how configurations are evaluated; default :class:`LocalExecutor`.
        options: caps on the BO acquisition optimisation.

    Returns:
        The study.

    Raises:
        SpaceError: invalid space or overrides; the objective does not report an objective metric.
        StudyError: an existing study of that name does not match, or ``resume`` is False.
    """
    space = _prepare_space(space, trials, init_trials, seed, n_layers)
    if not isinstance(optimizer, Optimizer):
        space = space.with_optimizer(name=optimizer)
        check_optimizer(space)
        optimizer = make_optimizer(
            space.optimizer.name, space, seed=space.optimizer.seed, known_objectives=known_objectives, options=options
        )
    study = Study.open(study_name or space.name, study_dir, space, resume=resume)
    known = dict(known_objectives or {})
    executor = executor or LocalExecutor()
    while len(study.finished()) < space.optimizer.trials:
        want = min(space.optimizer.batch_size, space.optimizer.trials - len(study.finished()))
        start = time.perf_counter()
        configs = study.stopped_configs()[:want] or optimizer.suggest(study.observations(), want)
        if not configs:
            break
        seconds = (time.perf_counter() - start) / len(configs)
        records = [study.add_trial(c, suggest_seconds=seconds) for c in configs]
        for i, outcome in executor.map(objective, configs):
            trial = _record(study, records[i], outcome, known)
            for callback in callbacks:
                callback(study, trial)
    return study


def _prepare_space(
    space: Space | str | Path, trials: int | None, init_trials: int | None, seed: int | None, n_layers: int | None
) -> Space:
    space = space if isinstance(space, Space) else load_space(space)
    space = space.with_optimizer(trials=trials, init_trials=init_trials, seed=seed)
    if n_layers is not None:
        space = space.bind(n_layers)
    space.defaults()  # raises SpaceError when a layer mask is still unbound
    return space


def _record(study: Study, record: TrialRecord, outcome: Outcome, known: dict[str, KnownObjective]) -> TrialRecord:
    if outcome.values is None:
        return study.fail_trial(record.number, outcome.error or "failed", outcome.user_attrs)
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
