"""Tokenised training examples and padded batches for causal-LM losses.

Two kinds of example: a plain text (loss on every token: memory injection) and a
prompt/answer pair (loss on the answer tokens only: instruction tuning, validation loss).
:func:`pack_examples` packs several short examples into one row whose positions restart at
each example; such rows are collated with ``position_ids`` and no attention mask, which the
model turns into a block-diagonal causal mask (no attention across examples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

IGNORE = -100


@dataclass(frozen=True)
class Example:
    """Token ids and labels (``IGNORE`` where no loss is taken).

    ``positions`` is set on packed rows only: the position of each token within its example.
    """

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    positions: tuple[int, ...] | None = None


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


def pack_examples(examples: Sequence[Example], max_len: int, generator=None) -> list[Example]:
    """Pack examples (shuffled once when ``generator`` is given) into rows of at most ``max_len`` tokens.

    Greedy first fit in order; an example longer than ``max_len`` stays a row of its own.
    Each packed row records restarting positions, so the model keeps examples apart.
    """
    import torch

    order = (torch.randperm(len(examples), generator=generator).tolist()
             if generator is not None else list(range(len(examples))))
    rows: list[list[Example]] = []
    lengths: list[int] = []
    for i in order:
        e = examples[i]
        n = len(e.input_ids)
        for r, used in enumerate(lengths):
            if used + n <= max_len:
                rows[r].append(e)
                lengths[r] += n
                break
        else:
            rows.append([e])
            lengths.append(n)
    # An example's first label would be predicted from the previous example's last token: ignored.
    return [Example(tuple(t for e in row for t in e.input_ids),
                    tuple(t if j or not k else IGNORE for k, e in enumerate(row) for j, t in enumerate(e.labels)),
                    tuple(p for e in row for p in range(len(e.input_ids)))) for row in rows]


def collate(examples: Sequence[Example], pad_id: int, device):
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` tensors on ``device``.

    When any example is packed (has ``positions``), ``position_ids`` are added: each row's
    positions, then a padding segment restarting at 0 (its labels ignored).
    """
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    packed = any(e.positions is not None for e in examples)
    positions = torch.zeros((len(examples), width), dtype=torch.long) if packed else None
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        ids[row, :n] = torch.tensor(e.input_ids)
        labels[row, :n] = torch.tensor(e.labels)
        mask[row, :n] = 1
        if positions is not None:
            positions[row, :n] = torch.tensor(e.positions if e.positions is not None else range(n))
            positions[row, n:] = torch.arange(width - n)
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
    if positions is not None:
        batch["position_ids"] = positions.to(device)
    return batch


def index_batches(n_examples: int, batch_size: int, generator=None):
    """Batches of example indices: one pass over ``range(n_examples)``, shuffled when ``generator`` is given."""
    import torch

    order = (torch.randperm(n_examples, generator=generator).tolist()
             if generator is not None else list(range(n_examples)))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def batches(examples: Sequence[Example], batch_size: int, generator=None):
    """Shuffled (when ``generator`` is given) batches of examples."""
    for rows in index_batches(len(examples), batch_size, generator):
        yield [examples[i] for i in rows]
