"""``serving.yaml``: everything a serving stack needs to know about an exported trial, and its vocabulary
(:class:`ServedAdapter`, one user's adapter in the bundle).

Every path in it is relative to the bundle (the directory holding ``serving.yaml``), except a
base model given with ``--base-model``, which is where the user said it is. The bundle writer
(:mod:`search.export.bundle`) adds the ``vllm`` entry (how the bundle is served, for all its
adapters at once) and, with ``--register``, the registered model version under ``mlflow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from runners.chat import render_prompt
from runners.prompts import template_text
from runners.retrieval.base import get_retriever, resolve_options
from runners.spec import TrialConfig
from search.export.prompt import PROFILE_FILE
from search.export.vllm import vllm_rank
from search.results.config_view import config_record
from search.study.study import Study, TrialRecord, atomic_write

SERVING_FORMAT = "pers-search-serving/3"
REQUEST_FILE = "request.json"


@dataclass(frozen=True)
class ServedAdapter:
    """One user's exported adapter: the user id, where the adapter is (a directory named by
    :func:`runners.files.user_file_name`), the copy vLLM loads when it is listed (``vllm/<name>``
    zero-padded, or the adapter itself), its rank and stored bytes."""

    user: str
    path: Path
    vllm_path: Path
    rank: int
    storage_bytes: int

    @property
    def lora_name(self) -> str:
        """The adapter's name for vLLM (``--lora-modules``, a request's ``model``): its directory's
        name, which is the user id for plain ids and never holds ``=`` or spaces."""
        return self.path.name

    @property
    def bucket(self) -> int | None:
        """The ``--max-lora-rank`` that serves it (the smallest of vLLM's that holds its rank; None above 256)."""
        return vllm_rank(self.rank)

    def entry(self) -> dict[str, Any]:
        """Its entry under ``adapters`` in ``serving.yaml``."""
        return {"path": relative(self.path), "lora_name": self.lora_name, "rank": self.rank, "bucket": self.bucket,
                "storage_bytes": self.storage_bytes, "vllm_path": relative(self.vllm_path)}


def relative(path: Path) -> str:
    """``adapters/<name>``: a user's directory relative to the bundle (two levels up)."""
    return path.relative_to(path.parents[1]).as_posix()


def serving_manifest(study: Study, trial: TrialRecord, config: TrialConfig, pick: str, session,
                     adapters: Sequence[ServedAdapter], base: str, in_bundle: bool,
                     profiles: Mapping[str, str], example: Mapping[str, str] | None = None) -> dict:
    """The contents of ``serving.yaml`` for one picked trial: base model, adapters, memory, retrieval,
    prompt, metrics (the writer adds ``vllm``). ``memory``, ``shared_pieces`` and ``retrieval`` are
    there only when the trial used them, and ``config`` holds only what did something
    (:func:`search.results.config_view.config_record`).

    ``users`` are the users the trial ran for; a ``users`` split's held-out test users are listed
    apart (``held_out_users``), not served.

    Args:
        base: the base model's path as serving loads it (``./base``, or ``--base-model``).
        in_bundle: the base model's files are in the bundle.
        profiles: user -> profile items file (relative), for retrieval.
        example: ``user`` and ``query`` of ``request.json``.
    """
    spec, task = session.setup.training, session.task
    rank = adapters[0].rank if adapters else 0
    name = session.setup.model.name
    users = sorted({split.user.user_id for split in session.splits if split.val} | {a.user for a in adapters})
    held_out = sorted(split.user.user_id for split in session.splits if not split.val)
    return {
        "format": SERVING_FORMAT,
        "paths": "relative to this file's directory (the bundle); run from there, or join them to it",
        "study": study.name,
        "trial": trial.number,
        "pick": pick,
        "users": users,
        **({"held_out_users": {"users": held_out, "note": "the test users of a users split (data.test_split): "
                               "the search never trained them, so they are not served"}} if held_out else {}),
        "base_model": {"name": name, "path": base, "in_bundle": in_bundle, "dtype": session.setup.model.dtype,
                       "served_model_name": name},
        "adapters": {a.user: a.entry() for a in adapters},
        **_memory(config, rank, session),
        **_shared_pieces(config, session),
        **_retrieval(config, task, profiles),
        "prompt": {"task": task, "template": _template(task),
                   "chat_format": render_prompt(session.loaded.tokenizer, "{prompt}"),
                   "chat_template": bool(getattr(session.loaded.tokenizer, "chat_template", None)),
                   "tokenizer": "the base model's (base_model.path); token counts include the special tokens "
                                "it adds",
                   "max_prompt_tokens": spec.max_prompt_tokens, "max_new_tokens": spec.max_new_tokens,
                   "decoding": "greedy",
                   "build": "pers-search prompt <bundle> --user USER --query TEXT, or in Python "
                            "search.export.bundle_prompt(bundle, user, query): the exact prompt the trial built"},
        "request": None if example is None else {
            "file": REQUEST_FILE, "endpoint": "POST /v1/completions (vLLM's OpenAI-compatible server)",
            "model": "the user's adapters.<user>.lora_name (the user id itself for plain ids), or "
                     "base_model.served_model_name for a user without an adapter",
            **example},
        "config": config_record(study.space, trial.config),
        "metrics": {"validation": dict(trial.values), "test": dict(trial.test_values)},
        "mlflow": {"run_id": trial.user_attrs.get("mlflow_run_id")},
    }


def _template(task: str) -> dict[str, str]:
    """The prompt template as text (what retrieval compares goes under ``retrieval``)."""
    text = template_text(task)
    return {k: v for k, v in text.items() if k not in ("retrieval_query", "document")}


def _memory(config: TrialConfig, rank: int, session) -> dict:
    """The ``memory`` entry of a trial with LoRA memory of the user's own (else nothing): its layers,
    modules per layer, their rank, the served adapter's rank and the target projections."""
    if not config.has_memory:
        return {}
    return {"memory": {"layers": list(config.layers), "count": config.count, "rank": config.rank,
                       "merged_rank": rank, "targets": list(session.setup.model.targets)}}


def _retrieval(config: TrialConfig, task: str, profiles: Mapping[str, str]) -> dict[str, Any]:
    """The ``retrieval`` entry of a trial with retrieval (else nothing): k, the retriever and its
    options, what it compares, the profiles."""
    if config.rag_k <= 0:
        return {}
    text = template_text(task)
    retriever = get_retriever(config.retriever)
    summary = (type(retriever).__doc__ or config.retriever).strip().splitlines()[0]
    entry = {"k": config.rag_k, "retriever": config.retriever, "method": summary,
             "options": resolve_options(config.retriever, {}),
             "query": text["retrieval_query"], "document": text["document"],
             "profiles": dict(profiles),
             "profile_format": f"{PROFILE_FILE}: JSON lines, one history item each (text, or input and output; "
                               "time, id, fields when known), in the order retrieval indexes them"}
    return {"retrieval": entry}


def _shared_pieces(config: TrialConfig, session) -> dict:
    """The ``shared_pieces`` manifest entry of a trial that used the Per-Pcs pool (else nothing)."""
    top_k, retrieve = config.perpcs_top_k, config.perpcs_retrieve
    if not config.uses_pool:
        return {}
    pool = session.pool
    return {"shared_pieces": {
        "method": "per-pcs" if top_k else "peft-retrieval", "top_k": top_k, "retrieve": retrieve,
        "pool": {"key": pool.key, "rank": pool.rank, "sharers": len(pool.sharer_ids),
                 "note": "not needed to serve: adapters/<name> already hold the pieces"},
        "state": "state/<name>/ (what the trial stores: assembly indices and weights, and own adapter)",
        "note": "adapters/<name> materialise own memory + assembled pieces as one LoRA of the summed rank",
    }}


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):
    """Safe YAML with multi-line strings (templates, chat formats) as literal blocks; libyaml's emitter
    when PyYAML has it (the same text, 20 times faster: a 1,000-user manifest takes 0.5 s, not 11)."""


def _text(dumper, value: str):
    block = "\n" in value and value.strip()
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if block else None)


_Dumper.add_representer(str, _text)


def write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    """Write a manifest as YAML (keys in their order; multi-line text as literal blocks).

    Atomic: ``serving.yaml`` is a bundle's last file and marks it complete, so a kill while writing
    it must leave no half manifest behind.
    """
    atomic_write(path, yaml.dump(dict(data), Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True))
