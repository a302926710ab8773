"""The contract between ``search/`` and ``runners/``: frozen settings and configuration in,
a frozen result out.

- :class:`ModelSpec`, :class:`DataSpec`, :class:`TrainSpec`: the settings of a study, defined
  once. A space file's ``model``/``data``/``training`` sections are validated against these very
  classes (their field constraints are ``annotated_types`` metadata that pydantic enforces), so
  every setting a trial uses can be written in YAML and changed with ``--set``.
- :class:`TrialSetup`: the three together (plus the Per-Pcs pool directory), fixed for a study.
- :class:`TrialConfig`: what one trial personalizes (memory layers, count, rank, retrieval,
  shared pieces). :meth:`TrialConfig.from_flat` is the one parser of the flat
  ``{"lora.rank": 8, ...}`` form a search space produces; the key strings live in
  :data:`FLAT_KEYS` and nowhere else in the code.
- :class:`TrialResult`: averaged and per-user metrics, predictions and artifact paths.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping, Sequence

from annotated_types import Ge, Gt, Le, Lt

from runners.errors import ConfigError

DEFAULT_TARGETS = ("gate_proj", "up_proj", "down_proj")
SE_SUFFIX = "_se"  # ``rougeL_se``: the standard error of ``rougeL`` (bootstrap over users and queries)
DataFormat = Literal["jsonl", "lamp", "meddialogue"]
BASES = ("none", "cohort")  # what a trial's memory sits on: the base model, or it with the cohort adapter merged
# Unknown keys in a section are errors (pydantic reads this when it validates a space file).
_CLOSED = {"extra": "forbid"}


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ModelSpec:
    """Which base model to load and where (``model:`` section).

    ``name`` is ``smollm2-135m-instruct`` (the embedded default), ``tiny`` (a random Llama for
    tests), or a local Hugging Face causal-LM directory. ``dtype`` is ``auto``, ``float32``,
    ``float16`` or ``bfloat16``; ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``;
    ``targets`` are the projections that get LoRA memory.
    """

    __pydantic_config__ = _CLOSED

    name: str = "smollm2-135m-instruct"
    dtype: str = "auto"
    device: str = "auto"
    targets: tuple[str, ...] = DEFAULT_TARGETS


@dataclass(frozen=True)
class DataSpec:
    """Where the users come from and how each user's data is split (``data:`` section).

    ``source`` is ``demo`` or a file; ``format`` (``jsonl``, ``lamp``, ``meddialogue``) is
    detected from the file when None; ``outputs`` is a LaMP outputs file (found beside the
    questions file when None); ``task`` overrides the LaMP task read from the outputs;
    ``users`` is the cohort size (None: every user); ``user_ids`` names the cohort's users
    instead (a per-user study runs on one of them). ``users`` counts every user of the cohort,
    the held-out test users of a ``users`` split included.

    ``test_split`` says where the test queries come from (``runners.data.splits``): ``queries``
    splits each user's queries into validation and test, ``users`` holds out
    ``test_users_fraction`` of the cohort's users, rounded (all their queries are test queries, the
    search never sees them), ``auto`` is ``queries`` when every user has a test query of its own (two
    queries or more) and ``users`` otherwise.
    """

    __pydantic_config__ = _CLOSED

    source: str = "demo"
    format: DataFormat | None = None
    outputs: str | None = None
    task: str | None = None
    users: Annotated[int, Ge(1)] | None = 2
    user_ids: tuple[str, ...] | None = None
    split_seed: int = 0
    val_fraction: Annotated[float, Gt(0.0), Lt(1.0)] = 0.5
    heldout_fraction: Annotated[float, Ge(0.0), Lt(1.0)] = 0.1
    max_val_queries: Annotated[int, Ge(1)] | None = 4
    test_split: Literal["auto", "queries", "users"] = "auto"
    test_users_fraction: Annotated[float, Gt(0.0), Lt(1.0)] = 0.25


@dataclass(frozen=True)
class TrainSpec:
    """MiLP's two training steps, their optimiser settings and generation (``training:`` section).

    ``max_steps`` caps the optimiser steps of each step (None: no cap); ``lora_alpha`` is
    ``lora_alpha_ratio * rank``; ``max_prompt_tokens`` bounds a prompt with its retrieved items;
    ``gen_batch_size`` is the batch of generation and evaluation losses.

    ``min_steps`` is a floor on each step's optimiser steps (extra passes over a short
    history; ``max_steps`` still caps); ``autocast`` the training forward's precision (``auto``:
    bf16 where the device has it natively, a GPU or a CPU with bf16 instructions, else fp32); ``cache_frozen`` keeps the hidden states below the lowest LoRA layer (exact);
    ``pack`` packs short examples into rows; ``train_rag`` builds each instruction-tuning prompt
    as the trial's serving prompt is built (its ``rag.k`` items from the rest of the history by
    its retriever), as LaMP trains PEFT for retrieval-augmented serving; ``train_rag_k`` caps
    the items of those training prompts (None: the trial's ``rag.k``), since a prompt's items are
    most of its tokens and tokens are a trial's training cost.

    ``lr_full_items`` adapts the learning rate to the size of a user's history: a history of
    ``n`` training examples fewer than ``lr_full_items`` trains at ``lr * n / lr_full_items``
    (None: always ``lr``). With ``min_steps: 0`` the steps already scale with the history
    (``epochs`` passes); together they keep a 2-turn history from being learnt by heart
    (docs/notes/quality.md, section 5).
    """

    __pydantic_config__ = _CLOSED

    memory_injection: bool = True
    instruction_tuning: bool = True
    epochs: Annotated[int, Ge(0)] = 1
    max_steps: Annotated[int, Ge(1)] | None = 6
    max_seq_len: Annotated[int, Ge(8)] = 256
    batch_size: Annotated[int, Ge(1)] = 8
    lr: Annotated[float, Gt(0.0)] = 5e-4
    warmup_ratio: Annotated[float, Ge(0.0), Le(1.0)] = 0.1
    weight_decay: Annotated[float, Ge(0.0)] = 1e-4
    lora_alpha_ratio: Annotated[float, Gt(0.0)] = 2.0
    lora_dropout: Annotated[float, Ge(0.0), Lt(1.0)] = 0.0
    max_new_tokens: Annotated[int, Ge(1)] = 32
    max_prompt_tokens: Annotated[int, Ge(8)] = 384
    gen_batch_size: Annotated[int, Ge(1)] = 8
    seed: int = 0
    min_steps: Annotated[int, Ge(0)] = 8
    autocast: Literal["none", "bfloat16", "auto"] = "auto"
    cache_frozen: bool = True
    pack: bool = False
    train_rag: bool = True
    train_rag_k: Annotated[int, Ge(1)] | None = None
    lr_full_items: Annotated[int, Ge(1)] | None = None


SETTINGS_SECTIONS: dict[str, type] = {"model": ModelSpec, "data": DataSpec, "training": TrainSpec}


def setting_names(section: str) -> list[str]:
    """The keys a settings section accepts (``model``, ``data`` or ``training``)."""
    return [f.name for f in dataclasses.fields(SETTINGS_SECTIONS[section])]


@dataclass(frozen=True)
class TrialSetup:
    """Everything fixed across the trials of a study.

    ``pool_dir`` is where the Per-Pcs pool lives (None: found under the tool's home by model
    and data); only trials that use shared pieces read it. ``cohort`` is the whole cohort's data
    when ``data`` is narrowed to one user (a per-user search): what the cohort adapter
    (``lora.base=cohort``) is trained on; None means ``data`` is the cohort.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainSpec = field(default_factory=TrainSpec)
    pool_dir: str | None = None
    cohort: DataSpec | None = None

    @classmethod
    def from_dicts(
        cls,
        model: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        pool_dir: str | None = None,
    ) -> "TrialSetup":
        """Build a validated setup from plain ``model``/``data``/``training`` mappings.

        Raises:
            ConfigError: an unknown key or a value out of range; the message names the key.
        """
        return cls(
            model=_validated(ModelSpec, "model", model),
            data=_validated(DataSpec, "data", data),
            training=_validated(TrainSpec, "training", training),
            pool_dir=pool_dir,
        )


def _validated(kind: type, section: str, values: Mapping[str, Any] | None):
    from pydantic import (  # pydantic is only needed when validating
        TypeAdapter,
        ValidationError,
    )

    try:
        return TypeAdapter(kind).validate_python(dict(values or {}))
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if first["type"] == "unexpected_keyword_argument":
            raise ConfigError(f"{section}.{key}: unknown key; known keys are {setting_names(section)}") from err
        raise ConfigError(f"{section}.{key}: {first['msg']} (got {first.get('input')!r})") from err


# --------------------------------------------------------------------------- one trial's configuration
FLAT_KEYS: dict[str, str] = {
    "layers": "lora.layers", "count": "lora.count", "rank": "lora.rank", "rag_k": "rag.k",
    "retriever": "rag.retriever", "perpcs_top_k": "perpcs.top_k", "perpcs_retrieve": "perpcs.retrieve",
    "base": "lora.base", "lr_scale": "lora.lr_scale",
}


@dataclass(frozen=True)
class TrialConfig:
    """What one trial personalizes. The defaults switch everything off (the base model).

    Attributes:
        layers: indices of the transformer layers that get LoRA memory (sorted, distinct).
        count: parallel LoRA modules per selected projection (0: no memory).
        rank: rank of each module (must be >= 1 when ``count > 0``).
        rag_k: profile items retrieval puts in the prompt (0: no retrieval).
        retriever: the registered retriever that picks them (``bm25``, ``dense``, ...).
        perpcs_top_k: Per-Pcs pieces kept per layer-projection from the shared pool (0: off).
        perpcs_retrieve: whole sharer PEFTs retrieved and averaged instead (0: off).
        base: ``none`` (the base model) or ``cohort``: the cohort adapter (one LoRA trained on
            every cohort user's history, :mod:`runners.cohort`) merged into the base model, alone
            (a fixed baseline) or under the user's own memory.
        lr_scale: multiplies ``training.lr`` for this trial's memory (> 0): how hard the memory
            learns the user's history is worth searching when histories are short.
    """

    layers: tuple[int, ...] = ()
    count: int = 0
    rank: int = 0
    rag_k: int = 0
    retriever: str = "bm25"
    perpcs_top_k: int = 0
    perpcs_retrieve: int = 0
    base: str = "none"
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(sorted({int(i) for i in self.layers})))
        for name in ("count", "rank", "rag_k", "perpcs_top_k", "perpcs_retrieve"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{FLAT_KEYS[name]}={getattr(self, name)}: must be >= 0")
        if any(i < 0 for i in self.layers):
            raise ConfigError(f"{FLAT_KEYS['layers']}: layer indices {list(self.layers)} must be >= 0")
        if self.count > 0 and self.rank < 1:
            raise ConfigError(f"{FLAT_KEYS['count']}={self.count} needs {FLAT_KEYS['rank']} >= 1; set the rank")
        if self.perpcs_top_k > 0 and self.perpcs_retrieve > 0:
            raise ConfigError(f"{FLAT_KEYS['perpcs_top_k']} and {FLAT_KEYS['perpcs_retrieve']} are two ways to "
                              "use the pool; set one of them to 0")
        if not (isinstance(self.lr_scale, (int, float)) and math.isfinite(self.lr_scale) and self.lr_scale > 0):
            raise ConfigError(f"{FLAT_KEYS['lr_scale']}={self.lr_scale!r}: must be a number > 0 (1: training.lr as is)")
        if self.base not in BASES:
            raise ConfigError(f"{FLAT_KEYS['base']}={self.base!r}: unknown base; use one of {list(BASES)}")
        if self.base != "none" and self.uses_pool:
            raise ConfigError(f"{FLAT_KEYS['base']}={self.base!r} with the Per-Pcs pool: pool pieces were trained on "
                              f"the base model; set {FLAT_KEYS['base']}=none or the pool parameters to 0")

    @property
    def has_memory(self) -> bool:
        """True when the user gets LoRA memory of its own (modules on at least one layer)."""
        return self.count > 0 and bool(self.layers)

    @property
    def uses_pool(self) -> bool:
        """True when the trial takes shared pieces from the Per-Pcs pool."""
        return self.perpcs_top_k > 0 or self.perpcs_retrieve > 0

    @property
    def merged_rank(self) -> int:
        """Rank of the served adapter of the user's own memory: ``count * rank`` (0 without memory)."""
        return self.count * self.rank if self.has_memory else 0

    def check_layers(self, n_layers: int) -> None:
        """Check the layer indices against a model.

        Raises:
            ConfigError: an index is not a layer of a model with ``n_layers`` layers.
        """
        bad = [i for i in self.layers if i >= n_layers]
        if bad:
            raise ConfigError(f"{FLAT_KEYS['layers']}: layer index {bad} out of range; the model has {n_layers} "
                              f"layers (0..{n_layers - 1})")

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any], n_layers: int | None = None) -> "TrialConfig":
        """Parse the flat form a search space produces (``{"lora.layers": [0, 1, ...], ...}``).

        ``lora.layers`` is a mask, one 0/1 flag per layer (a space's layer_mask parameter), or
        ``all``/``none``; missing keys keep the defaults (off).

        Args:
            flat: parameter name -> value.
            n_layers: the model's layer count; checks the mask's length (needed for ``all``).

        Raises:
            ConfigError: an unknown key, a value of the wrong type, or a mask of the wrong length.
        """
        by_key = {key: name for name, key in FLAT_KEYS.items()}
        unknown = sorted(set(flat) - set(by_key))
        if unknown:
            raise ConfigError(f"trial configuration: unknown key(s) {unknown}; known keys are {list(FLAT_KEYS.values())}")
        values: dict[str, Any] = {}
        for key, value in flat.items():
            name = by_key[key]
            if name == "layers":
                values[name] = layers_from_mask(value, n_layers)
            elif name in ("retriever", "base"):
                values[name] = str(value)
            elif name == "lr_scale":
                values[name] = _number(key, value)
            else:
                values[name] = _whole(key, value)
        config = cls(**values)
        if n_layers is not None:
            config.check_layers(n_layers)
        return config

    def to_flat(self, n_layers: int) -> dict[str, Any]:
        """The flat form (``lora.layers`` as ``n_layers`` 0/1 flags), inverse of :meth:`from_flat`."""
        self.check_layers(n_layers)
        chosen = set(self.layers)
        out = {FLAT_KEYS[f.name]: getattr(self, f.name) for f in dataclasses.fields(self)}
        out[FLAT_KEYS["layers"]] = [1 if i in chosen else 0 for i in range(n_layers)]
        return out

    def describe(self) -> str:
        """A short human description (``2 x rank 4 on layers 0-3; bm25 k=4``)."""
        parts = []
        if self.has_memory:
            scale = f" at {self.lr_scale:g} x lr" if self.lr_scale != 1.0 else ""
            parts.append(f"{self.count} x rank {self.rank} on layers {index_ranges(self.layers)}{scale}")
        if self.rag_k > 0:
            parts.append(f"{self.retriever} k={self.rag_k}")
        if self.perpcs_top_k > 0:
            parts.append(f"Per-Pcs top-{self.perpcs_top_k}")
        if self.perpcs_retrieve > 0:
            parts.append(f"{self.perpcs_retrieve} retrieved PEFTs")
        if self.base != "none":
            parts.append(f"on the {self.base} adapter")
        return "; ".join(parts) or "base model"


def inert_keys(flat: Mapping[str, Any]) -> set[str]:
    """The keys of a flat configuration whose values changed nothing in the trial it configured.

    - Without memory of the user's own (``lora.count`` 0, or no layer on): the memory's rank and
      learning-rate scale, and of the count and the layers the one that did not switch the
      memory off (``lora.count=0`` stays and the layers go; with the count above 0 and no layer
      on, the layers stay, as none, and the count goes).
    - Without retrieval (``rag.k`` 0): the retriever.

    ``lora.base`` always counts (the cohort adapter alone is a baseline of its own), and so do the
    pool's settings: ``perpcs.top_k`` 0 is the Per-Pcs switch itself, and ``perpcs.retrieve`` a way
    of its own to use the pool. Keys that are not a trial's (a black-box study's) never are inert.

    Args:
        flat: parameter name -> value, the form a search space produces (``lora.layers`` a 0/1 mask).
    """
    count, mask, rag_k = flat.get(FLAT_KEYS["count"]), flat.get(FLAT_KEYS["layers"]), flat.get(FLAT_KEYS["rag_k"])
    no_count = _is_number(count) and count <= 0
    no_layers = isinstance(mask, (list, tuple)) and not any(mask)
    inert = set()
    if no_count or no_layers:
        inert |= {FLAT_KEYS["rank"], FLAT_KEYS["lr_scale"], FLAT_KEYS["layers" if no_count else "count"]}
    if _is_number(rag_k) and rag_k <= 0:
        inert.add(FLAT_KEYS["retriever"])
    return inert & set(flat)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def layers_from_mask(value: Any, n_layers: int | None = None) -> tuple[int, ...]:
    """Layer indices from a mask (one 0/1 flag per layer), ``all`` or ``none``.

    Raises:
        ConfigError: not a 0/1 list, or its length differs from ``n_layers``.
    """
    key = FLAT_KEYS["layers"]
    if isinstance(value, str) and value.strip().lower() in ("all", "none"):
        if value.strip().lower() == "none":
            return ()
        if n_layers is None:
            raise ConfigError(f"{key}: 'all' needs the model's layer count; pass n_layers")
        return tuple(range(n_layers))
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or any(
            isinstance(v, bool) or v not in (0, 1) for v in value):
        raise ConfigError(f"{key}: {value!r} is not a layer mask; give one 0/1 flag per layer, 'all' or 'none' "
                          "(layer indices go through parse_layer_indices)")
    if n_layers is not None and len(value) != n_layers:
        raise ConfigError(f"{key}: a mask of {len(value)} flags does not fit a model with {n_layers} layers; "
                          f"give {n_layers} flags")
    return tuple(i for i, flag in enumerate(value) if flag)


def parse_layer_indices(value: Any, n_layers: int | None = None) -> tuple[int, ...] | str:
    """Layers as people write them: ``all``, ``none``, ``top:N`` (the upper N layers, all of them
    when the model has fewer), ``"0,1,5"``, a list of indices or one index.

    Returns the sorted distinct indices; ``all``/``none``/``top:N`` come back as those words when
    the layer count is not known yet (a space before it is bound to a model).

    Raises:
        ConfigError: not indices, or an index outside ``0..n_layers-1`` (when ``n_layers`` is given).
    """
    key = FLAT_KEYS["layers"]
    if isinstance(value, str) and value.strip().lower() in ("all", "none"):
        word = value.strip().lower()
        if n_layers is None:
            return word
        return tuple(range(n_layers)) if word == "all" else ()
    if isinstance(value, str) and value.strip().lower().startswith("top:"):
        return _top_layers(key, value.strip().lower(), n_layers)
    if isinstance(value, bool):
        raise ConfigError(f"{key}: {value!r} is not all, none or a list of layer indices")
    if isinstance(value, int):
        value = [value]
    try:
        indices = [_digits(v) for v in value.replace(" ", "").split(",") if v] if isinstance(value, str) else [
            _whole(key, v) for v in value]
    except (TypeError, ValueError, ConfigError) as err:
        raise ConfigError(f"{key}: {value!r} is not all, none or comma-separated layer indices such as 0,1,5") from err
    bad = [i for i in indices if i < 0 or (n_layers is not None and i >= n_layers)]
    if bad:
        top = "" if n_layers is None else f"0..{n_layers - 1}"
        raise ConfigError(f"{key}: layer indices {bad} are outside {top or 'the layers'}; use indices of existing layers")
    return tuple(sorted(set(indices)))


def _top_layers(key: str, word: str, n_layers: int | None) -> tuple[int, ...] | str:
    """``top:N``: the upper ``N`` layers (as the word while the layer count is unknown)."""
    count = word.split(":", 1)[1].strip()
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"{key}: {word!r} needs a positive layer count, such as top:8")
    if n_layers is None:
        return f"top:{int(count)}"
    return tuple(range(max(0, n_layers - int(count)), n_layers))


def _digits(text: str) -> int:
    """A layer index written in decimal digits (``int`` would also take ``1_0`` or ``+1``)."""
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _whole(key: str, value: Any) -> int:
    """An integer value (a float such as 4.0 counts, 4.5 does not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or int(value) != value:
        raise ConfigError(f"{key}: {value!r} is not a whole number")
    return int(value)


def _number(key: str, value: Any) -> float:
    """A finite real value (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: {value!r} is not a finite number")
    return float(value)


def index_ranges(indices: Sequence[int]) -> str:
    """Sorted distinct indices as ranges: ``0,1,2,5`` -> ``0-2,5`` (none: the empty string)."""
    out, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            out.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(out)


# --------------------------------------------------------------------------- intermediate reports
@dataclass(frozen=True)
class MonitorSpec:
    """When a trial reports intermediate validation metrics (for early stopping).

    Attributes:
        every: training steps between checkpoints (counted per user, over both MiLP steps).
        generate_every: generation metrics (ROUGE, Persona-F1) at every n-th checkpoint; the
            validation loss at every one.
        queries: validation queries per user a checkpoint evaluates (the first ones).
    """

    every: int = 4
    generate_every: int = 1
    queries: int = 2


@dataclass(frozen=True)
class Checkpoint:
    """A trial's intermediate report.

    ``metrics`` are the cohort's so far: users before ``user_index`` with their final values,
    user ``user_index`` after ``step`` training steps on the first ``MonitorSpec.queries``
    validation queries. ``key`` names that point of training (:func:`checkpoint_key`), the same in
    every trial of a setup, so trials are compared at the same key.
    """

    key: str
    index: int
    user_index: int
    user_id: str
    step: int
    trained_steps: int
    metrics: Mapping[str, float]


def checkpoint_key(user_index: int, step: int) -> str:
    """The key of the checkpoint of cohort user ``user_index`` after ``step`` of its training steps."""
    return f"u{user_index}:s{step}"


def checkpoint_position(key: str) -> tuple[int, int]:
    """``(user_index, step)`` of a :func:`checkpoint_key`; positions order as training goes."""
    user, step = key.split(":s")
    return int(user.removeprefix("u")), int(step)


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class UserResult:
    """One user's metrics (``<metric>_se`` a bootstrap over its queries), generations, kept adapter,
    and the per-query values of the metrics that are means over queries."""

    user_id: str
    metrics: Mapping[str, float]
    predictions: tuple[str, ...] = ()
    adapter_path: str | None = None
    query_scores: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    test: "UserResult | None" = None  # the same trained user on the test queries (``run_trial(test=True)``)


@dataclass(frozen=True)
class TrialResult:
    """What a trial returns: averaged metrics, per-user results and artifact paths."""

    metrics: Mapping[str, float]
    users: tuple[UserResult, ...]
    config: TrialConfig
    split: str = "val"
    artifacts: Mapping[str, str] = field(default_factory=dict)
    test_metrics: Mapping[str, float] = field(default_factory=dict)  # with ``run_trial(test=True)``: aggregated like ``metrics``

    @property
    def predictions(self) -> dict[str, list[str]]:
        """Every user's generations, by user id."""
        return {u.user_id: list(u.predictions) for u in self.users}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metrics": dict(self.metrics),
            "split": self.split,
            "config": dataclasses.asdict(self.config),
            "users": [
                {"user_id": u.user_id, "metrics": dict(u.metrics), "predictions": list(u.predictions),
                 "adapter_path": u.adapter_path, "query_scores": {k: list(v) for k, v in u.query_scores.items()}}
                for u in self.users
            ],
            "artifacts": dict(self.artifacts),
            "test_metrics": dict(self.test_metrics),
        }
