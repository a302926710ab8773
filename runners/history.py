"""A user's history as training examples, and MiLP's two training steps on it.

:func:`history_examples` makes one plain text per item (memory injection, loss on every
token) and one chat-rendered prompt/answer pair per item (instruction tuning, loss on the
answer). :func:`train_on_history` runs the two ``train_phase`` steps. The trial runner, the
Per-Pcs pool build and the benchmarks all train through these two functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from runners.batching import Example
from runners.spec import TrainSpec

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
                     seed: int, user_id: str = "") -> HistoryExamples:
    """Tokenise a history into the examples of both training steps.

    With the training setting ``train_rag_k`` > 0, each instruction-tuning prompt is built as a
    serving prompt with retrieval is: the ``train_rag_k`` items that ``train_rag_retriever``
    ranks best for the pair's input among the *other* history items, rendered by the task's
    template within ``max_prompt_tokens`` (LaMP's PEFT training on retrieval-augmented inputs).

    Args:
        tokenizer: The base model's tokenizer.
        task: The dataset task (``demo``, ``LaMP_4``, ...).
        items: The history items, in order.
        spec: Training settings (``max_seq_len``, ``train_rag_k``, ``train_rag_retriever``).
        seed: Seeds the completion cut points of text items.
        user_id: For retrieval messages.

    Returns:
        Both kinds of example, whatever the spec's phase flags say.
    """
    from runners.batching import pair_example, text_example
    from runners.chat import render_prompt
    from runners.data.pairs import indexed_training_pairs, memory_texts
    from runners.training import setting

    texts = tuple(text_example(tokenizer, t, spec.max_seq_len) for t in memory_texts(task, items))
    indexed = indexed_training_pairs(task, items, seed=seed)
    k = int(setting(spec, "train_rag_k") or 0)
    if k > 0 and len(items) > 1:
        prompts = _retrieval_prompts(tokenizer, task, items, indexed, spec, k, user_id)
        limit = spec.max_seq_len + spec.max_prompt_tokens
    else:
        prompts, limit = [i for _, i, _ in indexed], spec.max_seq_len
    pairs = tuple(pair_example(tokenizer, render_prompt(tokenizer, p), o, limit)
                  for p, (_, _, o) in zip(prompts, indexed))
    return HistoryExamples(texts, pairs)


def _retrieval_prompts(tokenizer, task, items, indexed, spec, k: int, user_id: str) -> list[str]:
    """Each pair's input with ``k`` retrieved other items, as the trial renders serving prompts."""
    from runners.prompts import build_prompt, corpus_text, retrieval_query
    from runners.retrieval.cache import process_cache
    from runners.training import setting

    corpus = [corpus_text(task, item) for item in items]
    index = process_cache().get_or_build(str(setting(spec, "train_rag_retriever")), items, task, corpus,
                                         user_id=user_id)
    prompts = []
    for own, question, _ in indexed:
        ranked = [i for i in index.top_k(retrieval_query(task, question), min(k + 1, len(items))) if i != own][:k]
        prompts.append(build_prompt(task, question, [items[i] for i in ranked], tokenizer,
                                    spec.max_prompt_tokens).text)
    return prompts


def train_on_history(model, examples: HistoryExamples, spec: TrainSpec, pad_id: int, device,
                     seed: int) -> list["PhaseStats"]:
    """MiLP's two steps on ``examples``: memory injection, then instruction tuning.

    Args:
        model: A model whose trainable parameters are the ones to train (a PEFT model).
        examples: From :func:`history_examples`.
        spec: Training settings; ``memory_injection``/``instruction_tuning`` pick the steps.
        pad_id: The tokenizer's pad id.
        device: Where the batches go.
        seed: Seeds batch order (``seed`` and ``seed + 1``).

    Returns:
        One :class:`PhaseStats` per step run.

    Raises:
        TrialFailed: NaN loss or out of memory.
    """
    from runners.training import train_phase

    phases = []
    if spec.memory_injection:
        phases.append(train_phase(model, examples.texts, spec, pad_id, device, "memory_injection", seed))
    if spec.instruction_tuning:
        phases.append(train_phase(model, examples.pairs, spec, pad_id, device, "instruction_tuning", seed + 1))
    return phases
