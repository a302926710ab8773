"""MiLP's training: memory injection (LM loss on history text), then instruction tuning.

Each step is one pass of AdamW on the trainable (LoRA) parameters only, with a linear
warm-up over ``floor(warmup_ratio * steps)`` steps, then linear decay. The schedule never
gives a step a learning rate of 0: warm-up step ``s`` runs at ``(s + 1) / (warmup + 1)`` of the
peak, and the decay ends one step before 0. Deterministic under the seed.

A user with a short history still gets ``min_steps`` optimiser steps per training step: the
loop makes extra passes (epochs) over the few examples. ``max_steps`` caps everything.
``min_steps`` is read with :func:`setting`, so a plain ``TrainSpec`` gets its default.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

from runners.batching import Example, batches, collate
from runners.errors import TrialFailed
from runners.spec import TrainSpec


EXTRA_DEFAULTS: dict[str, Any] = {"min_steps": 8}
"""Training settings :class:`TrainSpec` does not have yet, and their defaults."""


def setting(spec, name: str):
    """A training setting of ``spec``, or its default when the spec does not carry it."""
    return getattr(spec, name, EXTRA_DEFAULTS[name])


@dataclass(frozen=True)
class PhaseStats:
    """What one training step did.

    ``lrs`` holds the learning rate each optimiser step ran at, in order.
    """

    name: str
    steps: int
    examples: int
    tokens: int
    seconds: float
    final_loss: float
    lrs: tuple[float, ...] = ()


def planned_steps(n_examples: int, spec: TrainSpec) -> int:
    """Optimiser steps for ``n_examples``: epochs x batches, at least ``min_steps``, capped by ``max_steps``.

    No examples (or ``epochs = 0``) means no steps.
    """
    if n_examples == 0 or spec.epochs == 0:
        return 0
    steps = max(spec.epochs * math.ceil(n_examples / spec.batch_size), int(setting(spec, "min_steps") or 0))
    return min(steps, spec.max_steps) if spec.max_steps is not None else steps


def warmup_steps(total: int, warmup_ratio: float) -> int:
    """``floor(warmup_ratio * total)``: 4 steps at ratio 0.1 warm up for none."""
    return min(int(math.floor(warmup_ratio * total + 1e-9)), max(total - 1, 0))


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of optimiser step ``step`` (0-based), always > 0.

    Warm-up: ``(step + 1) / (warmup + 1)``; then linear decay from 1 at step ``warmup`` to
    ``1 / (total - warmup)`` at the last step.
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(total - step, 1) / max(total - warmup, 1)


def train_phase(model, examples: Sequence[Example], spec: TrainSpec, pad_id: int, device,
                name: str, seed: int) -> PhaseStats:
    """Train the model's trainable parameters on ``examples``.

    Raises:
        TrialFailed: the loss became NaN or infinite, or the device ran out of memory.
    """
    import torch

    total = planned_steps(len(examples), spec)
    if total == 0:
        return PhaseStats(name, 0, 0, 0, 0.0, float("nan"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    warmup = warmup_steps(total, spec.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step, tokens, loss_value, lrs, started = 0, 0, float("nan"), [], time.perf_counter()
    try:
        while step < total:
            for batch_examples in batches(examples, spec.batch_size, generator):
                batch = collate(batch_examples, pad_id, device)
                loss = model(**batch).loss
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise TrialFailed(f"training step '{name}': loss is {loss_value} at step {step}; "
                                      "lower training.lr or check the data")
                loss.backward()
                lrs.append(float(optimizer.param_groups[0]["lr"]))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
                step += 1
                if step >= total:
                    break
    except torch.OutOfMemoryError as err:
        raise TrialFailed(f"training step '{name}': out of memory on {device}; "
                          "lower training.batch_size or training.max_seq_len") from err
    finally:
        model.eval()
    return PhaseStats(name, step, len(examples), tokens, time.perf_counter() - started, loss_value, tuple(lrs))


def answer_loss(model, examples: Sequence[Example], pad_id: int, device, batch_size: int) -> float:
    """Mean token cross-entropy over the labelled tokens of ``examples`` (no gradient)."""
    import torch

    if not examples:
        return float("nan")
    total_loss, total_tokens = 0.0, 0
    with torch.no_grad():
        for batch_examples in batches(examples, batch_size):
            batch = collate(batch_examples, pad_id, device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            logp = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                ignore_index=-100, reduction="sum",
            )
            total_loss += float(logp)
            total_tokens += int((labels != -100).sum())
    return total_loss / max(total_tokens, 1)
