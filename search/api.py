"""The Python API: run any optimiser on any black-box function, with persistence and resume.

The loop keeps the executor's workers busy: whenever a slot is free it asks the optimiser for a
configuration that conditions on the ones in flight (``pending``), records the trial as RUNNING
and submits it; whenever trials finish it records them (the driver is the only writer of the
study) and calls the callbacks. A trial that raises (including ``MemoryError``), returns NaN for
an objective, times out or loses its worker twice is recorded as FAILED with the reason and the
study goes on. ``KeyboardInterrupt`` cancels what is in flight and leaves those trials RUNNING on
disk; the next :func:`optimize` marks them STOPPED and runs their configurations again first.
:func:`optimize` holds the study's lock while it runs (:mod:`search.study_lock`): a second writer
of the same study, in this machine's other processes, is refused.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

from search.encoding import canonical, config_key
from search.errors import SpaceError
from search.executors import (
    Evaluation,
    Executor,
    LocalExecutor,
    Objective,
    Outcome,
    evaluate,
)
from search.optimizers.base import (
    AcquisitionOptions,
    KnownObjective,
    Observation,
    Optimizer,
    check_optimizer,
    make_optimizer,
)
from search.space import Space, finite, load_space
from search.stopping import StoppableObjective, stop_check
from search.study import Study, TrialRecord, check_study_name
from search.study_lock import StudyLock

Callback = Callable[[Study, TrialRecord], None]


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
    early_stopping: bool | None = None,
    initial: Sequence[dict] = (),
    prior: Sequence[Sequence[Observation]] = (),
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
        callbacks: called as ``callback(study, trial)`` after every finished trial, in the order
            trials finish.
        resume: continue an existing study of that name (else it is an error if one exists).
        n_layers: binds layer masks without a size.
        executor: how configurations are evaluated (and how many at once); default
            :class:`LocalExecutor` (one at a time, in this process). A callback with a
            ``trial_started(study, trial, slot)`` method also hears of every submitted trial.
        options: caps on the BO acquisition optimisation.
        early_stopping: stop trials whose intermediate point is dominated (``search.stopping``);
            default the space's ``early_stopping.enabled``. The objective is then called as
            ``objective(config, report=callback)`` and calls ``callback(checkpoint)`` as it trains.
        initial: configurations to evaluate first (a warm start), those not yet in the study.
        prior: earlier users' observations, one sequence per user, for the BO optimisers to learn
            from (a per-user search's warm start; ignored by a built ``optimizer``).

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
            space.optimizer.name, space, seed=space.optimizer.seed, known_objectives=known_objectives, options=options,
            prior=prior,
        )
    if early_stopping is not None:
        space = space.with_overrides([f"early_stopping.enabled={str(early_stopping).lower()}"])
    name = study_name or space.name
    with writer_lock(Path(study_dir) / check_study_name(name), f"study {name!r} in {study_dir}",
                     f"`pers-search resume {name} --study-dir {study_dir}`"):
        study = Study.open(name, study_dir, space, resume=resume)
        with executor or LocalExecutor() as running:
            _loop(study, optimizer, objective, running, dict(known_objectives or {}), callbacks, initial)
    return study


def writer_lock(directory: Path, what: str, fix: str) -> StudyLock:
    """The study's lock for this process as its one writer (a takeover of a dead holder's lock is warned)."""
    return StudyLock(directory, what, fix, on_takeover=_warn_takeover)


def _warn_takeover(line: str) -> None:
    warnings.warn(line, StaleLockWarning, stacklevel=4)


class StaleLockWarning(UserWarning):
    """A study's lock was left by a process that died; this process took it over."""


def _loop(study: Study, optimizer: Optimizer, objective: Objective, executor: Executor,
          known: dict[str, KnownObjective], callbacks: Sequence[Callback], initial: Sequence[dict] = ()) -> None:
    """Fill free slots, wait, record; until the study has its trials (or the space is exhausted)."""
    slots: dict[int, int] = {}  # trial number in flight -> slot
    tried = {config_key(study.space, t.config) for t in study.trials}
    first = [c for c in initial if config_key(study.space, c) not in tried]
    try:
        while True:
            _fill(study, optimizer, objective, executor, slots, callbacks, first)
            if not slots:
                return
            for number, outcome in executor.wait():
                slots.pop(number, None)
                trial = _record(study, study.trials[number], outcome, known)
                for callback in callbacks:
                    callback(study, trial)
    except BaseException:
        executor.cancel()
        raise


def _fill(study: Study, optimizer: Optimizer, objective: Objective, executor: Executor, slots: dict[int, int],
          callbacks: Sequence[Callback], first: list[dict]) -> None:
    """Submit new trials while a worker is free and the study still needs trials (``first`` before suggestions)."""
    capacity = max(executor.workers, study.space.optimizer.batch_size)
    free = min(capacity - len(slots), study.space.optimizer.trials - len(study.finished()) - len(slots))
    if free <= 0:
        return
    pending = [study.trials[n].config for n in slots]
    start = time.perf_counter()
    configs = study.stopped_configs()[:free]
    while first and len(configs) < free:
        configs.append(canonical(study.space, first.pop(0)))
    given = len(configs)  # stopped trials run again and the warm start's points: not the optimiser's
    if len(configs) < free:
        observations = study.observations(known=optimizer.known_objectives)
        configs += optimizer.suggest(observations, free - len(configs), pending=pending + configs)
    if not configs:
        return
    seconds = (time.perf_counter() - start) / len(configs)
    for i, config in enumerate(configs):
        record = study.add_trial(config, suggest_seconds=seconds, suggest_notes=optimizer.notes if i >= given else None)
        slots[record.number] = min(set(range(capacity)) - set(slots.values()))
        executor.submit(record.number, _with_stopping(study, objective, optimizer.known_objectives, config), config)
        for callback in callbacks:
            started = getattr(callback, "trial_started", None)
            if started is not None:
                started(study, record, slots[record.number])


def _prepare_space(
    space: Space | str | Path, trials: int | None, init_trials: int | None, seed: int | None, n_layers: int | None
) -> Space:
    space = space if isinstance(space, Space) else load_space(space)
    space = space.with_optimizer(trials=trials, init_trials=init_trials, seed=seed)
    if n_layers is not None:
        space = space.bind(n_layers)
    space.defaults()  # raises SpaceError when a layer mask is still unbound
    return space


def _with_stopping(study: Study, objective: Objective, known: Mapping[str, KnownObjective],
                   config: dict) -> Objective:
    """The objective with the study's stopping rule for this trial, when early stopping is on."""
    settings = study.space.early_stopping
    if not settings.enabled:
        return objective
    check = stop_check(study, settings, {m: float(fn(config)) for m, fn in known.items()})
    return StoppableObjective(objective, check)


def _record(study: Study, record: TrialRecord, outcome: Outcome, known: dict[str, KnownObjective]) -> TrialRecord:
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


__all__ = ["Callback", "Evaluation", "Executor", "LocalExecutor", "Objective", "Outcome", "evaluate", "optimize"]
