"""Per-user searches (MiLP's setting): one study per user of a cohort, searched one after another,
optionally warm-started from the users searched before.

Layout of ``<study_dir>/<name>/``: ``cohort.json`` (the users in order, the space's name, when it
was made) and ``users/<user>/`` holding each user's own study (``study.json``, ``space.yaml``).
Running the same cohort again resumes it: finished users are skipped, the current one resumes
where it stopped.

Warm start (``warm_start.enabled`` or ``--warm-start``): each new user's study first evaluates
configurations of the earlier users' common front (up to ``warm_start.max_points``: every earlier
user's trials put on one level and merged per configuration, the knee first, then the points
adding the most hypervolume), then goes on with its optimiser, whose quasi-random start these
points count towards. Configurations that served earlier users are the best guess for a new user
of the same model and data; the optimiser then corrects for the user. The BO optimisers also learn
from every earlier user's trials, summarised in at most ``warm_start.max_observations`` rows so
that a suggestion costs the same with 3 or 300 users before: they enter the surrogate with a
same-user input whose lengthscale is fitted, so the model learns how alike the users are
(``search.optimizers.user_transfer``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

from runners.files import user_file_name
from search.api import Callback, optimize, writer_lock
from search.encoding import config_key
from search.errors import SearchError, StudyError
from search.executors import Executor, LocalExecutor, Objective
from search.executors.base import Lent
from search.optimizers.base import AcquisitionOptions, KnownObjective, Observation
from search.optimizers.user_transfer import cohort_summary, pooled_front
from search.space import Space, finite
from search.provenance import differences, provenance
from search.study import Study, atomic_write, check_study_name
from search.study_record import CohortFile, read_json, validate_cohort_file

COHORT_FILE = "cohort.json"
USERS_DIR = "users"


@dataclass
class CohortStudy:
    """The per-user studies of a cohort, in search order."""

    name: str
    directory: Path
    users: list[str]
    studies: dict[str, Study]

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


def user_study_name(name: str, user: str) -> str:
    """The study name (and directory below the study dir) of one user of a per-user study."""
    return f"{name}/{USERS_DIR}/{user_file_name(user)}"


def is_cohort(name: str, study_dir: str | Path) -> bool:
    """True when ``<study_dir>/<name>`` holds a per-user study."""
    return (Path(study_dir) / name / COHORT_FILE).exists()


def load_cohort(name: str, study_dir: str | Path) -> CohortStudy:
    """A per-user study as stored (the users not searched yet have no study).

    Raises:
        StudyError: no such per-user study, or an unreadable ``cohort.json``.
    """
    users = read_cohort_file(name, study_dir).users
    studies = {}
    for user in users:
        if (Path(study_dir) / user_study_name(name, user) / "study.json").exists():
            studies[user] = Study.load(user_study_name(name, user), study_dir)
    return CohortStudy(name, Path(study_dir) / name, list(users), studies)


def read_cohort_file(name: str, study_dir: str | Path) -> CohortFile:
    """``cohort.json``, validated (a damaged or hand-edited file is one line naming the field).

    Raises:
        StudyError: no such per-user study, or a damaged ``cohort.json``.
    """
    path = Path(study_dir) / name / COHORT_FILE
    what = f"study {name!r}"
    try:
        data = read_json(path, what)
    except FileNotFoundError as err:
        raise StudyError(f"study {name!r}: no {path}; check the study name and --study-dir") from err
    return validate_cohort_file(data, path, what)


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
    per_user = [[o for o in study.observations(known) if _has_values(o, space.metrics)] for study in previous]
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
    """What a caller of :func:`optimize_tasks` hears: a task starts (return its study callbacks), a task ends."""

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
    """One study per task (user), in order: the Python API of per-user search (the CLI's ``--per-user``).

    Task ``i`` (0-based, in search order) runs with optimiser seed ``optimizer.seed + i``.

    Args:
        space: the bound space every task's study runs with.
        objectives: task (user id) -> its objective, in search order.
        study_name: the cohort's name: a directory under ``study_dir``.
        study_dir: parent directory of studies.
        warm_start: seed each task from the earlier ones (default the space's ``warm_start.enabled``).
        known_objectives: exact metrics (the same functions for every task).
        hooks: told when each task starts (and gives its study callbacks) and ends.
        executor: builds the executor of the cohort: made once, every task's study runs on it (so
            its workers, and the base model each has loaded, live across tasks), closed at the end
            (default: one trial at a time, here).
        options: caps on the BO acquisition optimisation.

    Returns:
        The cohort's studies.

    Raises:
        StudyError: the directory holds another cohort (other users) or a cohort study.
    """
    tasks, hooks = list(objectives), hooks or TaskHooks()
    with writer_lock(Path(study_dir) / check_study_name(study_name), f"per-user study {study_name!r} in {study_dir}",
                     f"`pers-search resume {study_name} --study-dir {study_dir}`"):
        cohort = open_cohort(space, study_name, study_dir, tasks)
        warm = space.warm_start.enabled if warm_start is None else warm_start
        with executor() if executor else LocalExecutor() as shared:
            for index, task in enumerate(tasks):
                earlier = [cohort.studies[t] for t in tasks[:index]]
                initial = warm_start_points(earlier, space.warm_start.max_points) if warm else []
                prior = warm_start_observations(earlier, space.warm_start.max_observations, known_objectives or {}) \
                    if warm else []
                # each user's optimiser its own seed: with one seed every user's quasi-random start is the
                # same set of points, and a warm start (earlier users' fronts, drawn from that set) adds nothing
                task_space = space.with_optimizer(seed=space.optimizer.seed + index)
                cohort.studies[task] = optimize(
                    task_space, objectives[task], study_name=user_study_name(study_name, task), study_dir=study_dir,
                    known_objectives=known_objectives, callbacks=hooks.start(task, index), options=options,
                    initial=initial, prior=prior, executor=Lent(shared))
                hooks.end(task, cohort.studies[task])
    return cohort


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
    return CohortStudy(name, directory, tasks, {})


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
