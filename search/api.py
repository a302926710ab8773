"""The Python API: run any optimiser on any black-box function, with persistence and resume.

The loop keeps the executor's workers busy: whenever a slot is free it asks the study's driver
(:class:`search.execution.driver.StudyDriver`) for a trial, whose configuration conditions on the ones
in flight (``pending``), and submits it; whenever trials finish the driver records them (this
process is the only writer of the study) and calls the callbacks. A trial that raises (including ``MemoryError``), returns NaN for
an objective, times out or loses its worker twice is recorded as FAILED with the reason and the
study goes on. ``KeyboardInterrupt`` cancels what is in flight and leaves those trials RUNNING on
disk; the next :func:`optimize` marks them STOPPED and runs their configurations again first.
:func:`optimize` holds the study's lock while it runs (:mod:`search.study.lock`): a second writer
of the same study, in this machine's other processes, is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from search.execution.executors import (
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
    study_optimizer,
)
from search.space import Space, load_space
from search.study.study import Study, check_study_name
from search.execution.driver import Callback, StudyDriver
from search.study.lock import StaleLockWarning, writer_lock  # noqa: F401  (StaleLockWarning: part of the API)


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
        early_stopping: stop trials whose intermediate point is dominated (``search.execution.stopping``);
            default the space's ``early_stopping.enabled``. The objective is then called as
            ``objective(config, report=callback)`` and calls ``callback(checkpoint)`` as it trains.
        initial: configurations to evaluate first (a warm start), those not yet in the study; their trials
            carry the user attr ``origin: warm_start``.
        prior: earlier users' observations, one sequence per user, for the BO optimisers to learn
            from (a per-user search's warm start; ignored by a built ``optimizer``).

    Returns:
        The study.

    Raises:
        SpaceError: invalid space or overrides; the objective does not report an objective metric.
        StudyError: an existing study of that name does not match, or ``resume`` is False.
    """
    space = _prepare_space(space, trials, init_trials, seed, n_layers)
    space, optimizer = study_optimizer(space, optimizer, known_objectives=known_objectives, options=options,
                                       prior=prior)
    if early_stopping is not None:
        space = space.with_overrides([f"early_stopping.enabled={str(early_stopping).lower()}"])
    name = study_name or space.name
    with writer_lock(Path(study_dir) / check_study_name(name), f"study {name!r} in {study_dir}",
                     f"`pers-search resume {name} --study-dir {study_dir}`"):
        study = Study.open(name, study_dir, space, resume=resume)
        with executor or LocalExecutor() as running:
            _loop(StudyDriver(study, optimizer, objective, known=known_objectives, callbacks=callbacks,
                              initial=initial), running)
    return study


def _loop(driver: StudyDriver, executor: Executor) -> None:
    """Fill free slots, wait, record; until the study has its trials (or the space is exhausted)."""
    slots: dict[int, int] = {}  # trial number in flight -> slot
    capacity = max(executor.workers, driver.study.space.optimizer.batch_size)
    try:
        while True:
            for started in driver.start(capacity - len(slots)):
                number = started.record.number
                slots[number] = min(set(range(capacity)) - set(slots.values()))
                executor.submit(number, started.objective, started.record.config)
                driver.submitted(started.record, slots[number])
            if not slots:
                return
            for number, outcome in executor.wait():
                slots.pop(number, None)
                driver.finish(number, outcome)
    except BaseException:
        executor.cancel()
        raise


def _prepare_space(
    space: Space | str | Path, trials: int | None, init_trials: int | None, seed: int | None, n_layers: int | None
) -> Space:
    space = space if isinstance(space, Space) else load_space(space)
    space = space.with_optimizer(trials=trials, init_trials=init_trials, seed=seed)
    if n_layers is not None:
        space = space.bind(n_layers)
    space.defaults()  # raises SpaceError when a layer mask is still unbound
    return space


__all__ = ["Callback", "Evaluation", "Executor", "LocalExecutor", "Objective", "Outcome", "evaluate", "optimize"]
