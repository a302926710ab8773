"""One personalization trial: per user, build the prompt (retrieval), train the memory
(MiLP's two steps), generate, score; then aggregate over the cohort.

``run_trial(config, setup)`` is the whole contract between ``search/`` and ``runners/``:
a flat configuration in, a frozen :class:`TrialResult` out.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from runners.errors import ConfigError
from runners.spec import TrialResult, TrialSetup, UserResult

TRIAL_KEYS = ("lora.layers", "lora.count", "lora.rank", "rag.k", "rag.retriever", "perpcs.top_k", "perpcs.retrieve")
SPLITS = ("val", "test")
# What every trial reports besides the task's scores (see :func:`reported_metrics`).
TRIAL_METRICS = (
    "loss", "heldout_loss", "storage_bytes", "retrieval_index_bytes", "rag_dropped_items",
    "trainable_params", "train_seconds", "train_steps", "train_tokens", "train_tokens_per_second",
    "generate_seconds", "n_queries", "n_users", "assembly_seconds", "perpcs_top_k",
)


def reported_metrics(task: str) -> list[str]:
    """Every metric name a trial on ``task`` data reports (objectives must come from these)."""
    from runners.metrics import score_names

    return [*score_names(task), *TRIAL_METRICS]


@dataclass(frozen=True)
class Prompted:
    """The evaluated queries of one user, as prompts, with retrieval facts."""

    prompts: tuple[str, ...]
    references: tuple[str, ...]
    index_bytes: int
    dropped: int


def run_trial(config: Mapping[str, Any], setup: TrialSetup, split: str = "val",
              adapter_dir: str | Path | None = None) -> TrialResult:
    """Run one trial for every user of the setup's cohort.

    Args:
        config: flat parameters (``lora.layers``, ``lora.count``, ``lora.rank``, ``rag.k``,
            ``rag.retriever``, ``perpcs.top_k``); missing keys mean "off".
        setup: model, data and training settings shared by the trials of a study.
        split: ``val`` (what a search optimises) or ``test`` (reported for chosen configs).
        adapter_dir: keep each user's exported adapter under ``adapter_dir/<user id>``
            (else it is written to a temporary directory, measured and deleted).

    Raises:
        ConfigError: an unknown key or value in ``config``.
        TrialFailed: NaN loss or out of memory.
    """
    from runners.session import session_for

    _check_config(config, split)
    session = session_for(setup)
    users = tuple(_run_user(session, split_, config, split, adapter_dir) for split_ in session.splits)
    return TrialResult(metrics=_aggregate(users), users=users, config=dict(config), split=split)


def _check_config(config: Mapping[str, Any], split: str) -> None:
    unknown = sorted(set(config) - set(TRIAL_KEYS))
    if unknown:
        raise ConfigError(f"trial configuration: unknown key(s) {unknown}; known keys are {list(TRIAL_KEYS)}")
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is unknown; use one of {list(SPLITS)}")
    if int(config.get("perpcs.top_k", 0) or 0) > 0 and int(config.get("perpcs.retrieve", 0) or 0) > 0:
        raise ConfigError("perpcs.top_k and perpcs.retrieve are two ways to use the pool; set one of them to 0")


def _run_user(session, user_split, config, split, adapter_dir) -> UserResult:
    from runners.memory import memory_from_config

    spec = session.setup.training
    memory = memory_from_config(config, session.layout.n_layers, spec.lora_alpha_ratio, spec.lora_dropout)
    top_k = int(config.get("perpcs.top_k", 0) or 0)
    retrieve = int(config.get("perpcs.retrieve", 0) or 0)
    queries = user_split.val if split == "val" else user_split.test
    prompted = _prompts(session, user_split, queries, config)
    seed = spec.seed + zlib.crc32(user_split.user.user_id.encode())
    if memory.enabled or top_k > 0 or retrieve > 0:
        metrics, preds, adapter = _personalized(session, user_split, memory, (top_k, retrieve), prompted, seed,
                                                adapter_dir)
    else:
        metrics, adapter = _evaluate(session, session.loaded.model, user_split, prompted), None
        metrics.update(train_seconds=0.0, storage_bytes=0, trainable_params=0, train_tokens=0)
        preds = metrics.pop("_predictions")
    metrics.update(retrieval_index_bytes=prompted.index_bytes, rag_dropped_items=prompted.dropped)
    return UserResult(user_split.user.user_id, metrics, tuple(preds), adapter)


def _prompts(session, user_split, queries, config) -> Prompted:
    from runners.chat import render_prompt
    from runners.prompts import build_prompt, corpus_text, retrieval_query

    k = int(config.get("rag.k", 0) or 0)
    task, tok = session.task, session.loaded.tokenizer
    items = user_split.train
    index, index_bytes = None, 0
    if k > 0 and items:
        name = str(config.get("rag.retriever", "bm25"))
        corpus = [corpus_text(task, item) for item in items]
        index = session.index_cache.get_or_build(name, items, task, corpus, user_id=user_split.user.user_id)
        index_bytes = int(index.nbytes)
    texts, dropped = [], 0
    budget = session.setup.training.max_prompt_tokens
    for q in queries:
        retrieved = [items[i] for i in index.top_k(retrieval_query(task, q.input), k)] if index else []
        built = build_prompt(task, q.input, retrieved, tok, budget)
        dropped += built.n_dropped
        texts.append(render_prompt(tok, built.text))
    return Prompted(tuple(texts), tuple(q.output for q in queries), index_bytes, dropped)


def _personalized(session, user_split, memory, shared, prompted, seed, adapter_dir):
    """Shared pieces (Per-Pcs top-k, or whole retrieved PEFTs) and/or the user's own memory."""
    from runners.history import history_examples
    from runners.memory import attach_memory, detach_memory, parameter_count

    loaded, spec = session.loaded, session.setup.training
    examples = history_examples(loaded.tokenizer, session.task, user_split.train, spec, seed)
    parent = Path(adapter_dir) if adapter_dir else Path(tempfile.mkdtemp(prefix="pers-search-adapter-"))
    out = parent / _safe(user_split.user.user_id)
    assembly = _assemble(session, user_split, examples, *shared)
    model = attach_memory(loaded.model, session.layout, memory, seed) if memory.enabled else loaded.model
    try:
        if assembly is not None:
            from runners.perpcs.assembly import apply_assembly

            model = apply_assembly(model, session.pool, assembly)
        trained = _train_memory(session, model, examples, seed) if memory.enabled else {}
        metrics = _evaluate(session, model, user_split, prompted)
        storage = _save_user_state(session, model, memory, assembly, out)
    finally:
        if model is not loaded.model:
            detach_memory(model)
    preds = metrics.pop("_predictions")
    metrics.update(trained, storage_bytes=storage, trainable_params=parameter_count(session.layout, memory))
    if assembly is not None:
        metrics.update(assembly_seconds=assembly.seconds, perpcs_top_k=assembly.top_k)
    if not adapter_dir:
        shutil.rmtree(parent, ignore_errors=True)
        return metrics, preds, None
    return metrics, preds, str(out)


def _assemble(session, user_split, examples, top_k: int, retrieve: int):
    """The user's share of the pool: a Per-Pcs assembly, retrieved whole PEFTs, or None."""
    if top_k > 0:
        from runners.perpcs.assembly import assemble

        return assemble(session.pool, session.loaded, session.layout, examples.all(), top_k,
                        user_id=user_split.user.user_id)
    if retrieve > 0:
        from runners.perpcs.peft_retrieval import retrieve_pefts

        return retrieve_pefts(session.pool, session.dataset.users, session.task, user_split.user,
                              user_split.train, retrieve)
    return None


def _train_memory(session, model, examples, seed) -> dict:
    from runners.history import train_on_history

    loaded, spec = session.loaded, session.setup.training
    started = time.perf_counter()
    phases = train_on_history(model, examples, spec, loaded.tokenizer.pad_token_id, loaded.device, seed)
    return {"train_seconds": time.perf_counter() - started, "train_tokens": sum(p.tokens for p in phases),
            "train_steps": sum(p.steps for p in phases)}


def _save_user_state(session, model, memory, assembly, out: Path) -> int:
    """Write what a server keeps for this user; return its size in bytes, measured from the files.

    The user's own memory is the merged rank-``n*r`` adapter (``out/``); a Per-Pcs assembly is
    its piece indices and weights (``out/`` + ``runners.perpcs.assembly.ASSEMBLY_FILE``).
    """
    from runners.memory import export_merged_adapter
    from runners.metrics.storage import file_bytes

    total = 0
    if memory.enabled:
        path = export_merged_adapter(model, session.layout, memory, out, session.loaded.source_dir)
        total += file_bytes(path)
    if assembly is not None:
        from runners.perpcs.assembly import ASSEMBLY_FILE

        (out / ASSEMBLY_FILE).parent.mkdir(parents=True, exist_ok=True)
        total += assembly.save(out / ASSEMBLY_FILE)
    return total


def _evaluate(session, model, user_split, prompted: Prompted) -> dict:
    from runners.batching import pair_example, text_example
    from runners.data.pairs import memory_texts
    from runners.generation import generate
    from runners.metrics import score
    from runners.training import answer_loss

    spec, loaded, task = session.setup.training, session.loaded, session.task
    tok, pad, device = loaded.tokenizer, loaded.tokenizer.pad_token_id, loaded.device
    pairs = [pair_example(tok, p, r, spec.max_seq_len + spec.max_prompt_tokens)
             for p, r in zip(prompted.prompts, prompted.references)]
    loss = answer_loss(model, pairs, pad, device, spec.gen_batch_size)
    held = [text_example(tok, t, spec.max_seq_len) for t in memory_texts(task, user_split.heldout)]
    started = time.perf_counter()
    preds = generate(model, tok, prompted.prompts, device, spec.max_new_tokens, spec.gen_batch_size)
    gen_seconds = time.perf_counter() - started
    content = session.persona_content(user_split.user)
    metrics = dict(score(task, preds, list(prompted.references), user_content=content))
    metrics.update(loss=loss, generate_seconds=gen_seconds, n_queries=len(preds))
    if held:
        metrics["heldout_loss"] = answer_loss(model, held, pad, device, spec.gen_batch_size)
    metrics["_predictions"] = preds
    return metrics


def _aggregate(users: Sequence[UserResult]) -> dict[str, float]:
    """Mean of each metric over users; time and token counts summed; the user count added."""
    summed = {"train_seconds", "generate_seconds", "assembly_seconds", "train_tokens", "train_steps", "n_queries",
              "rag_dropped_items"}
    keys = sorted({k for u in users for k in u.metrics})
    out: dict[str, float] = {}
    for key in keys:
        values = [float(u.metrics[key]) for u in users if key in u.metrics]
        values = [v for v in values if not math.isnan(v)] or [math.nan]
        out[key] = sum(values) if key in summed else sum(values) / len(values)
    out["n_users"] = len(users)
    if out.get("train_seconds"):
        out["train_tokens_per_second"] = out.get("train_tokens", 0.0) / out["train_seconds"]
    return out


def _safe(user_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in user_id)[:80] or "user"
