"""Per-Pcs versus OPPU on the embedded model: time, storage and ROUGE-L per user, in one run.

For the same target users (the cohort of ``spaces/milp.yaml``'s data settings, on the embedded
SmolLM2-135M-Instruct), it measures:

- Per-Pcs: assembling the user's PEFT from a pool with top-k (the pool is built first, or
  reused; its one-off cost is printed apart, since it is shared by every target user), the
  bytes of the stored assembly (piece indices and weights), and the ROUGE-L of the assembled
  model on the user's validation queries;
- OPPU: training a rank-r LoRA on every layer with the trial runner's training on the same
  history, the bytes of its exported fp16 adapter, and its ROUGE-L on the same queries;

and prints the ratios next to the paper's anchors (7x compute, 38x storage, about 99% quality).

    python bench/perpcs_cost.py --sharers 4 --users 2 --steps 6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PAPER = {"compute": 7.0, "storage": 38.0, "quality": 0.99}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="spaces/milp.yaml", help="space whose model/data/training settings are used")
    p.add_argument("--sharers", type=int, default=4, help="pool sharers (default 4)")
    p.add_argument("--users", type=int, default=2, help="target users: the cohort size (default 2)")
    p.add_argument("--steps", type=int, default=6, help="training steps per phase, sharers and OPPU (default 6)")
    p.add_argument("--gate-steps", type=int, default=20, help="gate-training steps per sharer (default 20)")
    p.add_argument("--top-k", type=int, default=2, help="Per-Pcs top-k (default 2)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank of pieces and of OPPU (default 8)")
    p.add_argument("--strategy", default="kmeans", choices=["kmeans", "most-active", "random"])
    p.add_argument("--max-val-queries", type=int, default=2, help="validation queries per user (default 2)")
    p.add_argument("--pool", help="pool directory (default: the tool home's pool for these settings)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    from runners.perpcs.pool import PoolSettings, build_pool
    from runners.session import session_for
    from search.study.setup import trial_setup
    from search.space import load_space

    args = parse_args(argv)
    space = load_space(args.space).with_overrides([
        f"data.users={args.users}", f"data.max_val_queries={args.max_val_queries}", f"training.max_steps={args.steps}"])
    setup = trial_setup(space)
    session = session_for(setup)
    print(f"model {setup.model.name}, data {setup.data.source}, {args.users} target users, "
          f"rank {args.rank}, top-k {args.top_k}, {args.steps} steps per phase, {args.sharers} sharers", flush=True)
    settings = PoolSettings(sharers=args.sharers, strategy=args.strategy, rank=args.rank,
                            gate_steps=args.gate_steps, seed=setup.training.seed)
    started = time.perf_counter()
    pool = build_pool(session, settings, pool_dir=args.pool, log=lambda m: print("  " + m, flush=True))
    pool_seconds = time.perf_counter() - started
    rows = [measure_user(session, pool, split, args) for split in session.splits]
    report(rows, pool, pool_seconds)
    return 0


def measure_user(session, pool, split, args) -> dict:
    from runners.memory import MemoryConfig, attach_memory, detach_memory, export_merged_adapter
    from runners.metrics.storage import file_bytes
    from runners.perpcs.assembly import apply_assembly, assemble
    from runners.history import history_examples, train_on_history

    loaded, layout, spec = session.loaded, session.layout, session.setup.training
    user_id = split.user.user_id
    seed = spec.seed + zlib.crc32(user_id.encode())
    examples = history_examples(loaded.tokenizer, session.task, split.train, spec, seed)
    prompts, refs = val_prompts(session, split)
    out = Path(tempfile.mkdtemp(prefix="perpcs-bench-"))
    row = {"user": user_id, "history": len(split.train), "queries": len(refs)}
    row["base_rougeL"] = rouge_l(session, loaded.model, prompts, refs)

    assembly = assemble(pool, loaded, layout, examples.all(), args.top_k, user_id=user_id)
    row["perpcs_seconds"], row["perpcs_bytes"] = assembly.seconds, assembly.save(out / "assembly.safetensors")
    peft_model = apply_assembly(loaded.model, pool, assembly)
    try:
        row["perpcs_rougeL"] = rouge_l(session, peft_model, prompts, refs)
    finally:
        detach_memory(peft_model)

    memory = MemoryConfig(tuple(range(layout.n_layers)), count=1, rank=args.rank,
                          alpha_ratio=spec.lora_alpha_ratio, dropout=spec.lora_dropout)
    peft_model = attach_memory(loaded.model, layout, memory, seed)
    try:
        started = time.perf_counter()
        phases = train_on_history(peft_model, examples, spec, loaded.tokenizer.pad_token_id, loaded.device, seed)
        row["oppu_seconds"] = time.perf_counter() - started
        row["oppu_steps"] = sum(p.steps for p in phases)
        row["oppu_bytes"] = file_bytes(export_merged_adapter(peft_model, layout, memory, out / "oppu"))
        row["oppu_rougeL"] = rouge_l(session, peft_model, prompts, refs)
    finally:
        detach_memory(peft_model)
    print(f"  {user_id}: Per-Pcs {row['perpcs_seconds']:.2f}s {row['perpcs_bytes']:,} B rougeL "
          f"{row['perpcs_rougeL']:.4f} | OPPU {row['oppu_seconds']:.2f}s {row['oppu_bytes']:,} B rougeL "
          f"{row['oppu_rougeL']:.4f} | base rougeL {row['base_rougeL']:.4f}", flush=True)
    return row


def val_prompts(session, split) -> tuple[list[str], list[str]]:
    """The user's validation queries as the trial runner prompts them without retrieval."""
    from runners.chat import render_prompt
    from runners.prompts import build_prompt

    tok, budget = session.loaded.tokenizer, session.setup.training.max_prompt_tokens
    prompts = [render_prompt(tok, build_prompt(session.task, q.input, [], tok, budget).text) for q in split.val]
    return prompts, [q.output for q in split.val]


def rouge_l(session, model, prompts, refs) -> float:
    from runners.generation import generate
    from runners.metrics import score

    spec, loaded = session.setup.training, session.loaded
    preds = generate(model, loaded.tokenizer, prompts, loaded.device, spec.max_new_tokens, spec.gen_batch_size)
    return float(score(session.task, preds, refs)["rougeL"])


def report(rows, pool, pool_seconds) -> None:
    from rich.console import Console
    from rich.table import Table

    def mean(key):
        return sum(r[key] for r in rows) / len(rows)

    table = Table(title="Per-Pcs vs OPPU per target user (embedded model, CPU)")
    for col in ("user", "history", "Per-Pcs s", "OPPU s", "Per-Pcs bytes", "OPPU bytes",
                "Per-Pcs R-L", "OPPU R-L", "base R-L"):
        table.add_column(col, justify="left" if col == "user" else "right")
    for r in rows:
        table.add_row(r["user"], str(r["history"]), f"{r['perpcs_seconds']:.2f}", f"{r['oppu_seconds']:.2f}",
                      f"{r['perpcs_bytes']:,}", f"{r['oppu_bytes']:,}", f"{r['perpcs_rougeL']:.4f}",
                      f"{r['oppu_rougeL']:.4f}", f"{r['base_rougeL']:.4f}")
    console = Console(width=120)
    console.print(table)
    compute = mean("oppu_seconds") / mean("perpcs_seconds")
    storage = mean("oppu_bytes") / mean("perpcs_bytes")
    quality = mean("perpcs_rougeL") / mean("oppu_rougeL") if mean("oppu_rougeL") else float("nan")
    print(f"pool (one-off, shared by all target users): {pool.n_sharers} sharers, {pool_seconds:.1f}s "
          f"(0 when reused), {pool.size_bytes:,} bytes at {pool.directory}")
    print(f"OPPU training steps per user: {mean('oppu_steps'):.0f}")
    print(f"compute ratio OPPU/Per-Pcs: {compute:.1f}x   (paper: {PAPER['compute']:.0f}x)")
    print(f"storage ratio OPPU/Per-Pcs: {storage:.1f}x   (paper: {PAPER['storage']:.0f}x)")
    print(f"quality Per-Pcs/OPPU ROUGE-L: {quality:.3f} ({mean('perpcs_rougeL'):.4f} / {mean('oppu_rougeL'):.4f}; "
          f"base {mean('base_rougeL'):.4f})   (paper: about {PAPER['quality']:.2f})")


if __name__ == "__main__":
    sys.exit(main())
