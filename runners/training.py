"""MiLP's training: memory injection (LM loss on history text), then instruction tuning.

Each step is one pass of AdamW with a linear warm-up over ``warmup_ratio`` of its steps
then linear decay, on the trainable (LoRA) parameters only. Deterministic under the seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from runners.batching import Example, batches, collate
from runners.errors import TrialFailed
from runners.spec import TrainSpec


@dataclass(frozen=True)
class PhaseStats:
    """What one training step did."""

    name: str
    steps: int
    examples: int
    tokens: int
    seconds: float
    final_loss: float


def planned_steps(n_examples: int, spec: TrainSpec) -> int:
    """Optimiser steps for ``n_examples``: epochs x batches, capped by ``max_steps``."""
    steps = spec.epochs * math.ceil(n_examples / spec.batch_size)
    return min(steps, spec.max_steps) if spec.max_steps is not None else steps


def train_phase(model, examples: Sequence[Example], spec: TrainSpec, pad_id: int, device,
                name: str, seed: int, on_step: Callable[[], None] | None = None) -> PhaseStats:
    """Train the model's trainable parameters on ``examples``.

    ``on_step`` is called after every optimiser step (with the model back in eval mode while it
    runs, so it may evaluate); whatever it raises stops training.

    Raises:
        TrialFailed: the loss became NaN or infinite, or the device ran out of memory.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    total = planned_steps(len(examples), spec)
    if total == 0:
        return PhaseStats(name, 0, 0, 0, 0.0, float("nan"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    warmup = math.ceil(spec.warmup_ratio * total)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step, tokens, loss_value, started = 0, 0, float("nan"), time.perf_counter()
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
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
                step += 1
                if on_step is not None:
                    model.eval()
                    on_step()
                    model.train()
                if step >= total:
                    break
    except torch.OutOfMemoryError as err:
        raise TrialFailed(f"training step '{name}': out of memory on {device}; "
                          "lower training.batch_size or training.max_seq_len") from err
    finally:
        model.eval()
    return PhaseStats(name, step, len(examples), tokens, time.perf_counter() - started, loss_value)


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
