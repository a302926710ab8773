"""MiLP's training: memory injection (LM loss on history text), then instruction tuning.

Each step is one pass of AdamW on the trainable (LoRA) parameters only, with a linear
warm-up over ``floor(warmup_ratio * steps)`` steps, then linear decay. The schedule never
gives a step a learning rate of 0: warm-up step ``s`` runs at ``(s + 1) / (warmup + 1)`` of the
peak, and the decay ends one step before 0. Deterministic under the seed.

A user with a short history still gets ``min_steps`` optimiser steps per training step: the
loop makes extra passes (epochs) over the few examples. ``max_steps`` caps everything. With
``lr_full_items`` a history shorter than that trains at a proportionally lower learning rate
(:func:`scaled_lr`): a few examples seen several times at the full rate are learnt by heart.

Two exact speed-ups, both on by default:

- Only the labelled positions go through the LM head (SmolLM2's head is a quarter of the
  model; instruction-tuning pairs have loss on a third of their tokens).
- ``cache_frozen``: when every trainable parameter sits at or above layer ``L`` (LoRA on the
  upper layers), the hidden states entering layer ``L`` depend on the example alone; they are
  computed once per example and later passes run layers ``L..`` only.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from runners.batching import IGNORE, Example, batches, collate, index_batches, pack_examples
from runners.errors import ConfigError, TrialFailed
from runners.spec import TrainSpec

AUTOCAST_CHOICES = ("none", "bfloat16", "auto")
CACHE_LIMIT_BYTES = 1 << 29
"""Largest frozen-prefix cache (hidden states of every example) kept per training step."""


@dataclass(frozen=True)
class PhaseStats:
    """What one training step did.

    ``lrs`` holds the learning rate each optimiser step ran at, and ``losses`` each step's
    training loss, in order.
    """

    name: str
    steps: int
    examples: int
    tokens: int
    seconds: float
    final_loss: float
    lrs: tuple[float, ...] = ()
    losses: tuple[float, ...] = ()


def planned_steps(n_examples: int, spec: TrainSpec) -> int:
    """Optimiser steps for ``n_examples``: epochs x batches, at least ``min_steps``, capped by ``max_steps``.

    No examples (or ``epochs = 0``) means no steps. Packed examples count as rows.
    """
    if n_examples == 0 or spec.epochs == 0:
        return 0
    steps = max(spec.epochs * math.ceil(n_examples / spec.batch_size), spec.min_steps)
    return min(steps, spec.max_steps) if spec.max_steps is not None else steps


def scaled_lr(n_examples: int, spec: TrainSpec) -> float:
    """The peak learning rate for ``n_examples``: ``lr * min(1, n_examples / lr_full_items)``
    (``lr`` when ``lr_full_items`` is None)."""
    if spec.lr_full_items is None or n_examples >= spec.lr_full_items:
        return spec.lr
    return spec.lr * max(n_examples, 1) / spec.lr_full_items


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
                name: str, seed: int, on_step: Callable[[], None] | None = None) -> PhaseStats:
    """Train the model's trainable parameters on ``examples``.

    ``on_step`` is called after every optimiser step (with the model back in eval mode while it
    runs, so it may evaluate); whatever it raises stops training.

    Raises:
        TrialFailed: the loss became NaN or infinite, or the device ran out of memory.
        ConfigError: an unknown ``autocast`` value.
    """
    import torch

    lr = scaled_lr(len(examples), spec)
    if spec.pack and examples:
        examples = pack_examples(examples, spec.max_seq_len, torch.Generator().manual_seed(seed))
    total = planned_steps(len(examples), spec)
    if total == 0:
        return PhaseStats(name, 0, 0, 0, 0.0, float("nan"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay)
    warmup = warmup_steps(total, spec.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup, total))
    generator = torch.Generator().manual_seed(seed)
    forward = _Forward(model, examples, spec, pad_id, device, total)
    model.train()
    step, tokens, loss_value, lrs, losses, started = 0, 0, float("nan"), [], [], time.perf_counter()
    try:
        while step < total:
            for rows in index_batches(len(examples), spec.batch_size, generator):
                with _autocast(spec, device):
                    loss, n_tokens = forward.loss(rows)
                loss_value = float(loss.detach())
                losses.append(loss_value)
                if not math.isfinite(loss_value):
                    raise TrialFailed(f"training step '{name}': loss is {loss_value} at step {step}; "
                                      "lower training.lr or check the data")
                loss.backward()
                lrs.append(float(optimizer.param_groups[0]["lr"]))
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += n_tokens
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
    return PhaseStats(name, step, len(examples), tokens, time.perf_counter() - started, loss_value, tuple(lrs),
                      tuple(losses))


def _autocast(spec, device):
    """The precision of one training forward, whatever autocast region the caller is in.

    ``auto`` is ``bfloat16`` where the device computes in bf16 natively (:func:`native_bf16`),
    else ``none``. ``none`` turns autocast off (fp32 even inside a caller's autocast); ``bfloat16`` runs
    without the weight-cast cache: a cached bf16 copy of a LoRA weight outlives the optimiser
    step that changes it for as long as the outermost autocast region lasts.
    """
    import torch

    kind = spec.autocast
    if kind not in AUTOCAST_CHOICES:
        raise ConfigError(f"training.autocast: {kind!r} is unknown; use one of {', '.join(AUTOCAST_CHOICES)}")
    device_type = getattr(device, "type", str(device))
    if kind == "auto":
        kind = "bfloat16" if native_bf16(device_type) else "none"
    if kind == "none":
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether ``device_type`` computes in bf16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX-BF16 instructions (read from ``/proc/cpuinfo``; False elsewhere).
    Measured on an AVX512-BF16 CPU: 1.4x less CPU per trial with identical predictions
    (docs/notes/quality.md); without those instructions bf16 is emulated and slower."""
    import torch

    if device_type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device_type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class _Forward:
    """The training loss of a batch of example rows, with the exact speed-ups of the module doc."""

    def __init__(self, model, examples: Sequence[Example], spec, pad_id: int, device, total: int) -> None:
        self.model, self.examples, self.pad_id, self.device = model, examples, pad_id, device
        self.parts = _causal_lm_parts(model)
        self.first = _lowest_trainable_layer(model) if self.parts is not None else None
        repeats = total * spec.batch_size > len(examples)
        size = sum(len(e.input_ids) for e in examples) * (self.parts[0].config.hidden_size if self.parts else 0) * 4
        self.cache: dict[int, Any] | None = (
            {} if (spec.cache_frozen and self.first and repeats and size <= CACHE_LIMIT_BYTES) else None
        )

    def loss(self, rows: list[int]):
        """(mean token loss, tokens in the batch)."""
        batch = collate([self.examples[i] for i in rows], self.pad_id, self.device)
        n_tokens = int(batch["attention_mask"].sum())
        if self.parts is None:
            return self.model(**batch).loss, n_tokens
        lm, inner, _ = self.parts
        if self.cache is None:
            hidden = inner(input_ids=batch["input_ids"], attention_mask=_mask(batch), use_cache=False,
                           position_ids=batch.get("position_ids")).last_hidden_state
        else:
            hidden = self._upper(rows, batch)
        return _labelled_loss(lm.lm_head, hidden, batch["labels"]), n_tokens

    def _upper(self, rows: list[int], batch):
        """Run layers ``first..`` from cached inputs (computed for rows not seen yet)."""
        import torch

        lm, inner, layers = self.parts
        missing = [i for i in rows if i not in self.cache]
        if missing:
            sub = collate([self.examples[i] for i in missing], self.pad_id, self.device)
            with torch.no_grad(), _only_layers(inner, layers[: self.first]):
                states = inner(input_ids=sub["input_ids"], attention_mask=_mask(sub), use_cache=False,
                               position_ids=sub.get("position_ids"), skip_norm=True)
            for row, i in enumerate(missing):
                self.cache[i] = states[row, : len(self.examples[i].input_ids)].detach()
        width = batch["input_ids"].shape[1]
        first = self.cache[rows[0]]
        embeds = torch.zeros((len(rows), width, first.shape[-1]), dtype=first.dtype, device=first.device)
        for row, i in enumerate(rows):
            embeds[row, : self.cache[i].shape[0]] = self.cache[i]
        with _only_layers(inner, layers[self.first:]):
            return inner(inputs_embeds=embeds, attention_mask=_mask(batch), use_cache=False,
                         position_ids=batch.get("position_ids")).last_hidden_state


def _mask(batch):
    """Packed batches carry restarting ``position_ids`` and no attention mask (block-diagonal)."""
    return None if "position_ids" in batch else batch["attention_mask"]


def _labelled_loss(project, hidden, labels, reduction: str = "mean"):
    """Cross-entropy of next-token prediction over labelled positions only.

    ``project`` maps the kept positions of ``hidden`` to logits (the LM head; the identity when
    ``hidden`` already holds logits), so only the positions the loss reads are projected.
    """
    import torch

    targets = labels[:, 1:]
    keep = targets != IGNORE
    logits = project(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction=reduction)


def _causal_lm_parts(model):
    """``(causal LM, its decoder stack, the decoder layers)`` for Llama-style models, else None."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = getattr(lm, "model", None)
    layers = getattr(inner, "layers", None)
    if getattr(lm, "lm_head", None) is None or layers is None or not hasattr(inner, "norm"):
        return None
    return lm, _InnerRunner(inner), layers


class _InnerRunner:
    """Calls the decoder stack; ``skip_norm`` returns the raw hidden states after its layers."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.config = inner.config

    def __call__(self, skip_norm: bool = False, **kwargs):
        import torch

        if not skip_norm:
            return self.inner(**kwargs)
        norm = self.inner.norm
        self.inner.norm = torch.nn.Identity()
        try:
            return self.inner(**kwargs).last_hidden_state
        finally:
            self.inner.norm = norm

    @property
    def layers(self):
        return self.inner.layers


@contextmanager
def _only_layers(runner: _InnerRunner, layers):
    """Run the decoder stack with ``layers`` in place of its own (restored afterwards)."""
    import torch

    inner = runner.inner
    own = inner.layers
    inner.layers = torch.nn.ModuleList(list(layers))
    try:
        yield
    finally:
        inner.layers = own


def _lowest_trainable_layer(model) -> int | None:
    """The lowest decoder layer holding a trainable parameter, if all of them sit in layers."""
    lowest = None
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        index = _layer_of(name)
        if index is None:
            return None
        lowest = index if lowest is None else min(lowest, index)
    return lowest


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def answer_loss(model, examples: Sequence[Example], pad_id: int, device, batch_size: int) -> float:
    """Mean token cross-entropy over the labelled tokens of ``examples`` (no gradient).

    On Llama-style models the vocabulary projection runs on the labelled positions alone, as in
    training (:func:`_labelled_loss`): a batch's full logits (batch x prompt and answer tokens x
    vocabulary, about 0.5 GB in fp32 for 8 retrieval prompts on SmolLM2's 49,152 words) were most
    of a trial's peak memory, for the few answer tokens the loss reads. Other models take their
    full logits.
    """
    import torch

    if not examples:
        return float("nan")
    parts = _causal_lm_parts(model)
    total_loss, total_tokens = 0.0, 0
    with torch.no_grad():
        for batch_examples in batches(examples, batch_size):
            batch = collate(batch_examples, pad_id, device)
            if parts is not None:
                lm, inner, _ = parts
                hidden = inner(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               use_cache=False).last_hidden_state
                total_loss += float(_labelled_loss(lm.lm_head, hidden, batch["labels"], reduction="sum"))
            else:
                logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                total_loss += float(_labelled_loss(lambda kept: kept, logits, batch["labels"], reduction="sum"))
            total_tokens += int((batch["labels"][:, 1:] != IGNORE).sum())
    return total_loss / max(total_tokens, 1)
