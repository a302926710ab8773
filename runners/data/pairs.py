"""History items turned into training data, per task.

- :func:`training_pairs`: instruction-tuning ``(input, output)`` pairs. LaMP tasks use the PEFT
  templates of the LaMP repository (``PEFT/data/datasets.py:create_input_output_gen_func``;
  REFERENCE_ALGORITHMS.md section 3.6); LaMP_2N, which PEFT does not cover, uses its own
  question instruction the same way. Other tasks use pair items directly and turn text items
  into completion pairs.
- :func:`memory_texts`: one plain text per item for the language-model (memory injection) loss.

:data:`LAMP_INSTRUCTIONS` holds the benchmark's question strings (section 3.1) as
``str.format`` templates so that prompt code can reuse them, and :data:`LAMP_LABELS` the label
lists of the classification tasks.
"""

from __future__ import annotations

import random
from typing import Sequence

from runners.data.lamp import LAMP_FIELDS
from runners.data.types import HistoryItem
from runners.errors import DataError

LAMP_LABELS: dict[str, tuple[str, ...]] = {
    "LaMP_1": ("[1]", "[2]"),
    "LaMP_2": (
        "sci-fi", "based on a book", "comedy", "action", "twist ending", "dystopia", "dark comedy",
        "classic", "psychology", "fantasy", "romance", "thought-provoking", "social commentary",
        "violence", "true story",
    ),
    "LaMP_2N": (
        "women", "religion", "politics", "style & beauty", "entertainment", "culture & arts",
        "sports", "science & technology", "travel", "business", "crime", "education",
        "healthy living", "parents", "food & drink",
    ),
}
"""Fixed label lists of LaMP's classification tasks, in the benchmark's order."""

LAMP_INSTRUCTIONS: dict[str, str] = {
    "LaMP_1": (
        'For an author who has written the paper with the title "{title}", which reference is '
        'related? Just answer with [1] or [2] without explanation. [1]: "{reference_1}" [2]: '
        '"{reference_2}"'
    ),
    "LaMP_2": (
        "Which tag does this movie relate to among the following tags? Just answer with the tag "
        "name without further explanation. tags: [" + ", ".join(LAMP_LABELS["LaMP_2"]) + "] "
        "description: {description}"
    ),
    "LaMP_2N": (
        "Which category does this article relate to among the following categories? Just answer "
        "with the category name without further explanation. categories: ["
        + ", ".join(LAMP_LABELS["LaMP_2N"]) + "] article: {text}"
    ),
    "LaMP_3": (
        "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, "
        "4, or 5 without further explanation. review: {text}"
    ),
    "LaMP_4": "Generate a headline for the following article: {text}",
    "LaMP_5": "Generate a title for the following abstract of a paper: {abstract}",
    "LaMP_6": "Generate a subject for the following email: {text}",
    "LaMP_7": "Paraphrase the following tweet without any explanation before or after it: {text}",
}
"""LaMP's question strings as ``str.format`` templates (``{title}``, ``{description}``, ...)."""

_PAIR_TEMPLATES: dict[str, tuple[str, str]] = {
    "LaMP_1": ("Write an abstract for this title: {title}", "abstract"),
    "LaMP_2": (LAMP_INSTRUCTIONS["LaMP_2"], "tag"),
    "LaMP_2N": (LAMP_INSTRUCTIONS["LaMP_2N"], "category"),
    "LaMP_3": (LAMP_INSTRUCTIONS["LaMP_3"], "score"),
    "LaMP_4": (LAMP_INSTRUCTIONS["LaMP_4"], "title"),
    "LaMP_5": (LAMP_INSTRUCTIONS["LaMP_5"], "title"),
    "LaMP_6": (LAMP_INSTRUCTIONS["LaMP_6"], "title"),
}
"""PEFT pair templates: the input template and the field that is the output."""

_MEMORY_LABELS: dict[str, tuple[tuple[str, str], ...]] = {
    "LaMP_1": (("Title", "title"), ("Abstract", "abstract")),
    "LaMP_2": (("Description", "description"), ("Tag", "tag")),
    "LaMP_2N": (("Title", "title"), ("Article", "text"), ("Category", "category")),
    "LaMP_3": (("Review", "text"), ("Score", "score")),
    "LaMP_4": (("Article", "text"), ("Headline", "title")),
    "LaMP_5": (("Abstract", "abstract"), ("Title", "title")),
    "LaMP_6": (("Email", "text"), ("Subject", "title")),
}
"""The readable order of LaMP fields in memory texts (LaMP_7 items are their text)."""

PLAIN_TASKS: tuple[str, ...] = ("generic", "demo", "meddialogue")
KNOWN_TASKS: tuple[str, ...] = PLAIN_TASKS + tuple(LAMP_FIELDS)

COMPLETION_PROMPT = "Complete the following text: {prefix}"
TWEET_PROMPT = "Complete the following tweet: {prefix}"
MIN_COMPLETION_WORDS = 4


def _check_task(task: str) -> None:
    if task not in KNOWN_TASKS:
        raise DataError(f"task {task!r} is unknown; use one of {', '.join(KNOWN_TASKS)}")


def completion_pair(text: str, rng: random.Random, template: str = COMPLETION_PROMPT) -> tuple[str, str] | None:
    """Cut a text at a random 10-25% of its words into a completion pair.

    As LaMP's PEFT code does for LaMP_7: the prefix is ``int(u * n_words)`` words with
    ``u ~ U(0.1, 0.25)``, clamped to leave at least one word on each side.

    Args:
        text: The text to cut.
        rng: The random source (one draw per call).
        template: The prompt template with a ``{prefix}`` slot.

    Returns:
        ``(prompt, rest)``, or ``None`` if the text has fewer than 4 words.
    """
    words = text.split()
    if len(words) < MIN_COMPLETION_WORDS:
        return None
    cut = min(max(1, int(len(words) * rng.uniform(0.1, 0.25))), len(words) - 1)
    return template.format(prefix=" ".join(words[:cut])), " ".join(words[cut:])


def _lamp_field(item: HistoryItem, task: str, key: str, index: int) -> str:
    try:
        return item.fields[key]
    except KeyError as err:
        raise DataError(
            f"{task} history item {index} (id {item.id!r}) has no field {key!r}; "
            f"{task} items need {', '.join(LAMP_FIELDS[task])} (load them with the LaMP loader)"
        ) from err


def _lamp_pair(task: str, item: HistoryItem, index: int) -> tuple[str, str]:
    template, out_key = _PAIR_TEMPLATES[task]
    values = {key: _lamp_field(item, task, key, index) for key in LAMP_FIELDS[task]}
    return template.format(**values), values[out_key]


def training_pairs(task: str, items: Sequence[HistoryItem], seed: int = 0) -> list[tuple[str, str]]:
    """Instruction-tuning pairs from a user's history.

    Args:
        task: The dataset task (``"generic"``, ``"demo"``, ``"meddialogue"``, ``"LaMP_1"`` ..
            ``"LaMP_7"``, ``"LaMP_2N"``).
        items: History items, in order.
        seed: Seeds the completion cut points (LaMP_7 and text items); one draw per cut item.

    Returns:
        ``(input, output)`` pairs in item order. Pair items map to themselves; text items
        (and LaMP_7 items) become completion pairs; texts under 4 words are skipped.

    Raises:
        DataError: If the task is unknown or a LaMP item lacks a field its task needs.
    """
    return [(i, o) for _, i, o in indexed_training_pairs(task, items, seed)]


def indexed_training_pairs(task: str, items: Sequence[HistoryItem], seed: int = 0) -> list[tuple[int, str, str]]:
    """:func:`training_pairs` with the index of the item each pair comes from: ``(index, input, output)``."""
    _check_task(task)
    rng = random.Random(seed)
    pairs: list[tuple[int, str, str]] = []
    for index, item in enumerate(items):
        if task in _PAIR_TEMPLATES:
            pairs.append((index, *_lamp_pair(task, item, index)))
            continue
        if task == "LaMP_7":
            pair = completion_pair(_lamp_field(item, task, "text", index), rng, TWEET_PROMPT)
        elif item.is_pair:
            pair = (item.input, item.output)
        else:
            pair = completion_pair(item.as_text(), rng)
        if pair is not None:
            pairs.append((index, *pair))
    return pairs


def memory_texts(task: str, items: Sequence[HistoryItem]) -> list[str]:
    """One plain text per history item, for the memory-injection language-model loss.

    Args:
        task: The dataset task.
        items: History items.

    Returns:
        Texts in item order: a text item as-is, a pair as ``"input\\noutput"``, a LaMP item as
        its labelled fields (e.g. ``"Title: ...\\nAbstract: ..."``; LaMP_7: the tweet).

    Raises:
        DataError: If the task is unknown or a LaMP item lacks a field its task needs.
    """
    _check_task(task)
    if task == "LaMP_7":
        return [_lamp_field(item, task, "text", i) for i, item in enumerate(items)]
    if task in _MEMORY_LABELS:
        return [
            "\n".join(f"{label}: {_lamp_field(item, task, key, i)}" for label, key in _MEMORY_LABELS[task])
            for i, item in enumerate(items)
        ]
    return [item.as_text() for item in items]
