"""A user's history as training examples, and MiLP's two training steps on it.

:func:`history_examples` makes one plain text per item (memory injection, loss on every
token) and one chat-rendered prompt/answer pair per item (instruction tuning, loss on the
answer). :func:`train_on_history` runs the two ``train_phase`` steps. The trial runner, the
Per-Pcs pool build and the benchmarks all train through these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from runners.batching import Example, pair_example, text_example
from runners.chat import render_prompt
from runners.data.pairs import memory_texts, training_pairs
from runners.spec import TrainSpec
from runners.training import train_phase

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import HistoryItem
    from runners.training import PhaseStats


@dataclass(frozen=True)
class HistoryExamples:
    """A user's history as plain-text examples and prompt/answer examples."""

    texts: tuple[Example, ...]
    pairs: tuple[Example, ...]

    def all(self) -> list[Example]:
        """Texts then pairs: what gate training and assembly read."""
        return [*self.texts, *self.pairs]


def history_examples(tokenizer, task: str, items: Sequence["HistoryItem"], spec: TrainSpec,
                     seed: int) -> HistoryExamples:
    """Tokenise a history into the examples of both training steps.

    Args:
        tokenizer: The base model's tokenizer.
        task: The dataset task (``demo``, ``LaMP_4``, ...).
        items: The history items, in order.
        spec: Training settings (``max_seq_len``).
        seed: Seeds the completion cut points of text items.

    Returns:
        Both kinds of example, whatever the spec's phase flags say.
    """
    texts = tuple(text_example(tokenizer, t, spec.max_seq_len) for t in memory_texts(task, items))
    pairs = tuple(pair_example(tokenizer, render_prompt(tokenizer, i), o, spec.max_seq_len)
                  for i, o in training_pairs(task, items, seed=seed))
    return HistoryExamples(texts, pairs)


def train_on_history(model, examples: HistoryExamples, spec: TrainSpec, pad_id: int, device,
                     seed: int, on_step: Callable[[], None] | None = None) -> list["PhaseStats"]:
    """MiLP's two steps on ``examples``: memory injection, then instruction tuning.

    Args:
        model: A model whose trainable parameters are the ones to train (a PEFT model).
        examples: From :func:`history_examples`.
        spec: Training settings; ``memory_injection``/``instruction_tuning`` pick the steps.
        pad_id: The tokenizer's pad id.
        device: Where the batches go.
        seed: Seeds batch order (``seed`` and ``seed + 1``).
        on_step: Called after every optimiser step of either step (intermediate reports).

    Returns:
        One :class:`PhaseStats` per step run.

    Raises:
        TrialFailed: NaN loss or out of memory.
    """
    phases = []
    if spec.memory_injection:
        phases.append(train_phase(model, examples.texts, spec, pad_id, device, "memory_injection", seed, on_step))
    if spec.instruction_tuning:
        phases.append(train_phase(model, examples.pairs, spec, pad_id, device, "instruction_tuning", seed + 1,
                                  on_step))
    return phases
