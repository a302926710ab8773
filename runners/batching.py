"""Tokenised training examples and padded batches for causal-LM losses.

Two kinds of example: a plain text (loss on every token: memory injection) and a
prompt/answer pair (loss on the answer tokens only: instruction tuning, validation loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """Token ids and labels (``IGNORE`` where no loss is taken)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]


def text_example(tokenizer, text: str, max_len: int) -> Example:
    """Language-model loss over the whole text (BOS/EOS as the tokenizer adds them)."""
    ids = tokenizer(text + (tokenizer.eos_token or ""), add_special_tokens=True)["input_ids"][:max_len]
    return Example(tuple(ids), tuple(ids))


def pair_example(tokenizer, prompt: str, answer: str, max_len: int) -> Example:
    """Loss on the answer tokens only; the prompt is cut from the left when too long."""
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(answer + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    a_ids = a_ids[: max(1, max_len // 2)] if len(p_ids) + len(a_ids) > max_len else a_ids
    p_ids = p_ids[-(max_len - len(a_ids)):] if len(p_ids) + len(a_ids) > max_len else p_ids
    return Example(tuple(p_ids + a_ids), tuple([IGNORE] * len(p_ids) + a_ids))


def collate(examples: Sequence[Example], pad_id: int, device):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors on ``device``."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


def batches(examples: Sequence[Example], batch_size: int, generator=None):
    """Shuffled (when ``generator`` is given) batches of examples."""
    import torch

    order = (torch.randperm(len(examples), generator=generator).tolist()
             if generator is not None else list(range(len(examples))))
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start:start + batch_size]]
