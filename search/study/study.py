"""A study: the space it runs with and its frozen trial records, saved atomically after every change.

Layout of ``<study_dir>/<name>/``: ``space.yaml`` (the space file as written) and ``study.json``
(format version, the space as parsed, the ``--set`` overrides, and every trial). Each change
writes a temporary file and ``os.replace``-s it, so a killed process loses nothing finished.
One process writes a study at a time (it holds the study's lock, :mod:`search.study.lock`);
opening it for writing marks trials a stopped process left RUNNING as STOPPED, and the run loop
evaluates their configurations again. Readers load it read-only and change nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from search.encoding import config_key
from search.errors import SearchError, StudyError, StudyWriteError
from search.pareto import hypervolume, knee_index, pareto_indices, study_reference_point
from search.space import Space
from search.study.provenance import differences, provenance
from search.study.lock import holder
from search.study.record import check_trials, read_json, validate_study_file

FORMAT_VERSION = 1
STUDY_FILE = "study.json"
# user attr of a trial the optimiser did not suggest: ``warm_start`` for a point of the earlier users'
# front (search.execution.per_user.warm_start_points); absent on the optimiser's own trials (and in older studies)
ORIGIN_ATTR = "origin"
CURVE_ATTR = "curve"  # user attr: a trial's intermediate values at its training checkpoints (early stopping)
PRUNED_ATTR = "pruned"  # user attr of a pruned trial: where and why it was stopped
WARM_START = "warm_start"
SPACE_FILE = "space.yaml"


class TrialState(str, Enum):
    """Life cycle of a trial."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    PRUNED = "pruned"  # stopped early by the stopping rule: partial values, counts towards the budget


@dataclass(frozen=True)
class TrialRecord:
    """A frozen trial record.

    Attributes:
        number: 0-based position in the study.
        config: the trial configuration.
        state: see :class:`TrialState`.
        values: validation metrics reported by the trial (objectives and any others).
        test_values: test metrics, filled in later for front configurations only.
        error: the failure reason of a FAILED trial.
        started_at: Unix time the evaluation started.
        finished_at: Unix time it ended (None while running or when stopped).
        suggest_seconds: time the optimiser took to suggest this configuration.
        suggest_notes: what the optimiser's model found when it suggested it (``Optimizer.notes``).
        user_attrs: free-form JSON data (e.g. ``mlflow_run_id``, artifact paths).
    """

    number: int
    config: dict[str, Any]
    state: TrialState = TrialState.RUNNING
    values: dict[str, float] = field(default_factory=dict)
    test_values: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    suggest_seconds: float | None = None
    suggest_notes: dict[str, Any] = field(default_factory=dict)
    user_attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def marks(self) -> tuple[str, ...]:
        """What the trial was beyond its state, as words for tables and lines: ``warm start`` (a point of
        the earlier users' front, user attr ``origin``), ``stopped early`` (PRUNED by the stopping rule)."""
        return tuple(word for word, on in (("warm start", self.user_attrs.get(ORIGIN_ATTR) == WARM_START),
                                           ("stopped early", self.state is TrialState.PRUNED)) if on)

    @property
    def seconds(self) -> float | None:
        """Wall time of the evaluation, or None when it did not finish."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**dataclasses.asdict(self), "state": self.state.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "TrialRecord":
        """Rebuild a record written by :meth:`to_json` (keys of a newer version are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in data.items() if k in known}, "state": TrialState(data["state"])})


class Study:
    """A named study in a directory. Use :meth:`open`, :meth:`create` or :meth:`load` to get one.

    A study from :meth:`load` is read-only (``status``, ``pareto``, ``export``, ``ui``): it shows
    the files as they are, trials in flight included, and refuses to save. :meth:`open` and
    :meth:`create` are for the one writer, which holds the study's lock (:mod:`search.study.lock`).

    Args:
        name: the study name (a directory under ``study_dir``).
        study_dir: the parent directory of studies.
        space: the bound space the study runs with.
        trials: existing records.
        created_at: Unix time of creation.
        read_only: refuse to save (a study opened by a reader).
        provenance: what its trials ran on (:func:`search.study.provenance.provenance`); default the space's.
    """

    def __init__(
        self,
        name: str,
        study_dir: str | Path,
        space: Space,
        trials: list[TrialRecord] | None = None,
        created_at: float | None = None,
        read_only: bool = False,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.directory = Path(study_dir) / check_study_name(name)
        self.space = space
        self._trials = list(trials or [])
        self.created_at = created_at or time.time()
        self.read_only = read_only
        self.provenance = provenance if provenance is not None else run_provenance(space)
        self._space_yaml_sha256: str | None = None

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, name: str, study_dir: str | Path, space: Space) -> "Study":
        """Create a new study and write it (the caller holds its lock, see :meth:`open`).

        Raises:
            StudyError: a study of that name already exists there.
        """
        study = cls(name, study_dir, space)
        if (study.directory / STUDY_FILE).exists():
            raise StudyError(
                f"study {name!r} already exists in {study.directory.parent}; resume it or pick another --study name"
            )
        study.save()
        return study

    @classmethod
    def load(cls, name: str, study_dir: str | Path) -> "Study":
        """Read a study as it is on disk, read-only: nothing in its directory changes.

        Trials in flight stay RUNNING (:meth:`in_flight` tells whether a live process runs them).

        Raises:
            StudyError: a missing, unreadable, damaged or hand-edited study file (one line naming
                the file, the trial and the field).
        """
        path = Path(study_dir) / name / STUDY_FILE
        what = f"study {name!r}"
        try:
            data = read_json(path, what)
        except FileNotFoundError as err:
            raise StudyError(f"study {name!r}: no {path}; check the study name and --study-dir "
                             f"(studies there: {_names(Path(study_dir))})") from err
        except IsADirectoryError as err:
            raise StudyError(f"study {name!r}: {path} is a directory, not a study file; check the study name") from err
        stored = validate_study_file(data, path, what)
        try:
            space = Space.from_record(stored.space, stored.space_source, stored.space_text, stored.space_overrides)
        except SearchError as err:
            raise StudyError(f"{what}: {path}: space: {err}; restore the file or start a new study") from err
        check_trials(stored, space, path, what)
        trials = [TrialRecord.from_json(t.model_dump()) for t in stored.trials]
        study = cls(name, study_dir, space, trials, stored.created_at, read_only=True,
                    provenance=stored.provenance or {})
        study._space_yaml_sha256 = stored.space_yaml_sha256
        return study

    @classmethod
    def open(cls, name: str, study_dir: str | Path, space: Space, resume: bool = True) -> "Study":
        """Load the study ``name`` for writing if it exists (and ``resume``), else create it.

        The caller holds the study's lock (:func:`search.study.lock.acquire`; :func:`search.api.optimize`
        takes it). The stored space must search the same parameters, objectives and constraints,
        and the trials must run on the same model, data and training settings (its provenance);
        budget and optimiser settings may differ (the given ``space`` is used from then on).
        Trials a stopped process left RUNNING become STOPPED, to be run again, and the temp files
        it left are removed. A ``space.yaml`` edited by hand since the study wrote it is honoured
        when ``space`` is that file (``resume`` reads it), else refused; it is never overwritten.

        Raises:
            StudyError: it exists and ``resume`` is False, it was created with another space or
                provenance, or its space.yaml was edited and another space is given.
        """
        if not (Path(study_dir) / name / STUDY_FILE).exists():
            return cls.create(name, study_dir, space)
        if not resume:
            raise StudyError(
                f"study {name!r} already exists in {study_dir}; resume it or pick another --study name"
            )
        study = cls.load(name, study_dir)
        study.read_only = False
        if study.space.search_signature() != space.search_signature():
            raise StudyError(
                f"study {name!r} was created with a different space (parameters, objectives or constraints); "
                "resume it with the space stored in its space.yaml, or pick another --study name"
            )
        study._check_space_file(space)
        study._check_provenance(space)
        study.space = space
        study.remove_stale_temp_files()
        for t in study._trials:
            if t.state is TrialState.RUNNING:
                study._replace(dataclasses.replace(t, state=TrialState.STOPPED))
        study.save()
        return study

    def _check_provenance(self, space: Space) -> None:
        """The same model, data and training settings as the trials before (none recorded: take these).

        Raises:
            StudyError: naming what differs.
        """
        new = run_provenance(space)
        changed = differences(self.provenance, new) if self.provenance and self._trials else []
        if changed:
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            raise StudyError(f"study {self.name!r} in {self.directory.parent} ran its {len(self._trials)} trials on "
                             f"other settings than this run's ({shown}); its front would mix them: run with the "
                             f"study's settings (`pers-search resume {self.name}`), or pick another study name")
        self.provenance = new

    @classmethod
    def check_resumable(cls, name: str, study_dir: str | Path, space: Space) -> None:
        """Before a model loads: a stored study of that name takes ``space``'s settings and space file.

        Raises:
            StudyError: what :meth:`open` would refuse on provenance or an edited ``space.yaml``.
        """
        if not (Path(study_dir) / name / STUDY_FILE).exists():
            return
        study = cls.load(name, study_dir)
        study._check_space_file(space)
        study._check_provenance(space)

    def _check_space_file(self, space: Space) -> None:
        """A hand-edited ``space.yaml`` is honoured (``space`` is its text) or refused, never overwritten."""
        edited = self.edited_space_text()
        if edited is None or space.text == edited:
            return
        raise StudyError(f"{self.directory / SPACE_FILE} was edited by hand since the study wrote it, and this run "
                         f"gives another space ({space.source}); resume with the edited file (`pers-search resume "
                         f"{self.name}`), or undo the edit")

    def edited_space_text(self) -> str | None:
        """The text of ``space.yaml`` when it was changed by hand since the study wrote it, else None."""
        path = self.directory / SPACE_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        written = self._space_yaml_sha256 or _sha256(effective_yaml(self.space))
        return None if _sha256(text) == written else text

    def remove_stale_temp_files(self) -> None:
        """Delete the half-written temp files a killed writer left (``.study.json.*.tmp``).

        Only the lock holder calls this: a reader must never delete a live writer's temp file.
        """
        for name in (STUDY_FILE, SPACE_FILE):
            for tmp in self.directory.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)

    def in_flight(self) -> bool:
        """True when a live process writes this study (its RUNNING trials are running, not stale)."""
        return holder(self.directory) is not None

    # ----------------------------------------------------------------- trials
    @property
    def trials(self) -> tuple[TrialRecord, ...]:
        """All trial records, in order."""
        return tuple(self._trials)

    def finished(self) -> list[TrialRecord]:
        """COMPLETED, PRUNED and FAILED trials: the ones that count towards the budget."""
        return [t for t in self._trials if t.state in (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)]

    def completed(self) -> list[TrialRecord]:
        """COMPLETED trials."""
        return [t for t in self._trials if t.state is TrialState.COMPLETED]

    def stopped_configs(self) -> list[dict[str, Any]]:
        """Configurations of STOPPED trials that no later trial has evaluated (to run again)."""
        done = {config_key(self.space, t.config) for t in self._trials if t.state is not TrialState.STOPPED}
        out: dict[str, dict[str, Any]] = {}
        for t in self._trials:
            key = config_key(self.space, t.config)
            if t.state is TrialState.STOPPED and key not in done:
                out.setdefault(key, t.config)
        return list(out.values())

    def add_trial(self, config: dict[str, Any], suggest_seconds: float | None = None,
                  suggest_notes: dict[str, Any] | None = None,
                  user_attrs: dict[str, Any] | None = None) -> TrialRecord:
        """Record a new RUNNING trial (``user_attrs`` such as its ``origin``, kept when it finishes) and save."""
        record = TrialRecord(
            len(self._trials), dict(config), started_at=time.time(), suggest_seconds=suggest_seconds,
            suggest_notes=dict(suggest_notes or {}), user_attrs=dict(user_attrs or {}),
        )
        self._trials.append(record)
        self.save()
        return record

    def complete_trial(
        self, number: int, values: dict[str, float], user_attrs: dict[str, Any] | None = None
    ) -> TrialRecord:
        """Mark a trial COMPLETED with its validation metrics, and save."""
        return self._finish(number, TrialState.COMPLETED, values=dict(values), user_attrs=user_attrs)

    def prune_trial(self, number: int, values: dict[str, float], user_attrs: dict[str, Any] | None = None
                    ) -> TrialRecord:
        """Mark a trial PRUNED (stopped early) with its partial metrics; ``user_attrs`` say where and why."""
        return self._finish(number, TrialState.PRUNED, values=dict(values), user_attrs=user_attrs)

    def fail_trial(self, number: int, error: str, user_attrs: dict[str, Any] | None = None) -> TrialRecord:
        """Mark a trial FAILED with its reason, and save."""
        return self._finish(number, TrialState.FAILED, error=error, user_attrs=user_attrs)

    def set_test_values(self, number: int, metrics: dict[str, float]) -> TrialRecord:
        """Store test metrics of a (front) trial, and save."""
        record = dataclasses.replace(self._trials[number], test_values=dict(metrics))
        self._replace(record)
        self.save()
        return record

    def set_user_attr(self, number: int, key: str, value: Any) -> TrialRecord:
        """Store one JSON-ready user attribute of a trial, and save."""
        old = self._trials[number]
        record = dataclasses.replace(old, user_attrs={**old.user_attrs, key: value})
        self._replace(record)
        self.save()
        return record

    def _finish(self, number: int, state: TrialState, **changes: Any) -> TrialRecord:
        old = self._trials[number]
        attrs = {**old.user_attrs, **(changes.pop("user_attrs") or {})}
        record = dataclasses.replace(old, state=state, finished_at=time.time(), user_attrs=attrs, **changes)
        self._replace(record)
        self.save()
        return record

    def _replace(self, record: TrialRecord) -> None:
        self._trials[record.number] = record

    # ----------------------------------------------------------------- front
    def pareto_trials(self) -> list[TrialRecord]:
        """COMPLETED, feasible, non-dominated trials on the validation objectives."""
        done = self.completed()
        idx = pareto_indices([t.values for t in done], self.space.objectives, self.space.parsed_constraints)
        return [done[i] for i in idx]

    def reference_point(self) -> dict[str, float] | None:
        """The raw reference point: the space's ``optimizer.ref_point``, else inferred from the start.

        See :func:`search.pareto.study_reference_point`; None before any feasible trial.
        """
        return study_reference_point(
            [t.values if t.state is TrialState.COMPLETED else None for t in self.finished()],
            self.space.objectives, self.space.optimizer.ref_point, self.space.parsed_constraints,
            self.space.optimizer.init_trials,
        )

    def hypervolume(self) -> float:
        """Hypervolume of the front with respect to :meth:`reference_point`."""
        return hypervolume(
            [t.values for t in self.completed()], self.space.objectives, self.reference_point(),
            self.space.parsed_constraints,
        )

    def knee_trial(self) -> TrialRecord | None:
        """The front trial closest to the utopia point (normalised objectives), or None."""
        done = self.completed()
        i = knee_index([t.values for t in done], self.space.objectives, self.space.parsed_constraints)
        return None if i is None else done[i]

    # ----------------------------------------------------------------- storage
    def to_json(self) -> dict[str, Any]:
        """The JSON document written to ``study.json``."""
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "created_at": self.created_at,
            "space_source": self.space.source,
            "space_overrides": list(self.space.overrides),
            "space_text": self.space.text,
            "space": self.space.model_dump(mode="json"),
            "provenance": self.provenance,
            "space_yaml_sha256": self._space_yaml_sha256,
            "trials": [t.to_json() for t in self._trials],
        }

    def save(self) -> None:
        """Write ``space.yaml`` (when it changed) and ``study.json`` atomically (temp file + ``os.replace``).

        ``space.yaml`` is the space the study runs with: the file as written when nothing changed
        it, else the effective settings after the ``--set`` and option overrides (named in its
        header), so that ``run --space <study>/space.yaml`` searches the same space. A file the
        user edited is the space's text (:meth:`open` honours it), so it is not written again.

        Raises:
            StudyError: the study was opened read-only (:meth:`load`).
        """
        if self.read_only:
            raise StudyError(f"study {self.name!r} was opened read-only; open it with Study.open to change it")
        self.directory.mkdir(parents=True, exist_ok=True)
        text = effective_yaml(self.space)
        path = self.directory / SPACE_FILE
        if self.edited_space_text() != text and (_sha256(text) != self._space_yaml_sha256 or not path.exists()):
            atomic_write(path, text)
        self._space_yaml_sha256 = _sha256(text)
        atomic_write(self.directory / STUDY_FILE, json.dumps(self.to_json(), indent=1))


MIN_FREE_BYTES = 50 * 2 ** 20


def probe_study_dir(study_dir: str | Path) -> None:
    """Before the first trial: ``study_dir`` can be created and written, and its disk has room.

    Raises:
        StudyWriteError: naming the directory, what failed and what to do.
    """
    path = Path(study_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise StudyWriteError(f"--study-dir {study_dir}: cannot write there ({err.strerror or err}); "
                              "pick a writable --study-dir or fix its permissions") from err
    free = shutil.disk_usage(path).free
    if free < MIN_FREE_BYTES:
        raise StudyWriteError(f"--study-dir {study_dir}: only {free / 2 ** 20:.0f} MB free on its disk, a study "
                              f"needs {MIN_FREE_BYTES / 2 ** 20:.0f} MB at least; free space there or pick another "
                              "--study-dir")


def check_study_name(name: str) -> str:
    """A study name must stay inside its study directory: no absolute path, no ``..``, no empty part.

    (``a/users/b``, a per-user study, is fine; ``../escape`` is not.)

    Raises:
        StudyError: naming the name and the fix.
    """
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p in ("..", ".") for p in parts) or "\\" in name:
        raise StudyError(f"study name {name!r} would leave the study directory; use a plain name "
                         "(letters, digits, . _ -) and --study-dir for the place")
    return name


def effective_yaml(space: Space) -> str:
    """The space as written when it has no overrides, else its effective settings with a header."""
    if space.text and not space.overrides:
        return space.text
    header = [f"# the space {space.source} as this study runs it"]
    header += [f"#   override: {item}" for item in space.overrides]
    return "\n".join(header) + "\n" + dump_yaml(space)


def dump_yaml(space: Space) -> str:
    """The parsed space as YAML (for a space built in code, which has no text of its own)."""
    return yaml.safe_dump(space.model_dump(mode="json", exclude_none=True), sort_keys=False)


def atomic_write(path: Path, text: str) -> None:
    """Write a file so that a crash leaves the old or the new text, never a mix (temp file, fsync, replace)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise





def run_provenance(space: Space) -> dict[str, Any]:
    """The provenance record of a space's trials (:func:`search.study.provenance.provenance`)."""
    return provenance(space)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _names(study_dir: Path) -> str:
    """The studies (and per-user studies) under ``study_dir``, for messages."""
    found = sorted(p.parent.name for p in study_dir.glob(f"*/{STUDY_FILE}"))
    found += sorted(p.parent.name for p in study_dir.glob("*/cohort.json"))
    return ", ".join(found) or "none"
__all__ = ["Study", "TrialRecord", "TrialState"]
