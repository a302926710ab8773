"""The search-space YAML schema: typed, closed, validated on load.

A space file has the sections ``name``, ``model``, ``data``, ``training`` (plain settings handed
to the trial runner), ``objectives`` (metric -> ``max``/``min``), ``constraints`` (strings such
as ``"storage_bytes <= 5e6"``), ``report`` (metrics shown beside the objectives, not optimised),
``parameters`` (name -> a typed parameter) and ``optimizer``.
Unknown keys are rejected; every error names the file, the key path and the fix.
"""

from __future__ import annotations

import difflib
import importlib.resources
import json
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from runners.spec import (
    DataSpec,
    ModelSpec,
    MonitorSpec,
    TrainSpec,
    parse_layer_indices,
    setting_names,
)
from search.errors import SpaceError

Direction = Literal["max", "min"]
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_CONDITION_RE = re.compile(rf"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=|==|!=|<|>)\s*({_NUMBER})\s*$")
_CONSTRAINT_RE = re.compile(rf"^\s*([A-Za-z_][\w.\-]*)\s*(<=|>=)\s*({_NUMBER})\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
_SECTIONS = ("name", "model", "data", "training", "objectives", "constraints", "report", "optimizer", "scope",
             "early_stopping", "warm_start")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- settings sections
# The model, data and training sections are the trial runner's own settings types
# (runners.spec.ModelSpec, DataSpec, TrainSpec): defined once, validated here on load.


class NutsSettings(_Strict):
    """NUTS settings of the fully Bayesian SAAS fit (``optimizer.nuts``)."""

    warmup: int = Field(64, ge=1)
    samples: int = Field(32, ge=1)
    thinning: int = Field(4, ge=1)


SaasFit = Literal["nuts", "map"]
SaasDesign = Literal["spread", "sobol"]


class SaasChoices(_Strict):
    """What a user may choose of the SAAS optimisers (``optimizer.saas``); other optimisers ignore it.

    Unset, each takes the optimiser's own default (``saas-nehvi``: ``nuts``, ``spread``, ``true``;
    ``saas-map``: ``map``, ``sobol``, ``false``); see ``search.optimizers.saas.settings.SaasSettings``.
    ``fit``: fully Bayesian NUTS samples of the SAAS GP (``optimizer.nuts``) or the MAP ensemble
    (seconds a fit); ``design``: the quasi-random start spread over storage as well as the space, or
    plain Sobol; ``flag_screen``: from 20 observations on, the surrogates see only the layer flags a
    sparse linear model finds an effect of one by one.
    """

    fit: SaasFit | None = None
    design: SaasDesign | None = None
    flag_screen: bool | None = None


class EarlyStoppingSettings(_Strict):
    """The ``early_stopping:`` section of a space (off by default; ``--early-stop`` turns it on)."""

    enabled: bool = False
    every: int = Field(4, ge=1)
    generate_every: int = Field(1, ge=1)
    queries: int = Field(2, ge=1)
    min_steps: int = Field(8, ge=0)
    confidence: float = Field(0.9, gt=0.5, lt=1.0)
    #: Measured objectives within this fraction of the finished trial's value count as tied (0: exact).
    margin: float = Field(0.0, ge=0.0, lt=1.0)
    #: No trial stops at a checkpoint until this many finished trials have passed it (as Optuna's
    #: ``n_startup_trials``); at 3, every stopped trial's final values can be estimated for the surrogate.
    min_finished: int = Field(3, ge=1)

    def monitor(self) -> MonitorSpec:
        """What the runner must report."""
        return MonitorSpec(every=self.every, generate_every=self.generate_every, queries=self.queries)


class WarmStartSettings(_Strict):
    """The ``warm_start:`` section: per-user studies start from the users searched before.

    ``enabled`` (or ``--warm-start``) seeds each new user's study with configurations of the
    earlier users' common front (up to ``max_points`` of them), evaluated first; they count towards
    the quasi-random start. The common front is that of every earlier user's trials put on one
    level (through the configurations users ran in common) and merged per configuration; its knee
    comes first, then each time the point adding the most hypervolume. The BO optimisers also learn
    from the earlier users' trials, every user's, summarised in at most ``max_observations`` rows
    (the common front, then each user's own front and its trials in turn; a configuration several
    users ran is one row): they enter the surrogate with a same-user input
    (``search.optimizers.user_transfer``), and the model takes over after ``max_points +
    own_points`` trials (the front points, then ``own_points`` quasi-random points of the user's
    own) instead of after ``optimizer.init_trials``. With the defaults (``max_points: 1``,
    ``own_points: 0``) a new user runs the common front's knee, which puts it on the earlier users'
    level, and the model suggests from its second trial: on 20 users of ``bench/per_user_early.py``
    that was better than two front points for users alike and level with them for users unlike
    each other, and better than an own point for both (``docs/benchmarks.md``, "Twenty users").
    The summary keeps a suggestion's fit the same size whatever the number of earlier users (48
    rows: about 10 CPU s per ``saas-nehvi`` suggestion).
    ``max_observations: 0`` keeps the front points alone; ``max_points: 0`` keeps the usual
    quasi-random start, and the earlier trials act through the model alone.
    """

    enabled: bool = False
    max_points: int = Field(1, ge=0)
    max_observations: int = Field(48, ge=0)
    own_points: int = Field(0, ge=0)

    def start_trials(self) -> int:
        """A warm-started user's trials before its model suggests: the front points, then ``own_points``
        quasi-random points (a model with earlier users' rows needs one value of the user's own)."""
        return self.max_points + self.own_points


class OptimizerSettings(_Strict):
    """The optimiser and its budget (``optimizer:`` section)."""

    name: str = "saas-nehvi"
    init_trials: int = Field(6, ge=0)
    trials: int = Field(16, ge=1)
    batch_size: int = Field(1, ge=1)
    seed: int = 0
    nuts: NutsSettings = Field(default_factory=NutsSettings)
    saas: SaasChoices = Field(default_factory=SaasChoices)
    max_seconds_per_suggestion: float | None = Field(None, gt=0.0)
    trial_timeout_s: float | None = Field(None, gt=0.0)
    ref_point: dict[str, float] | None = None
    ideal_point: dict[str, float] | None = None


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Condition:
    """``when: "<param> <op> <number>"``: the parameter is active only when this holds."""

    param: str
    op: str
    value: float

    def holds(self, parent_value: Any) -> bool:
        """Whether the condition holds for the parent's value (non-numbers never satisfy it)."""
        if isinstance(parent_value, bool) or not isinstance(parent_value, (int, float)):
            return False
        return _OPS[self.op](float(parent_value), self.value)


def parse_condition(text: str) -> Condition:
    """Parse ``"lora.count > 0"`` into a :class:`Condition`.

    Raises:
        ValueError: the text is not ``<param> <op> <number>``.
    """
    match = _CONDITION_RE.match(text)
    if match is None:
        raise ValueError(f"when={text!r} is not '<param> <op> <number>' with op in <, <=, >, >=, ==, !=")
    return Condition(match.group(1), match.group(2), float(match.group(3)))


class _Param(_Strict):
    when: str | None = None

    @field_validator("when")
    @classmethod
    def _parse_when(cls, text: str | None) -> str | None:
        if text is not None:
            parse_condition(text)
        return text

    @property
    def condition(self) -> Condition | None:
        """The parsed ``when`` condition, or None when the parameter is always active."""
        return None if self.when is None else parse_condition(self.when)


class LayerMaskParam(_Param):
    """One on/off flag per model layer; ``default`` is ``all``, ``none``, ``top:N`` or layer indices.

    ``size`` is the number of layers; left out, it is taken from the model by ``Space.bind``.
    ``fixed: true`` (set by ``--set lora.layers=...``) pins the mask to its default.
    """

    type: Literal["layer_mask"]
    default: str | list[int] = "all"
    size: int | None = Field(None, ge=1)
    fixed: bool = False

    @field_validator("default", mode="before")
    @classmethod
    def _parse_default(cls, value: Any) -> Any:
        parsed = parse_layer_indices(value)
        return parsed if isinstance(parsed, str) else list(parsed)

    @model_validator(mode="after")
    def _indices_in_range(self) -> "LayerMaskParam":
        if isinstance(self.default, list):
            parse_layer_indices(self.default, self.size)
        return self

    def mask(self) -> list[int]:
        """The default mask as 0/1 flags, one per layer.

        Raises:
            SpaceError: the layer count is not known yet (call ``Space.bind`` first).
        """
        if self.size is None:
            raise SpaceError("layer_mask size is unknown; call Space.bind(n_layers) or set size in the space")
        on = set(parse_layer_indices(self.default, self.size))
        return [1 if i in on else 0 for i in range(self.size)]


class RangeParam(_Param):
    """A number in ``[low, high]`` (both included), optionally on a log scale: what ``int`` and ``float`` share.

    The two YAML types are the two subclasses below; they differ only in the type of their bounds
    and default (pydantic checks an ``int``'s are integers).
    """

    type: Literal["int", "float"]
    low: float
    high: float
    log: bool = False
    default: float | None = None

    @model_validator(mode="after")
    def _check_range(self) -> "RangeParam":
        _check_range(self.low, self.high, self.log, self.default)
        return self

    def default_value(self) -> float:
        """The default, or ``low`` when none is given."""
        return self.low if self.default is None else self.default


class IntParam(RangeParam):
    """An integer in ``[low, high]`` (both included), optionally on a log scale (YAML ``type: int``)."""

    type: Literal["int"]
    low: int
    high: int
    default: int | None = None


class FloatParam(RangeParam):
    """A real number in ``[low, high]``, optionally on a log scale (YAML ``type: float``)."""

    type: Literal["float"]


class ChoiceParam(_Param):
    """One of a list of values (numbers are treated as ordered, strings as categories)."""

    type: Literal["choice"]
    values: list[Union[bool, int, float, str]] = Field(min_length=1)
    default: Union[bool, int, float, str, None] = None

    @model_validator(mode="after")
    def _check_values(self) -> "ChoiceParam":
        if len(set(map(repr, self.values))) != len(self.values):
            raise ValueError(f"values={self.values} has duplicates; list each value once")
        if self.default is not None and self.default not in self.values:
            raise ValueError(f"default={self.default!r} is not one of values={self.values}; pick one of them")
        return self

    def default_value(self) -> Any:
        """The default, or the first value when none is given."""
        return self.values[0] if self.default is None else self.default

    @property
    def numeric(self) -> bool:
        """True when every value is a number (the values then have a natural order)."""
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)


class FixedParam(_Param):
    """A value that is not searched."""

    type: Literal["fixed"]
    value: Any

    def default_value(self) -> Any:
        """The fixed value."""
        return self.value


def _check_range(low: float, high: float, log: bool, default: float | None) -> None:
    if low > high:
        raise ValueError(f"low={low} > high={high}; swap them")
    if log and low <= 0:
        raise ValueError(f"log=true needs low > 0, got low={low}; raise low or set log: false")
    if default is not None and not low <= default <= high:
        raise ValueError(f"default={default} is outside [low={low}, high={high}]; pick a default in range")


Parameter = Annotated[
    Union[LayerMaskParam, IntParam, FloatParam, ChoiceParam, FixedParam], Field(discriminator="type")
]
PARAM_TYPES: dict[str, type[_Param]] = {
    "layer_mask": LayerMaskParam, "int": IntParam, "float": FloatParam, "choice": ChoiceParam, "fixed": FixedParam,
}


@dataclass(frozen=True)
class Constraint:
    """An outcome constraint ``metric <= bound`` or ``metric >= bound``."""

    metric: str
    op: str
    bound: float

    def satisfied(self, value: float) -> bool:
        """Whether a metric value satisfies the constraint."""
        return _OPS[self.op](value, self.bound)


def parse_constraint(text: str) -> Constraint:
    """Parse ``"storage_bytes <= 5e6"`` into a :class:`Constraint`.

    Raises:
        ValueError: the text is not ``<metric> <= <number>`` or ``<metric> >= <number>``.
    """
    match = _CONSTRAINT_RE.match(text)
    if match is None:
        raise ValueError(f"constraint {text!r} is not '<metric> <= <number>' or '<metric> >= <number>'")
    return Constraint(match.group(1), match.group(2), float(match.group(3)))


# --------------------------------------------------------------------------- the space
class Space(_Strict):
    """A parsed search space. Build it with :func:`load_space` or :func:`parse_space`."""

    name: str
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    training: TrainSpec = Field(default_factory=TrainSpec)
    objectives: dict[str, Direction] = Field(
        default_factory=lambda: {"rougeL": "max", "persona_f1": "max", "storage_bytes": "min"}, min_length=1
    )
    constraints: list[str] = Field(default_factory=list)
    report: list[str] = Field(default_factory=list)
    parameters: dict[str, Parameter] = Field(min_length=1)
    optimizer: OptimizerSettings = Field(default_factory=OptimizerSettings)
    scope: Literal["cohort", "per_user"] = "cohort"
    early_stopping: EarlyStoppingSettings = Field(default_factory=EarlyStoppingSettings)
    warm_start: WarmStartSettings = Field(default_factory=WarmStartSettings)

    _source: str = PrivateAttr("<string>")
    _text: str = PrivateAttr("")
    _overrides: tuple[str, ...] = PrivateAttr(())

    @field_validator("constraints")
    @classmethod
    def _parse_constraints(cls, items: list[str]) -> list[str]:
        for text in items:
            parse_constraint(text)
        return items

    @model_validator(mode="after")
    def _check_references(self) -> "Space":
        for name, param in self.parameters.items():
            cond = param.condition
            if cond is None:
                continue
            parent = self.parameters.get(cond.param)
            if parent is None:
                raise ValueError(
                    f"parameters.{name}.when: {cond.param!r} is not a parameter; use one of: {', '.join(self.parameters)}"
                )
            numeric = isinstance(parent, (IntParam, FloatParam, FixedParam)) or (
                isinstance(parent, ChoiceParam) and parent.numeric
            )
            if not numeric or parent.condition is not None or cond.param == name:
                raise ValueError(
                    f"parameters.{name}.when: {cond.param!r} must be an unconditional numeric parameter (int, float, "
                    "numeric choice or fixed)"
                )
        for key in ("ref_point", "ideal_point"):
            unknown = set(getattr(self.optimizer, key) or {}) - set(self.objectives)
            if unknown:
                raise ValueError(
                    f"optimizer.{key}: {sorted(unknown)} are not objectives; use keys from: {', '.join(self.objectives)}"
                )
        return self

    # ----------------------------------------------------------------- derived views
    @property
    def source(self) -> str:
        """Where the space came from (file path or bundled name), for messages."""
        return self._source

    @property
    def text(self) -> str:
        """The YAML as written (before overrides)."""
        return self._text

    @property
    def overrides(self) -> tuple[str, ...]:
        """The ``--set key=value`` items applied to the file, in order."""
        return self._overrides

    @property
    def parsed_constraints(self) -> list[Constraint]:
        """The outcome constraints, parsed."""
        return [parse_constraint(text) for text in self.constraints]

    @property
    def metrics(self) -> list[str]:
        """Objectives first, then metrics that appear only in constraints."""
        extra = [c.metric for c in self.parsed_constraints if c.metric not in self.objectives]
        return list(self.objectives) + list(dict.fromkeys(extra))

    @property
    def shown_metrics(self) -> list[str]:
        """The metrics a front shows beside the objectives: constrained ones, then ``report``'s."""
        extra = [c.metric for c in self.parsed_constraints] + list(self.report)
        return [m for m in dict.fromkeys(extra) if m not in self.objectives]

    @property
    def is_bound(self) -> bool:
        """True when every layer mask knows its layer count."""
        return all(p.size is not None for p in self.parameters.values() if isinstance(p, LayerMaskParam))

    def is_active(self, name: str, config: dict[str, Any]) -> bool:
        """Whether parameter ``name`` is active in ``config`` (its ``when`` holds, if any)."""
        cond = self.parameters[name].condition
        return cond is None or cond.holds(config.get(cond.param))

    def default_of(self, name: str) -> Any:
        """The default value of one parameter (layer masks expanded to 0/1 flags)."""
        param = self.parameters[name]
        return param.mask() if isinstance(param, LayerMaskParam) else param.default_value()

    def defaults(self) -> dict[str, Any]:
        """The configuration made of every parameter's default.

        Raises:
            SpaceError: a layer mask's size is unknown (call :meth:`bind` first).
        """
        self._require_bound()
        return {name: self.default_of(name) for name in self.parameters}

    # ----------------------------------------------------------------- new spaces
    @classmethod
    def from_record(cls, parsed: dict[str, Any], source: str, text: str = "",
                    overrides: tuple[str, ...] | list[str] = ()) -> "Space":
        """Rebuild a space a study stored (as parsed), remembering where it came from.

        Raises:
            SpaceError: the stored space is no longer valid.
        """
        space = _validate(parsed, source)
        space._source, space._text, space._overrides = source, text, tuple(overrides)
        return space

    def bind(self, n_layers: int) -> "Space":
        """Return a copy whose layer masks have ``n_layers`` flags.

        Raises:
            SpaceError: a mask already has another size, or its default names a missing layer.
        """
        raw = self.model_dump(mode="json")
        for name, param in raw["parameters"].items():
            if param["type"] != "layer_mask":
                continue
            if param["size"] not in (None, n_layers):
                raise SpaceError(
                    f"space {self._source}: parameters.{name}.size: size={param['size']} but the model has "
                    f"{n_layers} layers; remove size or set it to {n_layers}"
                )
            param["size"] = n_layers
        return self._revalidate(raw, self._source, self._overrides)

    def with_overrides(self, sets: list[str]) -> "Space":
        """Return a copy with ``--set key=value`` overrides applied.

        A parameter name (``lora.rank=8``, ``lora.layers=0,1`` / ``all`` / ``none``) pins that
        parameter to a fixed value; a dotted setting (``training.epochs=2``, ``data.users=4``,
        ``optimizer.trials=10``, ``model.name=tiny``) changes a setting. Values are parsed as YAML.

        Raises:
            SpaceError: malformed item, unknown key, or a value the schema rejects.
        """
        raw = self.model_dump(mode="json")
        for item in sets:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise SpaceError(f"--set {item!r}: expected key=value, e.g. --set training.epochs=2")
            value = yaml.safe_load(text) if text.strip() else None
            if key in raw["parameters"]:
                _check_pin(self._source, key, raw["parameters"][key], value)
                raw["parameters"][key] = _pinned(raw["parameters"][key], value)
            elif key.split(".")[0] in _SECTIONS:
                _set_nested(raw, key.split("."), value, item)
            else:
                raise SpaceError(
                    f"--set {item!r}: unknown key {key!r}; use a parameter name ({', '.join(raw['parameters'])}) "
                    f"or a setting under {', '.join(_SECTIONS)}"
                )
        return self._revalidate(raw, f"{self._source} (with --set)", self._overrides + tuple(sets))

    def with_optimizer(self, **changes: Any) -> "Space":
        """Return a copy with optimizer settings changed (``trials=``, ``seed=``, ``name=`` ...).

        Raises:
            SpaceError: a value the schema rejects.
        """
        changes = {k: v for k, v in changes.items() if v is not None and v != getattr(self.optimizer, k)}
        if not changes:
            return self
        raw = self.model_dump(mode="json")
        raw["optimizer"].update(changes)
        items = tuple(f"optimizer.{k}={json.dumps(v)}" for k, v in changes.items())
        return self._revalidate(raw, self._source, self._overrides + items)

    def check_objectives(self, reported: set[str]) -> None:
        """Check that the trial runner reports every objective and constrained metric.

        Raises:
            SpaceError: some are not reported; the message lists what is.
        """
        missing = [m for m in self.objectives if m not in reported]
        if missing:
            raise SpaceError(
                f"space {self._source}: objectives: {', '.join(missing)} not reported by the trial runner; "
                f"choose from: {', '.join(sorted(reported))}"
            )
        for constraint in self.constraints:
            if parse_constraint(constraint).metric not in reported:
                raise SpaceError(
                    f"space {self._source}: constraints: {constraint!r} names a metric the trial runner does not "
                    f"report; use one of: {', '.join(sorted(reported))}"
                )
        unknown = [m for m in self.report if m not in reported]
        if unknown:
            raise SpaceError(
                f"space {self._source}: report: {', '.join(unknown)} not reported by the trial runner; "
                f"choose from: {', '.join(sorted(reported))}"
            )

    def search_signature(self) -> dict[str, Any]:
        """What must match for a stored study to be resumed with this space."""
        raw = self.model_dump(mode="json")
        return {k: raw[k] for k in ("parameters", "objectives", "constraints")}

    def _require_bound(self) -> None:
        if not self.is_bound:
            raise SpaceError(
                f"space {self._source}: parameters: a layer_mask has no size; call Space.bind(n_layers) "
                "or set size: N in the space"
            )

    def _revalidate(self, raw: dict[str, Any], source: str, overrides: tuple[str, ...]) -> "Space":
        space = _validate(raw, source)
        space._source, space._text, space._overrides = self._source, self._text, overrides
        return space


def _check_pin(source: str, key: str, param: dict[str, Any], value: Any) -> None:
    """A pinned value must be one the space allows: a choice among ``values``, a number in range.

    Raises:
        SpaceError: naming the key, the value and what is allowed.
    """
    kind, where = param["type"], f"--set {key}={value}"
    if kind == "choice" and value not in param["values"]:
        raise SpaceError(f"{where}: {value!r} is not allowed for {key} in space {source}; "
                         f"allowed values: {', '.join(map(str, param['values']))}")
    if kind in ("int", "float"):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind == "int" and not float(value).is_integer()):
            raise SpaceError(f"{where}: {key} takes {'an integer' if kind == 'int' else 'a number'} in "
                             f"[{param['low']}, {param['high']}] (space {source}); got {value!r}")
        if not param["low"] <= value <= param["high"]:
            raise SpaceError(f"{where}: {value} is outside the range of {key} in space {source}; "
                             f"allowed: {param['low']} to {param['high']}")


def _pinned(param: dict[str, Any], value: Any) -> dict[str, Any]:
    if param["type"] == "layer_mask":
        return {**param, "default": value, "fixed": True}
    return {"type": "fixed", "value": value, "when": param.get("when")}


def _set_nested(raw: dict[str, Any], keys: list[str], value: Any, item: str) -> None:
    node = raw
    for key in keys[:-1]:
        if node.get(key) is None and key in ("ref_point", "ideal_point"):
            node[key] = {}
        if not isinstance(node.get(key), dict):
            raise SpaceError(f"--set {item!r}: {key!r} is not a section; check the key path")
        node = node[key]
    node[keys[-1]] = value


# --------------------------------------------------------------------------- loading
def bundled_spaces() -> list[str]:
    """Names of the spaces shipped in the ``spaces`` package."""
    root = importlib.resources.files("spaces")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_space(source: str | Path) -> Space:
    """Load a space from a YAML path, or by bundled name (``milp``, ``milp.yaml``, ``tiny``).

    An existing path wins over a bundled name; ``spaces/<name>.yaml`` names the bundled space
    when no such file exists (so the README's commands work outside a checkout).

    Raises:
        SpaceError: not found, not YAML, or not a valid space.
    """
    path = Path(source)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise SpaceError(f"space {source}: not UTF-8 text (byte {err.start}: {err.reason}); "
                             "save the file as UTF-8") from err
        return parse_space(text, str(source))
    name = str(source).removesuffix(".yaml").removesuffix(".yml")
    name = name.removeprefix("spaces/")  # the checkout path of a bundled space works from anywhere
    resource = importlib.resources.files("spaces") / f"{name}.yaml"
    if "/" not in name and resource.is_file():
        return parse_space(resource.read_text(encoding="utf-8"), f"{name}.yaml")
    raise SpaceError(
        f"space {source}: no such file and no bundled space of that name; give a YAML path or one of: "
        f"{', '.join(bundled_spaces())}"
    )


def parse_space(text: str, source: str = "<string>") -> Space:
    """Parse YAML text into a :class:`Space`; ``source`` names it in messages.

    Raises:
        SpaceError: not YAML, or not a valid space.
    """
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpaceError(f"space {source}: {_yaml_problem(err)}; fix the syntax there") from err
    if raw is None:
        raise SpaceError(f"space {source}: the file is empty; start from a bundled space (e.g. spaces/tiny.yaml) "
                         "with name, parameters and objectives")
    if not isinstance(raw, dict):
        raise SpaceError(f"space {source}: top level must be a mapping with name, parameters, ...; got {type(raw).__name__}")
    space = _validate(raw, source)
    space._source, space._text = source, text
    return space


def _yaml_problem(err: yaml.YAMLError) -> str:
    """``not valid YAML at line L column C: <problem>`` (1-based, as editors count)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context = getattr(err, "context", None)
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"not valid YAML{where}: {problem}" + (f" ({context})" if context else "")


def _validate(raw: dict[str, Any], source: str) -> Space:
    try:
        return Space.model_validate(raw)
    except ValidationError as err:
        raise SpaceError(_format_errors(err, source)) from err


def _format_errors(err: ValidationError, source: str) -> str:
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")  # a misspelt key explains the rest
    first = _format_one(errors[0])
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"space {source}: {first}{more}"


def _format_one(error: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    if len(loc) >= 3 and loc[0] == "parameters" and loc[2] in PARAM_TYPES:
        loc = loc[:2] + loc[3:]
    path = ".".join(loc) or "(top level)"
    kind, msg = error["type"], error["msg"]
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        allowed = _allowed_keys(tuple(str(p) for p in error["loc"][:-1]))
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{path}: unknown key; allowed keys: {', '.join(allowed)}{hint}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = error.get("input", {}).get("type") if isinstance(error.get("input"), dict) else None
        return f"{path}.type: {got!r} is not a parameter type; use one of: {', '.join(PARAM_TYPES)}"
    if kind == "missing":
        return f"{path}: required key is missing; add it"
    if kind == "value_error":  # a whole-space check names its own key path
        return (f"{path}: " if loc else "") + msg.removeprefix("Value error, ")
    return f"{path}: {msg[:1].lower()}{msg[1:]} (got {error.get('input')!r})"


def _allowed_keys(loc: tuple[str, ...]) -> list[str]:
    if loc and loc[0] in ("model", "data", "training"):
        return setting_names(loc[0])
    model: type[BaseModel] = Space
    sections = {"optimizer": OptimizerSettings, "early_stopping": EarlyStoppingSettings,
                "warm_start": WarmStartSettings}
    if loc[:2] == ("optimizer", "nuts"):
        model = NutsSettings
    elif loc[:2] == ("optimizer", "saas"):
        model = SaasChoices
    elif loc and loc[0] in sections:
        model = sections[loc[0]]
    elif len(loc) == 3 and loc[0] == "parameters":
        model = PARAM_TYPES.get(loc[2], Space)
    return list(model.model_fields)

