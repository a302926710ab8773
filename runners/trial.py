"""One personalization trial: per user, build the prompts (retrieval), train the memory
(MiLP's two steps), generate, score; then aggregate over the cohort.

``run_trial(config, setup)`` is the whole contract between ``search/`` and ``runners/``:
a frozen :class:`TrialConfig` in, a frozen :class:`TrialResult` out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from runners.batching import pair_example, text_example
from runners.chat import render_prompt
from runners.data.pairs import memory_texts
from runners.data.splits import SplitCounts
from runners.errors import ConfigError, DataError
from runners.files import user_file_name, user_file_names
from runners.generation import generate
from runners.heap import release_free_heap
from runners.history import TrainingRetrieval, history_examples, train_on_history
from runners.memory import (
    MemoryConfig,
    attach_memory,
    detach_memory,
    export_merged_adapter,
    parameter_count,
)
from runners.metrics import score, score_names, score_queries
from runners.metrics.uncertainty import standard_error
from runners.monitor import Report, TrainingMonitor
from runners.metrics.storage import file_bytes
from runners.perpcs.assembly import ASSEMBLY_FILE, apply_assembly, assemble
from runners.perpcs.peft_retrieval import retrieve_pefts
from runners.prompts import build_prompt, corpus_text, retrieval_query
from runners.scratch import scratch_dir
from runners.session import Session, session_for
from runners.spec import SE_SUFFIX, MonitorSpec, TrialConfig, TrialResult, TrialSetup, UserResult
from runners.training import answer_loss

SPLITS = ("val", "test")
# What every trial reports besides the task's scores (see :func:`reported_metrics`).
TRIAL_METRICS = (
    "loss", "heldout_loss", "storage_bytes", "retrieval_index_bytes", "rag_dropped_items",
    "trainable_params", "train_seconds", "train_steps", "train_tokens", "train_tokens_per_second",
    "generate_seconds", "n_queries", "n_users", "assembly_seconds", "perpcs_top_k",
)
# Aggregated over the cohort as sums (everything else is a mean over users).
SUMMED_METRICS = frozenset({"train_seconds", "generate_seconds", "assembly_seconds", "train_tokens", "train_steps",
                            "n_queries", "rag_dropped_items"})


# The held-out loss is a diagnostic: a user with 10,000 history items holds out 1,000, and scoring
# them all would cost more than the trial's training. It is measured on the first items only.
HELDOUT_LOSS_ITEMS = 128


def reported_metrics(task: str) -> list[str]:
    """Every metric name a trial on ``task`` data reports (objectives must come from these)."""
    return [*score_names(task), *TRIAL_METRICS]


@dataclass(frozen=True)
class Prompted:
    """The evaluated queries of one user, as prompts, with retrieval facts."""

    prompts: tuple[str, ...]
    references: tuple[str, ...]
    index_bytes: int
    dropped: int


@dataclass(frozen=True)
class Evaluated:
    """A model's answers to one user's queries, with their scores (mean, standard error, per query)."""

    metrics: dict[str, float]
    predictions: tuple[str, ...]
    query_scores: dict[str, tuple[float, ...]]


@dataclass(frozen=True)
class Watch:
    """Intermediate reporting for one user: the spec, the callback, and what came before."""

    spec: MonitorSpec
    report: Report
    earlier: tuple[dict[str, float], ...]
    user_index: int
    trained_before: int


def run_trial(config: TrialConfig, setup: TrialSetup, split: str = "val", adapter_dir: str | Path | None = None,
              monitor: MonitorSpec | None = None, report: Report | None = None, test: bool = False) -> TrialResult:
    """Run one trial for every user of the setup's cohort.

    Args:
        config: what the trial personalizes (memory, retrieval, shared pieces).
        setup: model, data and training settings shared by the trials of a study.
        split: ``val`` (what a search optimises) or ``test`` (reported for chosen configs); only
            the users with queries in it run (the test users of a ``users`` split answer ``test``
            only).
        adapter_dir: keep each user's exported adapter under ``adapter_dir/<name>``, the name
            :func:`runners.files.user_file_name` gives the user id (the id itself for plain
            ids); else it is written to a temporary directory, measured and deleted.
        monitor: with ``report``: report :class:`runners.spec.Checkpoint`-s while users train
            (see :mod:`runners.monitor`).
        report: called with each checkpoint; raising :class:`runners.errors.TrialStopped` stops
            the trial (the exception propagates, with the checkpoint).
        test: with ``split="val"``, also answer the test queries with the same trained memory
            (``TrialResult.test_metrics``): a study keeps them hidden from its optimiser and shows
            them for the front, without training any configuration twice.

    Raises:
        ConfigError: a layer the model does not have, or an unknown split.
        DataError: no user has a query in ``split`` (one-query users in a per-query split).
        TrialFailed: NaN loss or out of memory.
        TrialStopped: raised by ``report``.
    """
    if split not in SPLITS:
        raise ConfigError(f"split: {split!r} is unknown; use one of {list(SPLITS)}")
    if test and split != "val":
        raise ConfigError(f"run_trial: test=True answers the test queries beside the validation ones; "
                          f"it needs split='val', not {split!r}")
    if not isinstance(config, TrialConfig):
        raise ConfigError(f"run_trial: config is a {type(config).__name__}; pass a TrialConfig "
                          "(TrialConfig.from_flat parses the flat form of a search space)")
    session = session_for(setup)
    config.check_layers(session.layout.n_layers)
    if adapter_dir is not None:
        user_file_names(s.user.user_id for s in session.splits)  # refuses two users sharing a directory
    users: list[UserResult] = []
    for index, user in enumerate(_users_of(session, split)):
        trained = sum(int(u.metrics.get("train_steps", 0)) for u in users)
        watch = Watch(monitor, report, tuple(dict(u.metrics) for u in users), index, trained) if (
            monitor and report) else None
        users.append(_run_user(session, user, config, split, adapter_dir, watch, test))
    tested = [u.test for u in users if u.test is not None]
    return TrialResult(metrics=aggregate(users), users=tuple(users), config=config, split=split,
                       test_metrics=aggregate(tested) if tested else {})


def _users_of(session: Session, split: str) -> list:
    """The cohort's users that have queries in ``split``: a ``users`` split's test users answer test
    queries only and the others validation queries only (``runners.data.splits``).

    Raises:
        DataError: no user of the cohort has a query in ``split``.
    """
    users = [s for s in session.splits if (s.val if split == "val" else s.test)]
    if not users:
        counts = SplitCounts.of(session.splits)
        raise DataError(f"run_trial: split={split!r} has no queries in {session.setup.data.source} "
                        f"(test split: {counts.describe()}); evaluate split='val', or give data with "
                        "held-out queries (data.test_split=auto holds out whole users)")
    return users


def _run_user(session: Session, user_split, config: TrialConfig, split: str, adapter_dir,
              watch: Watch | None, test: bool = False) -> UserResult:
    memory = MemoryConfig.of(config, session.setup.training)
    queries = user_split.val if split == "val" else user_split.test
    prompted = _prompts(session, user_split, queries, config)
    tests = _prompts(session, user_split, user_split.test, config) if test and user_split.test else None
    seed = session.setup.training.seed + zlib.crc32(user_split.user.user_id.encode())
    if memory.enabled or config.uses_pool:
        evaluated, tested, extra, adapter = _personalized(session, user_split, memory, config, prompted, tests, seed,
                                                          adapter_dir, watch)
    else:
        model = session.base_model(config.base)
        evaluated, adapter = _evaluate(session, model, user_split, prompted), None
        tested = _evaluate(session, model, user_split, tests, heldout=False) if tests else None
        extra = {"train_seconds": 0.0, "storage_bytes": 0, "trainable_params": 0, "train_tokens": 0}

    def result(answers: Evaluated, asked: Prompted, test_result: UserResult | None = None) -> UserResult:
        metrics = {**answers.metrics, **extra, "retrieval_index_bytes": asked.index_bytes,
                   "rag_dropped_items": asked.dropped}
        return UserResult(user_split.user.user_id, metrics, answers.predictions, adapter, answers.query_scores,
                          test_result)

    release_free_heap()  # the generation's caches and what the memory's training left
    return result(evaluated, prompted, result(tested, tests) if tested is not None else None)


def _prompts(session: Session, user_split, queries, config: TrialConfig) -> Prompted:
    task, tok = session.task, session.loaded.tokenizer
    items = user_split.train
    index = _user_index(session, user_split, config) if config.rag_k > 0 and items else None
    index_bytes = int(index.nbytes) if index is not None else 0
    texts, dropped = [], 0
    budget = session.setup.training.max_prompt_tokens
    for q in queries:
        retrieved = [items[i] for i in index.top_k(retrieval_query(task, q.input), config.rag_k)] if index else []
        built = build_prompt(task, q.input, retrieved, tok, budget)
        dropped += built.n_dropped
        texts.append(render_prompt(tok, built.text))
    return Prompted(tuple(texts), tuple(q.output for q in queries), index_bytes, dropped)


def _user_index(session: Session, user_split, config: TrialConfig):
    """The user's retrieval index over their training history (built once per retriever)."""
    items = user_split.train
    corpus = [corpus_text(session.task, item) for item in items]
    return session.index_cache.get_or_build(config.retriever, items, session.task, corpus,
                                            user_id=user_split.user.user_id)


def _training_retrieval(session: Session, user_split, config: TrialConfig) -> TrainingRetrieval | None:
    """The serving retrieval, for instruction-tuning prompts shaped as served (``training.train_rag``)."""
    spec = session.setup.training
    if not (spec.train_rag and config.rag_k > 0 and len(user_split.train) > 1):
        return None
    k = min(config.rag_k, spec.train_rag_k) if spec.train_rag_k else config.rag_k
    return TrainingRetrieval(k, _user_index(session, user_split, config))


def _personalized(session: Session, user_split, memory: MemoryConfig, config: TrialConfig, prompted: Prompted,
                  tests: Prompted | None, seed: int, adapter_dir, watch: Watch | None):
    """Shared pieces (Per-Pcs top-k, or whole retrieved PEFTs) and/or the user's own memory.

    Returns:
        The evaluation, the test queries' evaluation (None without ``tests``), the training/storage
        metrics, and the kept adapter directory (or None).
    """
    loaded, spec = session.loaded, session.setup.training
    examples = history_examples(loaded.tokenizer, session.task, user_split.train, spec, seed,
                                _training_retrieval(session, user_split, config) if memory.enabled else None)
    assembly = _assemble(session, user_split, examples, config)
    base = session.base_model(config.base)
    model = attach_memory(base, session.layout, memory, seed) if memory.enabled else base
    # the scratch directory is made last, just before the block that removes it: a trial that failed
    # in the assembly or in attaching its memory left an empty directory behind in the system's temp
    scratch = contextlib.ExitStack()
    parent = Path(adapter_dir) if adapter_dir else scratch.enter_context(scratch_dir())
    out = parent / user_file_name(user_split.user.user_id)
    try:
        if assembly is not None:
            model = apply_assembly(model, session.pool, assembly)
        on_step = _monitor(session, model, user_split, prompted, watch) if watch and memory.enabled else None
        trained = _train_memory(session, model, examples, seed, config.lr_scale, on_step) if memory.enabled else {}
        release_free_heap()  # the training's activations, gradients and optimiser state
        evaluated = _evaluate(session, model, user_split, prompted)
        tested = _evaluate(session, model, user_split, tests, heldout=False) if tests else None
        storage = _save_user_state(session, model, memory, assembly, out)
    finally:
        if model is not base:
            detach_memory(model)
        scratch.close()
    extra = {**trained, "storage_bytes": storage, "trainable_params": parameter_count(session.layout, memory)}
    if assembly is not None:
        extra.update(assembly_seconds=assembly.seconds, perpcs_top_k=assembly.top_k)
    return evaluated, tested, extra, (str(out) if adapter_dir else None)


def _monitor(session: Session, model, user_split, prompted: Prompted, watch: Watch):
    """The ``on_step`` callback that reports this user's checkpoints."""
    n = watch.spec.queries
    subset = Prompted(prompted.prompts[:n], prompted.references[:n], prompted.index_bytes, prompted.dropped)

    def measure(generate_too: bool) -> dict[str, float]:
        return _measure(session, model, user_split, subset, generate_too)

    monitor = TrainingMonitor(watch.spec, watch.report, measure, watch.earlier, watch.user_index,
                              user_split.user.user_id, watch.trained_before)
    return monitor.on_step


def _measure(session: Session, model, user_split, subset: Prompted, generate_too: bool) -> dict[str, float]:
    """A checkpoint's metrics for one user: the answer loss on ``subset``, and its generation metrics."""
    spec, tok = session.setup.training, session.loaded.tokenizer
    if generate_too:
        return dict(_evaluate(session, model, user_split, subset, heldout=False).metrics)
    pairs = [pair_example(tok, p, r, spec.max_seq_len + spec.max_prompt_tokens)
             for p, r in zip(subset.prompts, subset.references)]
    return {"loss": answer_loss(model, pairs, tok.pad_token_id, session.loaded.device, spec.gen_batch_size)}


def _assemble(session: Session, user_split, examples, config: TrialConfig):
    """The user's share of the pool: a Per-Pcs assembly, retrieved whole PEFTs, or None."""
    if config.perpcs_top_k > 0:
        return assemble(session.pool, session.loaded, session.layout, examples.all(), config.perpcs_top_k,
                        user_id=user_split.user.user_id)
    if config.perpcs_retrieve > 0:
        return retrieve_pefts(session.pool, session.dataset.users, session.task, user_split.user,
                              user_split.train, config.perpcs_retrieve)
    return None


def _train_memory(session: Session, model, examples, seed: int, lr_scale: float = 1.0, on_step=None) -> dict:
    loaded, spec = session.loaded, session.setup.training
    if lr_scale != 1.0:
        spec = dataclasses.replace(spec, lr=spec.lr * lr_scale)
    started = time.perf_counter()
    phases = train_on_history(model, examples, spec, loaded.tokenizer.pad_token_id, loaded.device, seed, on_step)
    return {"train_seconds": time.perf_counter() - started, "train_tokens": sum(p.tokens for p in phases),
            "train_steps": sum(p.steps for p in phases)}


def _save_user_state(session: Session, model, memory: MemoryConfig, assembly, out: Path) -> int:
    """Write what a server keeps for this user; return its size in bytes, measured from the files.

    The user's own memory is the merged rank-``n*r`` adapter (``out/``); a Per-Pcs assembly is
    its piece indices and weights (``out/`` + ``runners.perpcs.assembly.ASSEMBLY_FILE``).
    """
    total = 0
    if memory.enabled:
        path = export_merged_adapter(model, session.layout, memory, out, session.loaded.source_dir)
        total += file_bytes(path)
    if assembly is not None:
        (out / ASSEMBLY_FILE).parent.mkdir(parents=True, exist_ok=True)
        total += assembly.save(out / ASSEMBLY_FILE)
    return total


def _evaluate(session: Session, model, user_split, prompted: Prompted, heldout: bool = True) -> Evaluated:
    spec, loaded, task = session.setup.training, session.loaded, session.task
    tok, pad, device = loaded.tokenizer, loaded.tokenizer.pad_token_id, loaded.device
    pairs = [pair_example(tok, p, r, spec.max_seq_len + spec.max_prompt_tokens)
             for p, r in zip(prompted.prompts, prompted.references)]
    loss = answer_loss(model, pairs, pad, device, spec.gen_batch_size)
    texts = memory_texts(task, user_split.heldout[:HELDOUT_LOSS_ITEMS]) if heldout else []
    held = [text_example(tok, t, spec.max_seq_len) for t in texts]
    started = time.perf_counter()
    preds = generate(model, tok, prompted.prompts, device, spec.max_new_tokens, spec.gen_batch_size)
    gen_seconds = time.perf_counter() - started
    content = session.user_content(user_split.user)
    metrics = dict(score(task, preds, list(prompted.references), user_content=content))
    per_query = {k: tuple(v) for k, v in score_queries(task, preds, list(prompted.references), content).items()}
    metrics.update({f"{k}{SE_SUFFIX}": standard_error([v]) for k, v in per_query.items()})
    metrics.update(loss=loss, generate_seconds=gen_seconds, n_queries=len(preds))
    if held:
        metrics["heldout_loss"] = answer_loss(model, held, pad, device, spec.gen_batch_size)
    return Evaluated(metrics, tuple(preds), per_query)


def aggregate(users: Sequence[UserResult]) -> dict[str, float]:
    """Mean of each metric over users (times and counts, :data:`SUMMED_METRICS`, summed); the user count;
    and ``<metric>_se`` for the per-query metrics: the bootstrap over users, then queries within users."""
    keys = sorted({k for u in users for k in u.metrics if not k.endswith(SE_SUFFIX)})
    out: dict[str, float] = {}
    for key in keys:
        values = [float(u.metrics[key]) for u in users if key in u.metrics]
        values = [v for v in values if not math.isnan(v)] or [math.nan]
        out[key] = sum(values) if key in SUMMED_METRICS else sum(values) / len(values)
    for key in sorted({k for u in users for k in u.query_scores}):
        groups = [u.query_scores[key] for u in users if u.query_scores.get(key)]
        if len(groups) == len(users) and groups:
            out[f"{key}{SE_SUFFIX}"] = standard_error(groups)
    out["n_users"] = len(users)
    if out.get("train_seconds"):
        out["train_tokens_per_second"] = out.get("train_tokens", 0.0) / out["train_seconds"]
    return out
