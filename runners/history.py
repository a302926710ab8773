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
from runners.data.pairs import indexed_training_pairs, memory_texts
from runners.prompts import build_prompt, retrieval_query
from runners.spec import TrainSpec
from runners.training import train_phase

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import HistoryItem
    from runners.retrieval.base import RetrievalIndex
    from runners.training import PhaseStats


@dataclass(frozen=True)
class HistoryExamples:
    """A user's history as plain-text examples and prompt/answer examples."""

    texts: tuple[Example, ...]
    pairs: tuple[Example, ...]

    def all(self) -> list[Example]:
        """Texts then pairs: what gate training and assembly read."""
        return [*self.texts, *self.pairs]


@dataclass(frozen=True)
class TrainingRetrieval:
    """Retrieval for instruction-tuning prompts: the serving ``k`` and the user's index over the history."""

    k: int
    index: "RetrievalIndex"


def history_examples(tokenizer, task: str, items: Sequence["HistoryItem"], spec: TrainSpec,
                     seed: int, retrieval: TrainingRetrieval | None = None) -> HistoryExamples:
    """Tokenise a history into the examples of both training steps.

    With ``retrieval``, each instruction-tuning prompt is built as a serving prompt with
    retrieval is: the ``retrieval.k`` items its index ranks best for the pair's input among the
    *other* history items, rendered by the task's template within ``max_prompt_tokens`` (LaMP's
    PEFT training on retrieval-augmented inputs: train and serve the same prompt shape).

    Args:
        tokenizer: The base model's tokenizer.
        task: The dataset task (``demo``, ``LaMP_4``, ...).
        items: The history items, in order.
        spec: Training settings (``max_seq_len``, ``max_prompt_tokens``).
        seed: Seeds the completion cut points of text items.
        retrieval: The serving retrieval over ``items`` (None: bare questions).

    Returns:
        Both kinds of example, whatever the spec's phase flags say.
    """
    texts = tuple(text_example(tokenizer, t, spec.max_seq_len) for t in memory_texts(task, items))
    indexed = indexed_training_pairs(task, items, seed=seed)
    if retrieval is not None and retrieval.k > 0 and len(items) > 1:
        prompts = _retrieval_prompts(tokenizer, task, items, indexed, spec, retrieval)
        limit = spec.max_seq_len + spec.max_prompt_tokens
    else:
        prompts, limit = [i for _, i, _ in indexed], spec.max_seq_len
    pairs = tuple(pair_example(tokenizer, render_prompt(tokenizer, p), o, limit)
                  for p, (_, _, o) in zip(prompts, indexed))
    return HistoryExamples(texts, pairs)


def _retrieval_prompts(tokenizer, task, items, indexed, spec: TrainSpec, retrieval: TrainingRetrieval) -> list[str]:
    """Each pair's input with ``k`` retrieved other items, as the trial renders serving prompts."""
    k, prompts = retrieval.k, []
    for own, question, _ in indexed:
        top = retrieval.index.top_k(retrieval_query(task, question), min(k + 1, len(items)))
        ranked = [i for i in top if i != own][:k]
        prompts.append(build_prompt(task, question, [items[i] for i in ranked], tokenizer,
                                    spec.max_prompt_tokens).text)
    return prompts


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
