"""Frozen specifications a trial is run from, and the frozen result it returns.

``search/`` builds these from a space file; ``runners/`` never sees a study or an optimiser.
Field names match the keys of the ``model``, ``data`` and ``training`` sections of a space
YAML, so :func:`TrialSetup.from_dicts` takes those sections as they are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from runners.errors import ConfigError

DEFAULT_TARGETS = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelSpec:
    """Which base model to load and where.

    ``name`` is ``smollm2-135m-instruct`` (the embedded default), ``tiny`` (a random Llama for
    tests), or a local Hugging Face causal-LM directory. ``dtype`` is ``auto``, ``float32``,
    ``float16`` or ``bfloat16``; ``device`` is ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    name: str = "smollm2-135m-instruct"
    dtype: str = "auto"
    device: str = "auto"
    targets: tuple[str, ...] = DEFAULT_TARGETS


@dataclass(frozen=True)
class DataSpec:
    """Where the users come from and how each user's data is split."""

    source: str = "demo"
    format: str | None = None
    outputs: str | None = None
    task: str | None = None
    users: int | None = None
    split_seed: int = 0
    val_fraction: float = 0.5
    heldout_fraction: float = 0.1
    max_val_queries: int | None = None


@dataclass(frozen=True)
class TrainSpec:
    """MiLP's two training steps and their optimiser settings (paper defaults)."""

    memory_injection: bool = True
    instruction_tuning: bool = True
    epochs: int = 3
    max_steps: int | None = None
    max_seq_len: int = 512
    batch_size: int = 8
    lr: float = 5e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 1e-4
    lora_alpha_ratio: float = 2.0
    lora_dropout: float = 0.0
    max_new_tokens: int = 64
    max_prompt_tokens: int = 384
    gen_batch_size: int = 8
    seed: int = 0


@dataclass(frozen=True)
class TrialSetup:
    """Everything fixed across the trials of a study.

    ``pool_dir`` is where the Per-Pcs pool lives (None: found under the tool's home by model
    and data); only trials with ``perpcs.top_k > 0`` read it.
    """

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainSpec = field(default_factory=TrainSpec)
    pool_dir: str | None = None

    @classmethod
    def from_dicts(
        cls,
        model: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        pool_dir: str | None = None,
    ) -> "TrialSetup":
        """Build a setup from the plain ``model``/``data``/``training`` sections of a space.

        Raises:
            ConfigError: a section holds a key the runner does not know.
        """
        return cls(
            model=_build(ModelSpec, "model", model),
            data=_build(DataSpec, "data", data),
            training=_build(TrainSpec, "training", training),
            pool_dir=pool_dir,
        )


def _build(kind: type, section: str, values: Mapping[str, Any] | None):
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{section}: unknown key(s) {unknown}; known keys are {sorted(known)}"
        )
    if "targets" in values:
        values["targets"] = tuple(values["targets"])
    return kind(**values)


@dataclass(frozen=True)
class UserResult:
    """One user's metrics and timings."""

    user_id: str
    metrics: Mapping[str, float]
    predictions: tuple[str, ...] = ()
    adapter_path: str | None = None


@dataclass(frozen=True)
class TrialResult:
    """What a trial returns: averaged metrics, per-user metrics and artifact paths."""

    metrics: Mapping[str, float]
    users: tuple[UserResult, ...]
    config: Mapping[str, Any]
    split: str = "val"
    artifacts: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "metrics": dict(self.metrics),
            "split": self.split,
            "config": dict(self.config),
            "users": [
                {
                    "user_id": u.user_id,
                    "metrics": dict(u.metrics),
                    "predictions": list(u.predictions),
                    "adapter_path": u.adapter_path,
                }
                for u in self.users
            ],
            "artifacts": dict(self.artifacts),
        }
