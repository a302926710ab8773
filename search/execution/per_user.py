"""Per-user searches (MiLP's setting): one study per user of a cohort, run side by side on one
executor (:mod:`search.execution.scheduler`), optionally warm-started from the other users.

Layout of ``<study_dir>/<name>/``: ``cohort.json`` (the users in order, the space's name, when it
was made) and ``users/<user>/`` holding each user's own study (``study.json``, ``space.yaml``).
Running the same cohort again resumes it: finished users are skipped, the ones stopped part-way
resume where they stopped.

Warm start (``warm_start.enabled`` or ``--warm-start``): each new user's study first evaluates
configurations of the common front of the users finished when it starts (up to
``warm_start.max_points``: every such user's trials put on one level and merged per
configuration, the knee first, then the points adding the most hypervolume), then goes on with
its optimiser, whose quasi-random start these points count towards. Configurations that served
earlier users are the best guess for a new user of the same model and data; the optimiser then
corrects for the user. The BO optimisers also learn from the other users' finished trials, taken
afresh at every suggestion (so a user learns from the users running beside it too) and
summarised in at most ``warm_start.max_observations`` rows, so that a suggestion costs the same
with 3 or 300 users before: they enter the surrogate with a same-user input whose lengthscale is
fitted, so the model learns how alike the users are (``search.optimizers.user_transfer``).
With one worker the users run one after another and "the other users" are the ones before.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from search.execution.scheduler import CohortScheduler
from search.encoding import config_key
from search.errors import SearchError, StudyError
from search.execution.executors import Executor, LocalExecutor, Objective
from search.numbers import finite
from search.optimizers.base import AcquisitionOptions, KnownObjective, Observation, study_optimizer
from search.optimizers.history import observations
from search.optimizers.user_transfer import cohort_summary, pooled_front
from search.space import Space
from search.study.provenance import differences, provenance
from search.results.report import normalized_hypervolume
from search.study.study import Study, TrialState, atomic_write, check_study_name
from search.execution.driver import Callback, StudyDriver
from search.study.lock import StudyLock, holder, lock_info, writer_lock
from search.study.cohort_file import COHORT_FILE, read_cohort_file, user_study_name



@dataclass
class CohortStudy:
    """The per-user studies of a cohort, in search order."""

    name: str
    directory: Path
    users: list[str]
    studies: dict[str, Study]
    trials: int = 0  # each user's trial budget, as the cohort was made (a user's study may have raised it)

    def summary(self) -> dict[str, Any]:
        """Per user the chosen point (the knee of its front), its objectives and storage; the cohort's total storage."""
        rows, total = [], 0.0
        for user in self.users:
            study = self.studies.get(user)
            knee = study.knee_trial() if study is not None else None
            row = {"user": user, "trials": len(study.finished()) if study else 0, "knee": None}
            if knee is not None:
                row.update(knee=knee.number, **{m: knee.values.get(m) for m in study.space.objectives})
                total += float(knee.values.get("storage_bytes", 0.0) or 0.0)
            rows.append(row)
        return {"study": self.name, "users": rows, "total_storage_bytes": total}

    def user_rows(self) -> list[dict[str, Any]]:
        """Per user, in cohort order: its state (``done``, ``running``, ``stopped`` part-way or ``pending``),
        trials finished and running, budget, hypervolume (raw, and the fraction of the user's own box:
        :func:`search.results.report.normalized_hypervolume`) and knee trial (``status``'s cohort table)."""
        live = holder(self.directory) is not None
        rows = []
        for user in self.users:
            study = self.studies.get(user)
            if study is None:
                rows.append({"user": user, "state": "pending", "finished": 0, "running": 0, "budget": None,
                             "hypervolume": None, "hypervolume_fraction": None, "knee": None})
                continue
            finished = len(study.finished())
            running = sum(t.state is TrialState.RUNNING for t in study.trials)
            budget = study.space.optimizer.trials
            state = "done" if finished >= budget else "running" if running and live else "stopped"
            rows.append({"user": user, "state": state, "finished": finished, "running": running if live else 0,
                         "budget": budget, "hypervolume": study.hypervolume(),
                         "hypervolume_fraction": normalized_hypervolume(study), "knee": study.knee_trial()})
        return rows

    def overview(self, rows: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The cohort at a glance: users per state, trials, storage at the knees, the spread of the users'
        HV fractions (each of its own box), the process writing it (None when none is)."""
        rows = self.user_rows() if rows is None else rows
        states = {state: sum(r["state"] == state for r in rows) for state in USER_STATES}
        storage = [float(r["knee"].values.get("storage_bytes", 0.0) or 0.0) for r in rows if r["knee"] is not None]
        volumes = sorted(r["hypervolume_fraction"] for r in rows if r["hypervolume_fraction"] is not None
                         and r["finished"])
        return {"study": self.name, "users": len(rows), **states,
                "trials_finished": sum(r["finished"] for r in rows), "trials_running": sum(r["running"] for r in rows),
                "trials_budget": sum(r["budget"] or self.trials for r in rows),
                "total_storage_bytes": sum(storage), "storage_per_user": _spread(storage),
                "hypervolume_fraction": _spread(volumes), "writer": lock_info(self.directory)}


USER_STATES = ("done", "running", "stopped", "pending")


def _spread(values: Sequence[float]) -> dict[str, float] | None:
    """Minimum, quartiles and maximum of some values (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    quantiles = {name: ordered[round(q * (len(ordered) - 1))] for name, q in (("q1", 0.25), ("median", 0.5),
                                                                             ("q3", 0.75))}
    return {"min": ordered[0], **quantiles, "max": ordered[-1], "mean": sum(ordered) / len(ordered)}


def load_cohort(name: str, study_dir: str | Path) -> CohortStudy:
    """A per-user study as stored (the users not searched yet have no study).

    Raises:
        StudyError: no such per-user study, or an unreadable ``cohort.json``.
    """
    stored = read_cohort_file(name, study_dir)
    studies = {}
    for user in stored.users:
        if (Path(study_dir) / user_study_name(name, user) / "study.json").exists():
            studies[user] = Study.load(user_study_name(name, user), study_dir)
    trials = int(((stored.space or {}).get("optimizer") or {}).get("trials") or 0)
    return CohortStudy(name, Path(study_dir) / name, list(stored.users), studies, trials)


def warm_start_observations(previous: Sequence[Study], max_observations: int,
                            known: Collection[str] = ()) -> list[list[Observation]]:
    """What a new user's surrogate learns from the earlier users: their pool, summarised in at most
    ``max_observations`` rows (:func:`search.optimizers.user_transfer.cohort_summary`).

    Every earlier user counts, however many: their trials are put on a common level (through the
    configurations they ran in common), merged per configuration, and the pool's front, each
    user's own front and a sample of every user's trials are kept up to the budget. The rows come
    as one group (the optimiser shifts it to the new user's level as it would one earlier user).

    Args:
        previous: the earlier users' studies, in search (or finishing) order.
        max_observations: the most rows handed to the surrogate (0: none).
        known: metrics computed from the configuration (not shifted).

    Returns:
        ``[rows]``, or ``[]`` with no usable earlier trial or a budget of 0.
    """
    if max_observations <= 0 or not previous:
        return []
    space = previous[0].space
    learned = [m for m in space.metrics if m not in known]
    per_user = [[o for o in observations(study.trials, study.space, known) if _has_values(o, space.metrics)]
                for study in previous]
    rows = cohort_summary(per_user, learned, lambda c: config_key(space, c), space.objectives, max_observations,
                          space.parsed_constraints, space.optimizer.ref_point)
    return [rows] if rows else []


def warm_start_points(previous: Sequence[Study], max_points: int) -> list[dict[str, Any]]:
    """Configurations for a new user to evaluate first: the earlier users' common front, up to ``max_points``.

    The completed trials of every earlier user, put on a common level and merged per configuration
    (:func:`search.optimizers.user_transfer.pooled_front`); of their front, the knee first, then each
    time the point adding the most hypervolume. With one earlier user that is its knee, then its
    front points that cover the most.
    """
    if max_points <= 0 or not previous:
        return []
    space = previous[0].space
    per_user = [[Observation(t.config, dict(t.values)) for t in study.completed() if _has_values(t.values, space.metrics)]
                for study in previous]
    front = pooled_front(per_user, space.metrics, lambda c: config_key(space, c), space.objectives,
                         space.parsed_constraints, space.optimizer.ref_point)
    return [row.observation.config for row in front[:max_points]]


def _has_values(item: Observation | Mapping[str, Any] | None, metrics: Sequence[str]) -> bool:
    """True when an observation (or a trial's values) holds a finite value of every metric."""
    values = item.values if isinstance(item, Observation) else item
    return values is not None and all(finite(values.get(m)) for m in metrics)


class TaskHooks:
    """What a caller of :func:`optimize_tasks` hears: a task starts (return its study callbacks), a task ends.

    With several workers, tasks run side by side: ``start`` and ``end`` of different tasks interleave
    (``end`` comes in the order tasks finish), and each task's callbacks see only its own trials.
    """

    def start(self, task: str, index: int) -> Sequence[Callback]:
        """Task ``index`` (0-based) starts; the returned callbacks see its trials."""
        return ()

    def end(self, task: str, study: Study) -> None:
        """Task ``task`` has its trials."""


def optimize_tasks(
    space: Space,
    objectives: Mapping[str, Objective],
    *,
    study_name: str,
    study_dir: str | Path = "studies",
    warm_start: bool | None = None,
    known_objectives: Mapping[str, KnownObjective] | None = None,
    hooks: TaskHooks | None = None,
    executor: Callable[[], Executor] | None = None,
    options: AcquisitionOptions | None = None,
) -> CohortStudy:
    """One study per task (user), on one executor: the Python API of per-user search (the CLI's ``--per-user``).

    With ``W`` workers, up to ``W`` tasks run at once, each with one trial in flight while at least
    ``W`` tasks are left (:mod:`search.execution.scheduler`); with one worker, task after task. Task
    ``i`` (0-based, in search order) runs with optimiser seed ``optimizer.seed + i``. With the warm
    start, a task first evaluates front points of the tasks finished when it starts, and its BO
    optimiser learns, at every suggestion, from every trial of the other tasks finished so far.

    Args:
        space: the bound space every task's study runs with.
        objectives: task (user id) -> its objective, in search order.
        study_name: the cohort's name: a directory under ``study_dir``.
        study_dir: parent directory of studies.
        warm_start: seed each task from the others (default the space's ``warm_start.enabled``).
        known_objectives: exact metrics (the same functions for every task).
        hooks: told when each task starts (and gives its study callbacks) and ends.
        executor: builds the cohort's executor: made once, every task's trials run on it (so its
            workers, and what each has loaded, live across tasks), closed at the end (default: one
            trial at a time, here).
        options: caps on the BO acquisition optimisation.

    Returns:
        The cohort's studies.

    Raises:
        StudyError: the directory holds another cohort (other users) or a cohort study.
    """
    tasks = list(objectives)
    with writer_lock(Path(study_dir) / check_study_name(study_name), f"per-user study {study_name!r} in {study_dir}",
                     f"`pers-search resume {study_name} --study-dir {study_dir}`"):
        cohort = open_cohort(space, study_name, study_dir, tasks)
        run = _CohortRun(cohort, space, objectives, study_dir=study_dir, hooks=hooks or TaskHooks(),
                         warm=space.warm_start.enabled if warm_start is None else warm_start,
                         known=dict(known_objectives or {}), options=options)
        try:
            with executor() if executor else LocalExecutor() as shared:
                CohortScheduler(shared, len(tasks), run.open_task, run.end_task).run()
        finally:
            run.release()
    return cohort


class _CohortRun:
    """The cohort's side of a :class:`~search.execution.scheduler.CohortScheduler`: opens each user's study
    (its lock, its seed, its warm start) when the user starts, and closes it when the user is done."""

    def __init__(self, cohort: CohortStudy, space: Space, objectives: Mapping[str, Objective], *,
                 study_dir: str | Path, hooks: TaskHooks, warm: bool, known: dict[str, KnownObjective],
                 options: AcquisitionOptions | None) -> None:
        self.cohort, self.space, self.objectives, self.study_dir = cohort, space, objectives, study_dir
        self.hooks, self.warm, self.known, self.options = hooks, warm, known, options
        self.tasks = list(objectives)
        self.finished: list[str] = []  # tasks done, in the order they finished
        self.locks: dict[str, StudyLock] = {}

    def open_task(self, index: int) -> StudyDriver:
        """Take the user's lock, open its study and build its driver."""
        task = self.tasks[index]
        name = user_study_name(self.cohort.name, task)
        lock = writer_lock(Path(self.study_dir) / name, f"study {name!r} in {self.study_dir}",
                           f"`pers-search resume {self.cohort.name} --study-dir {self.study_dir}`")
        self.locks[task] = lock.__enter__()
        try:
            # each user's optimiser its own seed: with one seed every user's quasi-random start is the
            # same set of points, and a warm start (earlier users' fronts, drawn from that set) adds nothing
            task_space, optimizer = study_optimizer(self.space.with_optimizer(seed=self.space.optimizer.seed + index),
                                                    known_objectives=self.known, options=self.options)
            study = Study.open(name, self.study_dir, task_space)
        except BaseException:
            self.locks.pop(task).__exit__(None, None, None)
            raise
        self.cohort.studies[task] = study
        initial = warm_start_points([self.cohort.studies[t] for t in self.finished],
                                    self.space.warm_start.max_points) if self.warm else []
        return StudyDriver(study, optimizer, self.objectives[task], known=self.known,
                           callbacks=self.hooks.start(task, index), initial=initial,
                           prior=(lambda: self.prior(task)) if self.warm else None)

    def prior(self, task: str) -> list[list[Observation]]:
        """Every finished trial of the other users: those done first (in the order they finished), then
        those started or stopped part-way (in cohort order)."""
        done = set(self.finished)
        others = self.finished + [t for t in self.tasks if t not in done and t != task and t in self.cohort.studies]
        return warm_start_observations([self.cohort.studies[t] for t in others],
                                       self.space.warm_start.max_observations, self.known)

    def end_task(self, index: int, driver: StudyDriver) -> None:
        """The user is done: release its lock and tell the hooks."""
        task = self.tasks[index]
        self.finished.append(task)
        self.locks.pop(task).__exit__(None, None, None)
        self.hooks.end(task, driver.study)

    def release(self) -> None:
        """Release the locks of users still active (a stopped or failed run)."""
        for lock in self.locks.values():
            lock.__exit__(None, None, None)
        self.locks.clear()


def open_cohort(space: Space, name: str, study_dir: str | Path, tasks: list[str]) -> CohortStudy:
    """The per-user study ``name`` (created, with its users and space, when new).

    Raises:
        StudyError: it exists with other users, or ``name`` is a cohort study.
    """
    directory = Path(study_dir) / name
    if (directory / COHORT_FILE).exists():
        cohort = load_cohort(name, study_dir)
        if cohort.users != tasks:
            raise StudyError(f"study {name!r} in {study_dir} searched the users {cohort.users}, not {tasks}; "
                             "resume it with the same data settings or pick another study name")
        stored = read_cohort_file(name, study_dir).provenance
        changed = differences(stored, provenance(space)) if stored else []
        if changed:
            raise StudyError(f"per-user study {name!r} in {study_dir} ran on other settings than this run's "
                             f"({'; '.join(changed[:4])}); run it with its own settings (`pers-search resume {name}`), "
                             "or pick another study name")
        return cohort
    if (directory / "study.json").exists():
        raise StudyError(f"study {name!r} in {study_dir} is a cohort study (one configuration for all users); "
                         "pick another study name for a per-user search")
    directory.mkdir(parents=True, exist_ok=True)
    record = {"format": 1, "users": tasks, "created_at": time.time(), "space_source": space.source,
              "space_overrides": list(space.overrides), "space_text": space.text, "space": space.model_dump(mode="json"),
              "provenance": provenance(space)}
    for tmp in directory.glob(f".{COHORT_FILE}.*.tmp"):  # the writer (lock holder) sweeps what a killed one left
        tmp.unlink(missing_ok=True)
    atomic_write(directory / COHORT_FILE, json.dumps(record, indent=1))
    return CohortStudy(name, directory, tasks, {}, space.optimizer.trials)


def cohort_space(name: str, study_dir: str | Path) -> Space:
    """The space a per-user study was created with (for resuming it)."""
    stored = read_cohort_file(name, study_dir)
    if stored.space is None:
        raise StudyError(f"study {name!r}: {Path(study_dir) / name / COHORT_FILE}: space: missing; restore the file "
                         "or start a new study under another name")
    try:
        return Space.from_record(stored.space, stored.space_source, stored.space_text, stored.space_overrides)
    except SearchError as err:
        raise StudyError(f"study {name!r}: {Path(study_dir) / name / COHORT_FILE}: space: {err}; restore the file "
                         "or start a new study under another name") from err
