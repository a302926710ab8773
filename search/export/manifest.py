"""``serving.yaml``: everything a serving stack needs to know about an exported trial."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import yaml

from runners.chat import render_prompt
from runners.prompts import GENERIC_HEADER, GENERIC_TASKS
from runners.spec import TrialConfig
from search.export.vllm import vllm_command, vllm_rank
from search.space import mask_string
from search.study import Study, TrialRecord

if TYPE_CHECKING:  # pragma: no cover
    from search.export.bundle import ServedAdapter

SERVING_FORMAT = "pers-search-serving/1"


def serving_manifest(study: Study, trial: TrialRecord, config: TrialConfig, pick: str, session,
                     adapters: Sequence["ServedAdapter"], base: str) -> dict:
    """The contents of ``serving.yaml``: base model, adapters, memory, retrieval, prompt, metrics, vLLM."""
    spec, task = session.setup.training, session.task
    rank = adapters[0].rank if adapters else 0
    max_rank = vllm_rank(rank) if adapters else None
    command = vllm_command(base, {a.user: str(a.vllm_path.resolve()) for a in adapters}, max_rank)
    return {
        "format": SERVING_FORMAT,
        "study": study.name,
        "trial": trial.number,
        "pick": pick,
        "base_model": {"name": session.setup.model.name, "path": base, "dtype": session.setup.model.dtype},
        "adapters": {a.user: {"path": str(a.path.relative_to(a.path.parents[1])), "rank": a.rank,
                              "storage_bytes": a.storage_bytes,
                              "vllm_path": str(a.vllm_path.relative_to(a.path.parents[1]))} for a in adapters},
        "memory": {"layers": list(config.layers), "count": config.count, "rank": config.rank,
                   "merged_rank": rank, "targets": list(session.setup.model.targets)},
        **_shared_pieces(config, session),
        "retrieval": {"k": config.rag_k, "retriever": config.retriever if config.rag_k > 0 else None,
                      "corpus": "the user's history items (profile entries)"},
        "prompt": {"task": task, "builder": "runners.prompts.build_prompt + runners.chat.render_prompt",
                   "header": GENERIC_HEADER if task in GENERIC_TASKS else f"LaMP template of {task}",
                   "chat_template": bool(getattr(session.loaded.tokenizer, "chat_template", None)),
                   "chat_format": render_prompt(session.loaded.tokenizer, "{prompt}"),
                   "max_prompt_tokens": spec.max_prompt_tokens, "max_new_tokens": spec.max_new_tokens,
                   "decoding": "greedy"},
        "config": {k: mask_string(v) if isinstance(v, list) else v for k, v in trial.config.items()},
        "metrics": {"validation": dict(trial.values), "test": dict(trial.test_values)},
        "mlflow": {"run_id": trial.user_attrs.get("mlflow_run_id")},
        "vllm": {"command": command, "max_lora_rank": max_rank,
                 "note": None if not adapters or max_rank else f"rank {rank} is above 256; vLLM cannot serve it"},
    }


def _shared_pieces(config: TrialConfig, session) -> dict:
    """The ``shared_pieces`` manifest entry of a trial that used the Per-Pcs pool (else nothing)."""
    top_k, retrieve = config.perpcs_top_k, config.perpcs_retrieve
    if not config.uses_pool:
        return {}
    pool = session.pool
    return {"shared_pieces": {
        "method": "per-pcs" if top_k else "peft-retrieval", "top_k": top_k, "retrieve": retrieve,
        "pool": {"key": pool.key, "path": str(pool.directory.resolve()), "rank": pool.rank,
                 "sharers": len(pool.sharer_ids)},
        "state": "state/<user>/ (what the trial stores: assembly indices and weights, and own adapter)",
        "note": "adapters/<user> materialise own memory + assembled pieces as one LoRA of the summed rank",
    }}


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Write a manifest as YAML (keys in their order)."""
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, width=120), encoding="utf-8")
