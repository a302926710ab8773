"""Benchmark: the overhead of a trial over a minimal hand-written PEFT loop on the same batches.

One configuration (by default ``lora.layers=all, lora.count=1, lora.rank=8, rag.k=0``) on a
small cohort of demo users is run two ways in one process:

(a) a trial, ``runners.trial.run_trial(config, setup)``: train, evaluate, score, export;
(b) a minimal loop written here: per user ``peft.get_peft_model`` with one ``LoraConfig`` of
    the same rank and targets, the SAME examples (built with ``runners.batching`` from the same
    data functions, in the same shuffled order), plain AdamW with a linear warm-up and decay
    for the same number of steps, then greedy ``model.generate`` on the same prompts.

Both start from the session's already loaded base model and split data, so loading and the
GGUF conversion are excluded from both (a warm-up round runs each side once first). The sides
then alternate order over ``--repeats`` rounds and the medians are compared. The LoRA init and
batch order are seeded as the trial seeds them, so both sides must produce the same
predictions; the report says whether they did.

Run from the repository root::

    PYTHONPATH=. python bench/trial_overhead.py --model tiny            # seconds
    PYTHONPATH=. python bench/trial_overhead.py --users 2 --steps 6     # embedded SmolLM2

``--breakdown`` adds one untimed trial with timers around the runner's stages.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

from runners.session import session_for
from runners.spec import TrialConfig, parse_layer_indices

GOAL = 1.10
"""The trial may take at most this many times the minimal loop's time."""


@dataclass
class SideTiming:
    """One timed run of one side (trial or minimal loop)."""

    seconds: float
    train_seconds: float
    generate_seconds: float
    train_tokens: int
    predictions: dict[str, list[str]] = field(default_factory=dict)

    @property
    def other_seconds(self) -> float:
        """Time outside training and generation (evaluation losses, scoring, export, setup)."""
        return self.seconds - self.train_seconds - self.generate_seconds

    @property
    def tokens_per_second(self) -> float:
        return self.train_tokens / self.train_seconds if self.train_seconds > 0 else math.nan


def build_setup(model: str, users: int, steps: int, max_new_tokens: int, max_val_queries: int):
    """The trial setup both sides share: demo data, one epoch capped at ``steps`` per phase.

    Args:
        model: ``smollm2-135m-instruct``, ``tiny`` or a local model directory.
        users: Cohort size.
        steps: Optimiser steps per training phase (memory injection, instruction tuning).
        max_new_tokens: Generation length.
        max_val_queries: Validation queries per user.

    Returns:
        A :class:`runners.spec.TrialSetup`.
    """
    from runners.spec import TrialSetup

    return TrialSetup.from_dicts(
        model={"name": model, "dtype": "float32" if model == "tiny" else "auto", "device": "auto"},
        data={"source": "demo", "users": users, "max_val_queries": max_val_queries},
        training={
            "epochs": 3, "max_steps": steps, "max_seq_len": 256, "batch_size": 8,
            "max_new_tokens": max_new_tokens, "seed": 0,
        },
    )


# --- (a) the trial ---------------------------------------------------------------------------

def time_trial(config: TrialConfig, setup) -> SideTiming:
    """Run one trial and time it end to end."""
    from runners.trial import run_trial

    started = time.perf_counter()
    result = run_trial(config, setup)
    seconds = time.perf_counter() - started
    m = result.metrics
    return SideTiming(
        seconds, float(m.get("train_seconds", 0.0)), float(m.get("generate_seconds", 0.0)),
        int(m.get("train_tokens", 0)), {u.user_id: list(u.predictions) for u in result.users},
    )


# --- (b) the minimal loop --------------------------------------------------------------------

def time_minimal(config: TrialConfig, setup) -> SideTiming:
    """Run the minimal PEFT loop for every user of the cohort and time it end to end."""
    from runners.session import session_for

    session = session_for(setup)
    loaded, task = session.loaded, session.task  # loaded and split by the warm-up
    started = time.perf_counter()
    total = SideTiming(0.0, 0.0, 0.0, 0)
    for user_split in session.splits:
        _minimal_user(loaded, task, user_split, setup, config, total)
    total.seconds = time.perf_counter() - started
    return total


def _minimal_user(loaded, task: str, user_split, setup, config: TrialConfig, total: SideTiming) -> None:
    import torch
    from peft import LoraConfig, get_peft_model

    from runners.batching import pair_example, text_example
    from runners.chat import render_prompt
    from runners.data.pairs import memory_texts, training_pairs
    from runners.prompts import build_prompt

    spec, tok, device = setup.training, loaded.tokenizer, loaded.device
    rank = config.rank
    seed = spec.seed + zlib.crc32(user_split.user.user_id.encode())
    torch.manual_seed(seed)  # the trial seeds the LoRA init the same way
    lora = LoraConfig(
        r=rank, lora_alpha=spec.lora_alpha_ratio * rank, lora_dropout=spec.lora_dropout,
        target_modules=list(setup.model.targets), bias="none", task_type="CAUSAL_LM",
        layers_to_transform=list(config.layers),
    )
    with warnings.catch_warnings():  # PEFT calls a method transformers 5 deprecated
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model = get_peft_model(loaded.model, lora)
    try:
        started = time.perf_counter()
        texts = [text_example(tok, t, spec.max_seq_len) for t in memory_texts(task, user_split.train)]
        total.train_tokens += _minimal_train(model, texts, spec, tok.pad_token_id, device, seed)
        pairs = [pair_example(tok, render_prompt(tok, i), o, spec.max_seq_len)
                 for i, o in training_pairs(task, user_split.train, seed=seed)]
        total.train_tokens += _minimal_train(model, pairs, spec, tok.pad_token_id, device, seed + 1)
        total.train_seconds += time.perf_counter() - started
        prompts = [render_prompt(tok, build_prompt(task, q.input, [], tok, spec.max_prompt_tokens).text)
                   for q in user_split.val]
        started = time.perf_counter()
        total.predictions[user_split.user.user_id] = _minimal_generate(model, tok, prompts, spec, device)
        total.generate_seconds += time.perf_counter() - started
    finally:
        model.unload()


def _minimal_train(model, examples, spec, pad_id: int, device, seed: int) -> int:
    """AdamW with linear warm-up then decay over the same batches a trial phase sees; returns tokens."""
    import torch

    from runners.batching import batches, collate

    steps = math.ceil(len(examples) / spec.batch_size) * spec.epochs
    steps = min(steps, spec.max_steps) if spec.max_steps is not None else steps
    if steps == 0:
        return 0
    warmup = math.ceil(spec.warmup_ratio * steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step, tokens = 0, 0
    while step < steps:
        for chunk in batches(examples, spec.batch_size, generator):
            batch = collate(chunk, pad_id, device)
            model(**batch).loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += int(batch["attention_mask"].sum())
            step += 1
            if step >= steps:
                break
    model.eval()
    return tokens


def _minimal_generate(model, tok, prompts: Sequence[str], spec, device) -> list[str]:
    import torch

    out: list[str] = []
    side, tok.padding_side = tok.padding_side, "left"
    for start in range(0, len(prompts), spec.gen_batch_size):
        enc = tok(list(prompts[start:start + spec.gen_batch_size]), return_tensors="pt", padding=True,
                  add_special_tokens=False).to(device)
        with torch.no_grad():
            ids = model.generate(**enc, max_new_tokens=spec.max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                 temperature=None, top_p=None, top_k=None)
        out.extend(t.strip() for t in tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    tok.padding_side = side
    return out


# --- the comparison --------------------------------------------------------------------------

def compare(config: TrialConfig, setup, repeats: int, log: Callable[[str], None] = print) -> dict:
    """Warm up both sides, then time them ``repeats`` times in alternating order.

    Returns:
        ``{"trial": [SideTiming...], "minimal": [SideTiming...]}``.
    """
    runs: dict[str, list[SideTiming]] = {"trial": [], "minimal": []}
    sides = {"trial": time_trial, "minimal": time_minimal}
    started = time.perf_counter()
    sides["trial"](config, setup)  # loads and converts the model, splits the data
    sides["minimal"](config, setup)
    log(f"warm-up (model load included): {time.perf_counter() - started:.1f} s")
    for r in range(repeats):
        order = ("trial", "minimal") if r % 2 == 0 else ("minimal", "trial")
        for name in order:
            runs[name].append(sides[name](config, setup))
            log(f"round {r + 1}/{repeats} {name:8s} {runs[name][-1].seconds:8.2f} s")
    return runs


def report(runs: Mapping[str, Sequence[SideTiming]]) -> tuple[str, float]:
    """A table of medians, the ratio trial/minimal and whether both predicted the same.

    Returns:
        The text and the ratio.
    """
    med = {name: _medians(r) for name, r in runs.items()}
    ratio = med["trial"]["seconds"] / med["minimal"]["seconds"]
    lines = [f"{'side':8s} {'total s':>9s} {'train s':>9s} {'gen s':>9s} {'other s':>9s} "
             f"{'train tok':>10s} {'train tok/s':>11s}"]
    for name, m in med.items():
        lines.append(f"{name:8s} {m['seconds']:9.2f} {m['train_seconds']:9.2f} {m['generate_seconds']:9.2f} "
                     f"{m['other_seconds']:9.2f} {m['train_tokens']:10.0f} {m['tokens_per_second']:11.1f}")
    same = all(t.predictions == m.predictions for t, m in zip(runs["trial"], runs["minimal"]))
    verdict = "within" if ratio <= GOAL else "OVER"
    lines.append(f"ratio trial/minimal (median total): {ratio:.3f}  ({verdict} the {GOAL:.2f} goal)")
    lines.append("(medians over rounds, each column separately; other = total - train - gen)")
    lines.append(f"ratio of train time: {med['trial']['train_seconds'] / med['minimal']['train_seconds']:.3f}; "
                 f"of generate time: {_safe_div(med['trial']['generate_seconds'], med['minimal']['generate_seconds']):.3f}")
    lines.append(f"identical predictions on both sides: {same}")
    return "\n".join(lines), ratio


def _medians(runs: Sequence[SideTiming]) -> dict[str, float]:
    keys = ("seconds", "train_seconds", "generate_seconds", "other_seconds", "train_tokens", "tokens_per_second")
    return {k: statistics.median(getattr(r, k) for r in runs) for k in keys}


def _safe_div(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


# --- where a trial's extra time goes ---------------------------------------------------------

BREAKDOWN_STAGES = (
    ("runners.trial", "_prompts"),
    ("runners.memory", "attach_memory"),
    ("runners.trial", "_train"),
    ("runners.training", "answer_loss"),
    ("runners.generation", "generate"),
    ("runners.metrics", "score"),
    ("runners.memory", "export_merged_adapter"),
    ("runners.memory", "detach_memory"),
)
"""Runner functions timed by :func:`breakdown`; each is looked up by module at call time."""


@contextlib.contextmanager
def _timers(stages: Sequence[tuple[str, str]]) -> Iterator[dict[str, list[float]]]:
    import importlib

    spent: dict[str, list[float]] = {f"{m}.{f}": [] for m, f in stages}
    saved = []
    for module_name, name in stages:
        module = importlib.import_module(module_name)
        original = getattr(module, name)
        saved.append((module, name, original))
        setattr(module, name, _timed(original, spent[f"{module_name}.{name}"]))
    try:
        yield spent
    finally:
        for module, name, original in saved:
            setattr(module, name, original)


def _timed(fn: Callable, bucket: list[float]) -> Callable:
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - started)
    return wrapper


def breakdown(config: TrialConfig, setup) -> str:
    """One extra trial with timers around the runner's stages (the runner imports them per call).

    Returns:
        A table: stage, calls, seconds, share of the trial.
    """
    with _timers(BREAKDOWN_STAGES) as spent:
        timing = time_trial(config, setup)
    lines = [f"trial stages (one untimed trial, {timing.seconds:.2f} s):"]
    for stage, values in spent.items():
        lines.append(f"  {stage:40s} {len(values):3d} calls {sum(values):8.2f} s "
                     f"{100 * sum(values) / timing.seconds:5.1f} %")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns 0 when the trial is within the goal, else 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="smollm2-135m-instruct, tiny or a model dir")
    parser.add_argument("--users", type=int, default=2, help="cohort size (demo users)")
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per training phase")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per side (medians are compared)")
    parser.add_argument("--rank", type=int, default=8, help="lora.rank")
    parser.add_argument("--layers", default="all", help="layers with memory: all, none or indices such as 0,1,5")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--queries", type=int, default=4, help="validation queries per user")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 is steadier on a busy machine)")
    parser.add_argument("--breakdown", action="store_true", help="also time the trial's stages")
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    setup = build_setup(args.model, args.users, args.steps, args.max_new_tokens, args.queries)
    n_layers = session_for(setup).layout.n_layers
    config = TrialConfig(layers=parse_layer_indices(args.layers, n_layers), count=1, rank=args.rank)
    print(f"model={args.model} users={args.users} steps/phase={args.steps} repeats={args.repeats} "
          f"config={config} torch threads={torch.get_num_threads()}")
    runs = compare(config, setup, args.repeats)
    text, ratio = report(runs)
    print(text)
    if args.breakdown:
        print(breakdown(config, setup))
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
