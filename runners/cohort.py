"""The cohort adapter: one LoRA trained on every cohort user's history, shared by all of them.

On data such as MedicalDialogue much of what a per-user memory learns is the register shared by
every user (the doctors' way of answering), not the user. One adapter trained on the pooled
histories of the cohort learns that shared part; a per-user memory has to beat it to show that it
personalizes. It serves two ways (``lora.base`` of a trial):

- as a fixed baseline: the cohort adapter alone (``lora.base=cohort``, no memory of the user's own);
- as the base under a per-user memory: the cohort adapter is merged into the base model's weights
  and the user's own LoRA trains on top of it (the server keeps one cohort adapter, like the
  base model; a user's storage is their own memory only).

Budget: the cohort adapter sees as many training examples as the cohort's per-user memories see
together, ``sum over users of planned_steps(n_u) * min(batch_size, n_u)``, in batches of
``batch_size`` (the per-user budget summed). Its shape is fixed: one rank-8 LoRA on every layer's
target projections (OPPU's). It trains once per setup (model, data, training settings) and is
kept under ``$PERS_SEARCH_HOME/cohort/<key>/`` as a PEFT adapter directory.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from runners.history import HistoryExamples, history_examples, train_on_history
from runners.home import tool_home
from runners.memory import ADAPTER_FILE, MemoryConfig, attach_memory, detach_memory, export_merged_adapter
from runners.spec import TrialSetup
from runners.training import planned_steps

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import UserSplit
    from runners.memory import Layout


class Session(Protocol):
    """What the cohort adapter needs of a :class:`runners.session.Session` (a protocol: the session
    module imports this one, so this one must not import it)."""

    setup: TrialSetup
    loaded: Any  # runners.models.LoadedModel
    layout: "Layout"
    splits: Sequence["UserSplit"]
    task: str

COHORT_RANK = 8
COHORT_SEED_OFFSET = 7919  # the cohort adapter's seed: the training seed plus this (apart from any user's)
INFO_FILE = "cohort.json"


def cohort_key(setup: TrialSetup) -> str:
    """A stable key of what the cohort adapter depends on: the model, the data and the training settings."""
    text = json.dumps({"model": dataclasses.asdict(setup.model), "data": dataclasses.asdict(setup.data),
                       "training": dataclasses.asdict(setup.training), "rank": COHORT_RANK},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cohort_dir(setup: TrialSetup) -> Path:
    """Where the setup's cohort adapter is kept (``$PERS_SEARCH_HOME/cohort/<key>``)."""
    return tool_home() / "cohort" / cohort_key(setup)


def cohort_memory(session: "Session") -> MemoryConfig:
    """The cohort adapter's shape: one rank-8 LoRA on every layer (OPPU's)."""
    spec = session.setup.training
    return MemoryConfig(tuple(range(session.layout.n_layers)), 1, COHORT_RANK, spec.lora_alpha_ratio,
                        spec.lora_dropout)


def cohort_steps(sizes: list[int], spec) -> int:
    """Optimiser steps of the cohort adapter: the examples the per-user memories of users with
    ``sizes`` training items would see together, in batches of ``batch_size``."""
    seen = sum(planned_steps(n, spec) * min(spec.batch_size, n) for n in sizes)
    return math.ceil(seen / spec.batch_size)


def pooled_examples(session: "Session") -> tuple[HistoryExamples, list[int]]:
    """Every cohort user's training history as examples (bare prompts), and each user's item count."""
    loaded, spec = session.loaded, session.setup.training
    texts, pairs, sizes = [], [], []
    for split in session.splits:
        examples = history_examples(loaded.tokenizer, session.task, split.train, spec, spec.seed)
        texts += examples.texts
        pairs += examples.pairs
        sizes.append(len(split.train))
    return HistoryExamples(tuple(texts), tuple(pairs)), sizes


def train_cohort_adapter(session: "Session", out: Path) -> Path:
    """Train the cohort adapter on the pooled histories and write it to ``out`` (a PEFT adapter dir).

    Returns:
        ``out``.
    """
    loaded, spec = session.loaded, session.setup.training
    examples, sizes = pooled_examples(session)
    steps = cohort_steps(sizes, spec)
    pooled = dataclasses.replace(spec, min_steps=steps, max_steps=steps)
    memory = cohort_memory(session)
    model = attach_memory(loaded.model, session.layout, memory, spec.seed + COHORT_SEED_OFFSET)
    try:
        phases = train_on_history(model, examples, pooled, loaded.tokenizer.pad_token_id, loaded.device,
                                  spec.seed + COHORT_SEED_OFFSET)
        export_merged_adapter(model, session.layout, memory, out, loaded.source_dir)
    finally:
        detach_memory(model)
    info = {"users": len(sizes), "items": sum(sizes), "steps": [p.steps for p in phases],
            "seconds": sum(p.seconds for p in phases), "final_loss": [p.final_loss for p in phases]}
    (out / INFO_FILE).write_text(json.dumps(info, indent=1))
    return out


def ensure_cohort_adapter(session: "Session") -> Path:
    """The setup's cohort adapter directory, trained and written on first use (atomically)."""
    target = cohort_dir(session.setup)
    if (target / ADAPTER_FILE).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        train_cohort_adapter(session, work)
        try:
            os.replace(work, target)
        except OSError:  # another process finished first: keep its adapter
            if not (target / ADAPTER_FILE).exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def merged_cohort_model(session: "Session", directory: Path):
    """A copy of the base model with the cohort adapter of ``directory`` merged into its weights."""
    import torch
    from safetensors.torch import load_file

    model = copy.deepcopy(session.loaded.model)
    modules = dict(model.named_modules())
    tensors = load_file(str(directory / ADAPTER_FILE))
    with torch.no_grad():
        for name, a in tensors.items():
            if not name.endswith(".lora_A.weight"):
                continue
            path = name.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
            b = tensors[name.replace(".lora_A.", ".lora_B.")]
            weight = modules[path].weight
            weight += (b.float() @ a.float()).to(device=weight.device, dtype=weight.dtype)
    model.eval()
    return model
