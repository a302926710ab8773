"""The files of a study as data: ``study.json`` and ``cohort.json`` validated on load.

A damaged or hand-edited file is reported in one line that names the file, the trial and the
field, and the fix; the tool never stops on it with a traceback. Validation is pydantic on the
file's shape (types, required keys, states), then each trial's configuration against the space it
was run with (every parameter present, values the space allows).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from search.errors import StudyError
from search.space import ChoiceParam, FixedParam, FloatParam, IntParam, LayerMaskParam, Space

_FIX = "restore the file from a backup or undo the edit, or start a new study under another name"
STATES = ("running", "completed", "failed", "stopped", "pruned")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)


class TrialFile(_Lenient):
    """One trial as ``study.json`` stores it."""

    number: int = Field(ge=0)
    config: dict[str, Any]
    state: Literal[STATES]  # type: ignore[valid-type]
    values: dict[str, float] = Field(default_factory=dict)
    test_values: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    suggest_seconds: float | None = None
    suggest_notes: dict[str, Any] = Field(default_factory=dict)
    user_attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("values", "test_values", mode="before")
    @classmethod
    def _no_booleans(cls, values: Any) -> Any:
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, bool) or value is None:
                    raise ValueError(f"{key}: {value!r} is not a number")
        return values


class StudyFile(_Lenient):
    """``study.json``."""

    format: int = 1
    name: str
    created_at: float | None = None
    space_source: str = "space.yaml"
    space_overrides: list[str] = Field(default_factory=list)
    space_text: str = ""
    space: dict[str, Any]
    trials: list[TrialFile]
    provenance: dict[str, Any] | None = None
    space_yaml_sha256: str | None = None


class CohortFile(_Lenient):
    """``cohort.json`` of a per-user study."""

    format: int = 1
    users: list[str] = Field(min_length=1)
    created_at: float | None = None
    space_source: str = "cohort.json"
    space_overrides: list[str] = Field(default_factory=list)
    space_text: str = ""
    space: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None

    @field_validator("users")
    @classmethod
    def _distinct(cls, users: list[str]) -> list[str]:
        repeated = sorted({u for u in users if users.count(u) > 1})
        if repeated:
            raise ValueError(f"user ids repeat: {repeated[:3]}")
        return users


def read_json(path: Path, what: str) -> Any:
    """A JSON file's data, or a :class:`StudyError` naming it (missing files raise ``FileNotFoundError``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise StudyError(f"{what}: {path} is not UTF-8 text ({err.reason} at byte {err.start}); {_FIX}") from err
    try:
        return json.loads(text)
    except ValueError as err:
        raise StudyError(f"{what}: {path} is not valid JSON ({err}); {_FIX}") from err


def validate_study_file(data: Any, path: Path, what: str) -> StudyFile:
    """``study.json`` checked for shape.

    Raises:
        StudyError: one line naming the file, the trial and the field.
    """
    return _validated(StudyFile, data, path, what)


def validate_cohort_file(data: Any, path: Path, what: str) -> CohortFile:
    """``cohort.json`` checked for shape.

    Raises:
        StudyError: one line naming the file and the field.
    """
    return _validated(CohortFile, data, path, what)


def _validated(model: type[_Lenient], data: Any, path: Path, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise StudyError(f"{what}: {path}: {_where(err, data)}; {_FIX}") from err


def check_trials(study: StudyFile, space: Space, path: Path, what: str) -> None:
    """Each trial's number is its place, and its configuration is one the space allows.

    Raises:
        StudyError: naming the trial, the parameter and the value.
    """
    for place, trial in enumerate(study.trials):
        where = f"{what}: {path}: trials[{place}]"
        if trial.number != place:
            raise StudyError(f"{where}.number: {trial.number} but it is trial {place} of the file; {_FIX}")
        unknown = sorted(set(trial.config) - set(space.parameters))
        if unknown:
            raise StudyError(f"{where}.config: {unknown[0]!r} is not a parameter of the study's space "
                             f"({', '.join(space.parameters)}); {_FIX}")
        for name, param in space.parameters.items():
            if name not in trial.config:
                raise StudyError(f"{where}.config: {name!r} is missing; {_FIX}")
            problem = _value_problem(param, trial.config[name])
            if problem:
                raise StudyError(f"{where}.config.{name}: {problem}; {_FIX}")


def _value_problem(param: Any, value: Any) -> str | None:
    """What is wrong with one parameter value of a stored configuration, or None."""
    if isinstance(param, LayerMaskParam):
        if not isinstance(value, list) or any(v not in (0, 1) or isinstance(v, float) for v in value):
            return f"{_short(value)} is not a list of 0/1 layer flags"
        if param.size is not None and len(value) != param.size:
            return f"{len(value)} layer flags, the space has {param.size} layers"
        return None
    if isinstance(param, (IntParam, FloatParam)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(param, IntParam) and not float(value).is_integer()):
            return f"{_short(value)} is not {'an integer' if isinstance(param, IntParam) else 'a number'}"
        if not param.low <= value <= param.high:
            return f"{value} is outside {param.low}..{param.high}"
        return None
    if isinstance(param, ChoiceParam) and value not in param.values:
        return f"{_short(value)} is not one of {param.values}"
    if isinstance(param, FixedParam) and value != param.value:
        return f"{_short(value)} but the parameter is fixed at {param.value!r}"
    return None


def _where(err: ValidationError, data: Any) -> str:
    """The first validation error as ``trials[3].values.rougeL: input should be a valid number (got 'x')``."""
    first = err.errors()[0]
    loc = first["loc"]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "the top level"
    if first["type"] == "missing":
        return f"{field}: missing"
    got = first.get("input")
    shown = f" (got {_short(got)})" if not isinstance(got, (dict, list)) or not got else ""
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{field}: {message}{shown}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
