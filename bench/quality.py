"""Answer quality of every personalization method at several training budgets, with intervals.

In one run on the embedded SmolLM2-135M-Instruct, for each dataset (the builtin demo data and,
when present, the MedicalDialogue sample), it evaluates these rows on the validation queries:

- ``non-personalized`` (base model, query only) and ``rag-<retriever>`` for bm25, dense,
  recency and random (``k`` items in the prompt): no training, run once per dataset;
- ``cohort`` (one LoRA trained on every cohort user's history, the per-user budget summed:
  :mod:`runners.cohort`; domain adaptation, not personalization) and ``cohort+rag-bm25`` (it
  with bm25 retrieval): trained once per dataset and cached under the tool's home;
- per training budget (optimiser steps per user): ``oppu`` (one rank-8 LoRA on every layer,
  no retrieval), ``milp-default`` (the recommended default memory, no retrieval),
  ``peft+rag`` (that memory plus bm25 retrieval, trained on retrieval-shaped prompts),
  ``peft+rag@cohort`` (the same memory trained on top of the cohort adapter) and, when a Per-Pcs
  pool exists or ``--pool-sharers`` builds one, ``per-pcs`` and ``peft-retrieval``.

Each metric is printed with its 95% interval from a bootstrap over users, then queries within
users (:func:`runners.metrics.uncertainty.bootstrap_interval`), with the numbers of users and
queries; storage is bytes per user, seconds are wall seconds per user (CPU seconds beside).
Then every row is compared, paired (same users and queries), with the non-personalized model,
with bm25 RAG and with the cohort adapter on ROUGE-L, Persona-F1, copy rate and validation loss.
Progress is printed line by line. With ``--json FILE`` every row is appended to FILE as it
finishes, and a later run with the same FILE reuses the rows already there (same dataset, budget,
row and users): a long run resumes where it stopped. Examples::

    python bench/quality.py --quick
    python bench/quality.py --users 4 --budgets 8,24,64 --datasets demo,meddialogue --med-users 12
    python bench/quality.py --rows oppu,milp-default --budgets 24 --set training.lr=3e-3

The trial call is wrapped in :func:`run_row`; the configurations come from the ``*_config``
functions in the flat form of a search space (``TrialConfig.from_flat``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# The MedicalDialogue sample lives beside the repository (../shared/data), never inside it.
MEDDIALOGUE = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "meddialogue-sample.jsonl")
RETRIEVERS = ("bm25", "dense", "recency", "random")
RAG_K = 4
DEFAULT_BUDGETS = (4, 16, 64)
RECOMMENDED_BUDGET = 16
# The recommended default memory (docs/notes/quality.md): one rank-8 LoRA on the upper 8 layers.
DEFAULT_MEMORY = {"layers": "top:8", "count": 1, "rank": 8}
# The recommended recipe (docs/notes/quality.md); the budget sets the step counts (training_for_budget).
RECIPE: dict[str, Any] = {
    "memory_injection": False,
    "instruction_tuning": True,
    "max_seq_len": 256,
    "batch_size": 8,
    "lr": 1e-2,
    "warmup_ratio": 0.1,
    "weight_decay": 1e-4,
    "lora_alpha_ratio": 2.0,
    "max_new_tokens": 32,
    "seed": 0,
    "autocast": "bfloat16",
    "cache_frozen": True,
    "pack": False,
    # spaces/milp.yaml since issue 35: 4 passes over the history, no floor, a gentler lr below 16 items
    "epochs": 4,
    "min_steps": 0,
    "lr_full_items": 16,
    "train_rag_k": 2,
}
TRAINING_ROWS = ("oppu", "milp-default", "peft+rag", "peft+rag@cohort", "per-pcs", "peft-retrieval")
COHORT_ROWS = ("cohort", "cohort+rag-bm25")
FIXED_ROWS = ("non-personalized",) + tuple(f"rag-{r}" for r in RETRIEVERS)
# The references every other row is compared with, paired.
PAIRED_REFERENCES = ("non-personalized", "rag-bm25", "cohort")


# --------------------------------------------------------------------------- configurations


def layers_value(spec: str | Sequence[int], n_layers: int) -> Any:
    """``all``, ``none``, ``top:N`` (the upper N layers) or a list, as ``lora.layers`` takes it."""
    if isinstance(spec, str) and spec.startswith("top:"):
        n = int(spec.split(":", 1)[1])
        return [1 if i >= n_layers - n else 0 for i in range(n_layers)]
    return spec


def off_config(n_layers: int) -> dict[str, Any]:
    """No memory, no retrieval, no shared pieces: the non-personalized base model."""
    return {"lora.layers": [0] * n_layers, "lora.count": 0, "lora.rank": 8, "rag.k": 0,
            "rag.retriever": "bm25", "perpcs.top_k": 0, "lora.base": "none"}


def rag_config(n_layers: int, retriever: str, k: int = RAG_K) -> dict[str, Any]:
    """Retrieval only: ``k`` history items by ``retriever`` in the prompt."""
    return {**off_config(n_layers), "rag.k": k, "rag.retriever": retriever}


def memory_config(n_layers: int, layers: str | Sequence[int] = "all", count: int = 1, rank: int = 8,
                  k: int = 0, retriever: str = "bm25") -> dict[str, Any]:
    """The user's own LoRA memory (MiLP), optionally with retrieval (PEFT+RAG)."""
    return {**off_config(n_layers), "lora.layers": layers_value(layers, n_layers), "lora.count": count,
            "lora.rank": rank, "rag.k": k, "rag.retriever": retriever}


def cohort_config(n_layers: int, k: int = 0, retriever: str = "bm25") -> dict[str, Any]:
    """The cohort adapter alone (with ``k`` retrieved items when ``k > 0``)."""
    return {**off_config(n_layers), "lora.base": "cohort", "rag.k": k, "rag.retriever": retriever}


def perpcs_config(n_layers: int, top_k: int = 2) -> dict[str, Any]:
    """Per-Pcs: top-k pieces per layer-projection assembled from the pool."""
    return {**off_config(n_layers), "perpcs.top_k": top_k}


def peft_retrieval_config(n_layers: int, m: int = 2) -> dict[str, Any]:
    """PEFT retrieval: the m closest sharers' whole PEFTs, averaged."""
    return {**off_config(n_layers), "perpcs.retrieve": m}


def training_for_budget(budget: int, recipe: dict[str, Any]) -> dict[str, Any]:
    """Training settings for a budget of ``budget`` optimiser steps per MiLP step and user.

    ``max_steps = budget``; without the recipe's keys, ``epochs = ceil(budget / 4)`` (a demo
    user has 4-7 batches, so reaches the cap) and ``min_steps = min(8, budget)`` (the recipe
    before issue 35). Keys the recipe sets win: :data:`RECIPE` sets ``epochs`` 4 and
    ``min_steps`` 0 (a 2-item history takes 4 steps at every budget, at ``lr * 2 / 16``).
    """
    return {"epochs": max(1, math.ceil(budget / 4)), "max_steps": budget, "min_steps": min(8, budget), **recipe}


@dataclass(frozen=True)
class Row:
    """One line of the table: a name, a trial configuration and training overrides."""

    name: str
    config: dict[str, Any]
    trains: bool
    training: dict[str, Any] = field(default_factory=dict)


def fixed_rows(n_layers: int, k: int = RAG_K) -> list[Row]:
    """Rows without training: non-personalized and RAG with each retriever."""
    rows = [Row("non-personalized", off_config(n_layers), False)]
    rows += [Row(f"rag-{r}", rag_config(n_layers, r, k), False) for r in RETRIEVERS]
    return rows


def cohort_rows(n_layers: int, k: int = RAG_K) -> list[Row]:
    """Rows on the cohort adapter without per-user training (the adapter trains once per dataset)."""
    return [Row("cohort", cohort_config(n_layers), True),
            Row("cohort+rag-bm25", cohort_config(n_layers, k, "bm25"), True)]


def training_rows(n_layers: int, memory: dict[str, Any], k: int = RAG_K, train_rag: bool = True) -> list[Row]:
    """Rows that train a per-user PEFT (at each budget)."""
    rag_training = {} if train_rag else {"train_rag": False}
    peft_rag = memory_config(n_layers, **memory, k=k, retriever="bm25")
    # the rows that decide the comparisons with retrieval and the cohort adapter first
    rows = [Row("peft+rag", peft_rag, True, rag_training),
            Row("peft+rag@cohort", {**peft_rag, "lora.base": "cohort"}, True, rag_training),
            Row("milp-default", memory_config(n_layers, **memory), True),
            Row("oppu", memory_config(n_layers, "all", 1, 8), True)]
    return rows


def pool_rows(n_layers: int) -> list[Row]:
    """Rows that assemble a per-user PEFT from the Per-Pcs pool (no per-user training)."""
    return [Row("per-pcs", perpcs_config(n_layers), True), Row("peft-retrieval", peft_retrieval_config(n_layers), True)]


def parse_extra(text: str, n_layers: int) -> Row:
    """``name|key=value|...``: trial keys (``lora.*``, ``rag.*``) and ``training.*`` overrides.

    ``lora.layers`` takes ``all``, ``none``, ``top:N`` or a mask as ``status --json`` prints it
    (``[0,1,...]``, one flag per layer), so a study's configuration becomes a row as it is."""
    name, *parts = text.split("|")
    config, training = off_config(n_layers), {}
    for part in parts:
        key, value = part.split("=", 1)
        parsed = _value(value)
        if key.startswith("training."):
            training[key.split(".", 1)[1]] = parsed
        elif key == "lora.layers":
            config[key] = layers_value(parsed if isinstance(parsed, list) else str(value), n_layers)
        else:
            config[key] = parsed
    trains = int(config.get("lora.count", 0)) > 0 or int(config.get("perpcs.top_k", 0) or 0) > 0
    return Row(name, config, trains, training)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# --------------------------------------------------------------------------- running


def make_setup(source: str, users: int, training: dict[str, Any], val_fraction: float,
               max_val_queries: int | None, fmt: str | None = None):
    """A trial setup on the embedded model (unknown training keys are a ConfigError)."""
    from runners.spec import TrialSetup

    # test_split=queries: the rows are scored on every user's validation queries, one-query users
    # (the MedicalDialogue sample) included, as the published tables were (auto would hold users out)
    data = {"source": source, "format": fmt, "users": users, "val_fraction": val_fraction,
            "max_val_queries": max_val_queries, "test_split": "queries"}
    return TrialSetup.from_dicts(data=data, training=training)


_LOADED: dict[str, Any] = {}


def session_sharing_model(setup):
    """The setup's session, with the base model loaded once per process for all setups."""
    from runners.session import session_for

    session = session_for(setup)
    key = repr(setup.model)
    if "loaded" not in session.__dict__:
        if key in _LOADED:
            session.__dict__["loaded"] = _LOADED[key]
        else:
            _LOADED[key] = session.loaded
    return session


@dataclass
class RowResult:
    """A row's trial result with per-query scores and timings."""

    name: str
    budget: int | None
    rouge: list[list[float]]
    persona: list[list[float]]
    copy: list[list[float]]
    loss: list[list[float]]
    storage: float
    wall_per_user: float
    cpu_per_user: float
    train_seconds: float
    train_steps: float
    metrics: dict[str, float]
    predictions: dict[str, list[str]]


def per_query_scores(result, key: str) -> list[list[float]]:
    """Per user, the trial's per-query values of ``key`` (``rougeL``, ``persona_f1``, ``copy_rate``)."""
    return [list(user.query_scores[key]) for user in result.users]


def reference_copy_rates(session) -> list[list[float]]:
    """Per user, the copy rate of the reference answers of the validation queries: how much of what
    the user's next message really said repeats their history word for word (the natural level)."""
    from runners.metrics import copy_rate

    return [[copy_rate(q.output, session.user_content(s.user).ngrams) for q in s.val] for s in session.splits]


def run_row(setup, row: Row, budget: int | None, autocast_all: bool = False) -> RowResult:
    """Run one row's trial (the only place that calls the trial runner) and score it per query."""
    import torch

    from runners.spec import TrialConfig
    from runners.trial import run_trial

    session = session_sharing_model(setup)
    started, cpu = time.perf_counter(), time.process_time()
    # Without the weight-cast cache, which would keep the untrained bf16 copy of the LoRA weights.
    context = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False) if autocast_all else _Null()
    with context:
        result = run_trial(TrialConfig.from_flat(row.config, session.layout.n_layers), setup)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    m = dict(result.metrics)
    n = max(len(result.users), 1)
    rouge, persona, copy = (per_query_scores(result, key) for key in ("rougeL", "persona_f1", "copy_rate"))
    loss = [[float(u.metrics["loss"])] for u in result.users]
    return RowResult(row.name, budget, rouge, persona, copy, loss, float(m.get("storage_bytes", 0.0)), wall / n,
                     cpu / n,
                     float(m.get("train_seconds", 0.0)) / n, float(m.get("train_steps", 0.0)) / n, m,
                     {u.user_id: list(u.predictions) for u in result.users})


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def ensure_pool(setup, sharers: int, log) -> bool:
    """Whether a Per-Pcs pool exists for the setup's model and data; builds one with small
    settings (most-active sharers trained with the setup's training, 10 gate steps) when
    ``sharers`` > 0."""
    from runners.perpcs.pool import PoolSettings, build_pool, find_pool

    if find_pool(setup) is not None:
        return True
    if sharers <= 0:
        return False
    log(f"building a Per-Pcs pool: {sharers} most-active sharers, the recommended training, 10 gate steps")
    build_pool(session_sharing_model(setup), PoolSettings(sharers=sharers, strategy="most-active", gate_steps=10), log=log)
    return True


# --------------------------------------------------------------------------- report


def interval_cells(result: RowResult, n_boot: int) -> tuple[str, str, str, str]:
    from runners.metrics.uncertainty import bootstrap_interval

    r = bootstrap_interval(result.rouge, n_boot=n_boot)
    p = bootstrap_interval(result.persona, n_boot=n_boot)
    c = bootstrap_interval(result.copy, n_boot=n_boot)
    return r.format(3), p.format(2), c.format(3), f"{r.n_users}/{r.n_queries}"


HEADER = (f"{'dataset':<12} {'budget':>6} {'row':<22} {'ROUGE-L [95%]':<22} {'Persona-F1 [95%]':<22} "
          f"{'copy rate [95%]':<22} {'users/q':>7} {'storage B':>10} {'s/user':>7} {'cpu/user':>8} {'train s':>7} "
          f"{'steps':>5} {'val loss':>8}")


def format_row(dataset: str, result: RowResult, n_boot: int) -> str:
    rouge, persona, copy, n = interval_cells(result, n_boot)
    budget = "-" if result.budget is None else str(result.budget)
    return (f"{dataset:<12} {budget:>6} {result.name:<22} {rouge:<22} {persona:<22} {copy:<22} {n:>7} "
            f"{result.storage:>10,.0f} {result.wall_per_user:>7.1f} {result.cpu_per_user:>8.1f} "
            f"{result.train_seconds:>7.1f} {result.train_steps:>5.0f} {result.metrics.get('loss', float('nan')):>8.3f}")


# --------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    fmt: str | None
    users: int


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=3, help="demo users (default 3)")
    p.add_argument("--med-users", type=int, default=8, help="MedicalDialogue users (default 8; 1 query each)")
    p.add_argument("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)),
                   help="optimiser steps per user, comma-separated (default 8,24,64)")
    p.add_argument("--datasets", default="demo,meddialogue", help="demo and/or meddialogue (default both)")
    p.add_argument("--meddialogue", default=MEDDIALOGUE, help="path of the MedicalDialogue JSONL sample")
    p.add_argument("--rows", help="comma-separated rows to run (default: all); names: "
                   + ", ".join(FIXED_ROWS + COHORT_ROWS + TRAINING_ROWS))
    p.add_argument("--extra", action="append", default=[],
                   help="an extra training row 'name|lora.layers=top:8|lora.rank=8|rag.k=4|training.lr=0.003'")
    p.add_argument("--set", action="append", default=[], metavar="training.KEY=VALUE",
                   help="override a setting of the recipe (e.g. training.lr=0.003)")
    p.add_argument("--memory", default=None, help="default memory as layers:count:rank, e.g. top:8:1:8 or all:1:8")
    p.add_argument("--val-fraction", type=float, default=0.5, help="data.val_fraction (default 0.5)")
    p.add_argument("--max-val-queries", type=int, default=0, help="data.max_val_queries (default 0: no cap)")
    p.add_argument("--k", type=int, default=RAG_K, help="rag.k of the retrieval rows (default 4)")
    p.add_argument("--no-train-rag", action="store_true", help="peft+rag trains on bare prompts (as before)")
    p.add_argument("--pool-sharers", type=int, default=0, help="build a Per-Pcs pool with this many sharers "
                   "if none exists (default 0: use an existing pool or leave the rows out)")
    p.add_argument("--autocast-all", action="store_true", help="bf16 autocast over the whole trial (generation too)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's choice)")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap draws (default 2000)")
    p.add_argument("--json", help="append one JSON line per row to this file; rows already in it are reused "
                   "(resume)")
    p.add_argument("--quick", action="store_true",
                   help="2 demo users, 3 MedicalDialogue users, budget 8, rows non-personalized, rag-bm25, milp-default")
    return p.parse_args(argv)


def _recipe(args) -> dict[str, Any]:
    recipe = dict(RECIPE)
    for item in args.set:
        key, value = item.split("=", 1)
        recipe[key.removeprefix("training.")] = _value(value)
    return recipe


def _memory(args) -> dict[str, Any]:
    if not args.memory:
        return dict(DEFAULT_MEMORY)
    parts = args.memory.split(":")
    if parts[0] == "top":
        return {"layers": f"top:{parts[1]}", "count": int(parts[2]), "rank": int(parts[3])}
    return {"layers": parts[0], "count": int(parts[1]), "rank": int(parts[2])}


def _datasets(args) -> list[Dataset]:
    out = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        if name == "demo":
            out.append(Dataset("demo", "demo", None, args.users))
        elif name == "meddialogue":
            if not Path(args.meddialogue).exists():
                print(f"skipping meddialogue: {args.meddialogue} is absent", flush=True)
                continue
            out.append(Dataset("meddialogue", args.meddialogue, "jsonl", args.med_users))
        else:
            raise SystemExit(f"--datasets: unknown dataset {name!r}; use demo and/or meddialogue")
    return out


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    if args.quick:
        args.users, args.med_users, args.budgets = 2, 3, "8"
        args.rows = args.rows or "non-personalized,rag-bm25,milp-default"
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    wanted = set(args.rows.split(",")) if args.rows else None
    recipe, memory = _recipe(args), _memory(args)
    max_val = args.max_val_queries or None
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    done = load_done(args.json)
    log(f"date {time.strftime('%Y-%m-%d %H:%M:%S')}, load {os.getloadavg()[0]:.2f}, torch threads "
        f"{torch.get_num_threads()}, recipe {json.dumps(recipe)}, memory {memory}, budgets {budgets}"
        + (f", {len(done)} rows already in {args.json}" if done else ""))
    all_lines = []
    for ds in _datasets(args):
        started = time.perf_counter()
        results: list[RowResult] = []
        base = make_setup(ds.source, ds.users, training_for_budget(RECOMMENDED_BUDGET, recipe), args.val_fraction,
                          max_val, ds.fmt)
        session = session_sharing_model(base)
        n_layers = session.layout.n_layers
        n_queries = sum(len(s.val) for s in session.splits)
        log(f"== {ds.name}: {len(session.splits)} users, {n_queries} validation queries, "
            f"val_fraction {args.val_fraction}, max_val_queries {max_val}")
        log(f"references' own copy rate (what the users' next messages repeat of their history): "
            f"{_interval(reference_copy_rates(session), args.boot, 3)}")
        log(HEADER)
        lines = []

        def run(setup, row, budget):
            key = (ds.name, budget, row.name, len(session.splits))
            result = done.get(key) or run_row(setup, row, budget, args.autocast_all)
            results.append(result)
            lines.append(_report(ds.name, result, args, log, record=key not in done))

        for row in fixed_rows(n_layers, args.k):
            if wanted is None or row.name in wanted:
                run(base, row, None)
        # the cohort adapter trains with the first budget's settings, as the rows trained on top of it do
        cohort_setup = make_setup(ds.source, ds.users, training_for_budget(budgets[0], recipe), args.val_fraction,
                                  max_val, ds.fmt)
        for row in cohort_rows(n_layers, args.k):
            if wanted is None or row.name in wanted:
                run(cohort_setup, row, None)
        if wanted is None or wanted & {"per-pcs", "peft-retrieval"}:
            if ensure_pool(base, args.pool_sharers, log):
                for row in pool_rows(n_layers):
                    if wanted is None or row.name in wanted:
                        run(base, row, None)
            else:
                log("no Per-Pcs pool for this model and data: per-pcs and peft-retrieval left out "
                    "(pass --pool-sharers N to build one)")
        for budget in budgets:
            training = training_for_budget(budget, recipe)
            rows = [r for r in training_rows(n_layers, memory, args.k, not args.no_train_rag)
                    if wanted is None or r.name in wanted]
            rows += [parse_extra(text, n_layers) for text in args.extra]
            for row in rows:
                setup = make_setup(ds.source, ds.users, {**training, **row.training}, args.val_fraction, max_val,
                                   ds.fmt)
                run(setup, row, budget)
        log("")
        for line in paired_summary(results, args.boot):
            log(f"{ds.name:<12} {line}")
        log(f"{ds.name}: wall time {time.perf_counter() - started:.0f} s for the rows run now")
        all_lines += lines
        log("")
    log(HEADER)
    for line in all_lines:
        log(line)
    return 0


def _interval(values: list[list[float]], n_boot: int, digits: int) -> str:
    from runners.metrics.uncertainty import bootstrap_interval

    return bootstrap_interval(values, n_boot=n_boot).format(digits)


PAIRED_METRICS = (("ROUGE-L", "rouge", 3), ("Persona-F1", "persona", 2), ("copy rate", "copy", 3),
                  ("val loss", "loss", 3))


def paired_summary(results: list["RowResult"], n_boot: int) -> list[str]:
    """Every row against each of :data:`PAIRED_REFERENCES` that ran: paired differences (same users and
    queries) of ROUGE-L, Persona-F1, copy rate and validation loss, with 95% intervals; ``*`` marks an
    interval that excludes 0."""
    from runners.metrics.uncertainty import paired_difference_interval

    by_name = {r.name: r for r in results if r.budget is None}
    lines = []
    for result in results:
        for ref_name in PAIRED_REFERENCES:
            ref = by_name.get(ref_name)
            if ref is None or ref is result:
                continue
            cells = []
            for label, attr, digits in PAIRED_METRICS:
                d = paired_difference_interval(getattr(result, attr), getattr(ref, attr), n_boot=n_boot)
                mark = "*" if d.low > 0 or d.high < 0 else " "
                cells.append(f"{label} {d.format(digits)}{mark}")
            budget = "-" if result.budget is None else str(result.budget)
            lines.append(f"{budget:>6} {result.name:<22} minus {ref.name:<17} " + "  ".join(cells))
    return lines


def load_done(path: str | None) -> dict[tuple, RowResult]:
    """The rows already recorded in a ``--json`` file, by (dataset, budget, row, users)."""
    if not path or not Path(path).exists():
        return {}
    fields = {f.name for f in dataclasses.fields(RowResult)}
    done = {}
    for line in Path(path).read_text().splitlines():
        record = json.loads(line)
        if not fields <= set(record):
            continue  # a record of an older version of this bench (no copy rate): run the row again
        result = RowResult(**{k: record[k] for k in fields})
        done[(record["dataset"], result.budget, result.name, len(result.rouge))] = result
    return done


def _report(dataset: str, result: RowResult, args, log, record: bool = True) -> str:
    line = format_row(dataset, result, args.boot)
    log(line)
    if args.json and record:
        with open(args.json, "a") as fh:
            fh.write(json.dumps({"dataset": dataset, **dataclasses.asdict(result), "date": time.strftime("%F %T"),
                                 "load": os.getloadavg()[0]}) + "\n")
    return line


if __name__ == "__main__":
    raise SystemExit(main())
