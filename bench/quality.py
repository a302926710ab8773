"""Answer quality of every personalization method at several training budgets, with intervals.

In one run on the embedded SmolLM2-135M-Instruct, for each dataset (the builtin demo data and,
when present, the MedicalDialogue sample), it evaluates these rows on the validation queries:

- ``non-personalized`` (base model, query only) and ``rag-<retriever>`` for bm25, dense,
  recency and random (``k`` items in the prompt): no training, run once per dataset;
- per training budget (optimiser steps per user): ``oppu`` (one rank-8 LoRA on every layer,
  no retrieval), ``milp-default`` (the recommended default memory, no retrieval),
  ``peft+rag`` (that memory plus bm25 retrieval, trained on retrieval-shaped prompts) and,
  when a Per-Pcs pool exists or ``--pool-sharers`` builds one, ``per-pcs`` and
  ``peft-retrieval``.

Each metric is printed with its 95% interval from a bootstrap over users, then queries within
users (:func:`runners.metrics.uncertainty.bootstrap_interval`), with the numbers of users and
queries; storage is bytes per user, seconds are wall seconds per user (CPU seconds beside).
Progress is printed line by line. Examples::

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
}
TRAINING_ROWS = ("oppu", "milp-default", "peft+rag", "per-pcs", "peft-retrieval")
FIXED_ROWS = ("non-personalized",) + tuple(f"rag-{r}" for r in RETRIEVERS)


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
            "rag.retriever": "bm25", "perpcs.top_k": 0}


def rag_config(n_layers: int, retriever: str, k: int = RAG_K) -> dict[str, Any]:
    """Retrieval only: ``k`` history items by ``retriever`` in the prompt."""
    return {**off_config(n_layers), "rag.k": k, "rag.retriever": retriever}


def memory_config(n_layers: int, layers: str | Sequence[int] = "all", count: int = 1, rank: int = 8,
                  k: int = 0, retriever: str = "bm25") -> dict[str, Any]:
    """The user's own LoRA memory (MiLP), optionally with retrieval (PEFT+RAG)."""
    return {**off_config(n_layers), "lora.layers": layers_value(layers, n_layers), "lora.count": count,
            "lora.rank": rank, "rag.k": k, "rag.retriever": retriever}


def perpcs_config(n_layers: int, top_k: int = 2) -> dict[str, Any]:
    """Per-Pcs: top-k pieces per layer-projection assembled from the pool."""
    return {**off_config(n_layers), "perpcs.top_k": top_k}


def peft_retrieval_config(n_layers: int, m: int = 2) -> dict[str, Any]:
    """PEFT retrieval: the m closest sharers' whole PEFTs, averaged."""
    return {**off_config(n_layers), "perpcs.retrieve": m}


def training_for_budget(budget: int, recipe: dict[str, Any]) -> dict[str, Any]:
    """Training settings for a budget of ``budget`` optimiser steps per MiLP step and user.

    ``max_steps = budget``, ``epochs = ceil(budget / 4)`` (a demo user has 4-7 batches, so
    reaches the cap) and ``min_steps = min(8, budget)``: a 2-item history (one batch) takes
    ``max(epochs, min_steps)`` steps, i.e. 8 at budget 16. Budget 16 is the recommended
    setting (epochs 4, min_steps 8, max_steps 16). Keys the recipe sets win.
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


def training_rows(n_layers: int, memory: dict[str, Any], k: int = RAG_K, train_rag: bool = True) -> list[Row]:
    """Rows that train a per-user PEFT (at each budget)."""
    rows = [Row("oppu", memory_config(n_layers, "all", 1, 8), True),
            Row("milp-default", memory_config(n_layers, **memory), True),
            Row("peft+rag", memory_config(n_layers, **memory, k=k, retriever="bm25"), True,
                {} if train_rag else {"train_rag": False})]
    return rows


def pool_rows(n_layers: int) -> list[Row]:
    """Rows that assemble a per-user PEFT from the Per-Pcs pool (no per-user training)."""
    return [Row("per-pcs", perpcs_config(n_layers), True), Row("peft-retrieval", peft_retrieval_config(n_layers), True)]


def parse_extra(text: str, n_layers: int) -> Row:
    """``name|key=value|...``: trial keys (``lora.*``, ``rag.*``) and ``training.*`` overrides."""
    name, *parts = text.split("|")
    config, training = off_config(n_layers), {}
    for part in parts:
        key, value = part.split("=", 1)
        parsed = _value(value)
        if key.startswith("training."):
            training[key.split(".", 1)[1]] = parsed
        elif key == "lora.layers":
            config[key] = layers_value(str(value), n_layers)
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
    storage: float
    wall_per_user: float
    cpu_per_user: float
    train_seconds: float
    train_steps: float
    metrics: dict[str, float]
    predictions: dict[str, list[str]]


def per_query_scores(session, result) -> tuple[list[list[float]], list[list[float]]]:
    """Per user, the ROUGE-L and Persona-F1 of each validation query (as the trial scores them)."""
    from runners.metrics.persona import persona_f1
    from runners.metrics.rouge import rouge_per_item

    splits = {s.user.user_id: s for s in session.splits}
    rouge, persona = [], []
    for user in result.users:
        split = splits[user.user_id]
        queries = split.val if result.split == "val" else split.test
        refs = [q.output for q in queries]
        preds = list(user.predictions)
        rouge.append(rouge_per_item(preds, refs)["rougeL"])
        content = session.persona_content(split.user)
        persona.append([persona_f1(p, content) for p in preds])
    return rouge, persona


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
    rouge, persona = per_query_scores(session, result)
    m = dict(result.metrics)
    n = max(len(result.users), 1)
    return RowResult(row.name, budget, rouge, persona, float(m.get("storage_bytes", 0.0)), wall / n, cpu / n,
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


def interval_cells(result: RowResult, n_boot: int) -> tuple[str, str, str]:
    from runners.metrics.uncertainty import bootstrap_interval

    r = bootstrap_interval(result.rouge, n_boot=n_boot)
    p = bootstrap_interval(result.persona, n_boot=n_boot)
    return r.format(3), p.format(2), f"{r.n_users}/{r.n_queries}"


HEADER = (f"{'dataset':<12} {'budget':>6} {'row':<22} {'ROUGE-L [95%]':<22} {'Persona-F1 [95%]':<22} "
          f"{'users/q':>7} {'storage B':>10} {'s/user':>7} {'cpu/user':>8} {'train s':>7} {'steps':>5} {'val loss':>8}")


def format_row(dataset: str, result: RowResult, n_boot: int) -> str:
    rouge, persona, n = interval_cells(result, n_boot)
    budget = "-" if result.budget is None else str(result.budget)
    return (f"{dataset:<12} {budget:>6} {result.name:<22} {rouge:<22} {persona:<22} {n:>7} "
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
                   + ", ".join(FIXED_ROWS + TRAINING_ROWS))
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
    p.add_argument("--json", help="append one JSON line per row to this file")
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
    log(f"date {time.strftime('%Y-%m-%d %H:%M:%S')}, load {os.getloadavg()[0]:.2f}, torch threads "
        f"{torch.get_num_threads()}, recipe {json.dumps(recipe)}, memory {memory}, budgets {budgets}")
    all_lines = []
    for ds in _datasets(args):
        results: list[RowResult] = []
        base = make_setup(ds.source, ds.users, training_for_budget(RECOMMENDED_BUDGET, recipe), args.val_fraction,
                          max_val, ds.fmt)
        session = session_sharing_model(base)
        n_layers = session.layout.n_layers
        n_queries = sum(len(s.val) for s in session.splits)
        log(f"== {ds.name}: {len(session.splits)} users, {n_queries} validation queries, "
            f"val_fraction {args.val_fraction}, max_val_queries {max_val}")
        log(HEADER)
        lines = []

        def run(setup, row, budget):
            result = run_row(setup, row, budget, args.autocast_all)
            results.append(result)
            lines.append(_report(ds.name, result, args, log))

        for row in fixed_rows(n_layers, args.k):
            if wanted is None or row.name in wanted:
                run(base, row, None)
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
        all_lines += lines
        log("")
    log(HEADER)
    for line in all_lines:
        log(line)
    return 0


def paired_summary(results: list["RowResult"], n_boot: int) -> list[str]:
    """Each row that trains or assembles against non-personalized and against the retrieval-only
    row with the highest Persona-F1: paired differences (same users and queries) with intervals."""
    from runners.metrics.uncertainty import paired_difference_interval

    base = next((r for r in results if r.name == "non-personalized"), None)
    rags = [r for r in results if r.name.startswith("rag-")]
    best_rag = max(rags, key=lambda r: sum(map(sum, r.persona)) / max(1, sum(map(len, r.persona))), default=None)
    lines = []
    for result in results:
        if result.name in FIXED_ROWS:
            continue
        for ref in (base, best_rag):
            if ref is None:
                continue
            dr = paired_difference_interval(result.rouge, ref.rouge, n_boot=n_boot)
            dp = paired_difference_interval(result.persona, ref.persona, n_boot=n_boot)
            verdict = "beyond" if dp.low > 0 else "within"
            budget = "-" if result.budget is None else str(result.budget)
            lines.append(f"{budget:>6} {result.name:<22} minus {ref.name:<17} ROUGE-L {dr.format(3):<24} "
                         f"Persona-F1 {dp.format(2):<22} (Persona-F1 gain {verdict} the 95% interval)")
    return lines


def _report(dataset: str, result: RowResult, args, log) -> str:
    line = format_row(dataset, result, args.boot)
    log(line)
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps({"dataset": dataset, **dataclasses.asdict(result), "date": time.strftime("%F %T"),
                                 "load": os.getloadavg()[0]}) + "\n")
    return line


if __name__ == "__main__":
    raise SystemExit(main())
