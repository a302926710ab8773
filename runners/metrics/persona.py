"""Persona-F1: unigram overlap between a response and the user's own content.

As DESIGN.md defines it (after MiLP): SQuAD-style token-count F1 between the generated response
and the user's own text (profile and history), after lower-casing, replacing punctuation by
spaces and dropping English stop words; averaged over queries; reported in percent.

The stop-word list is scikit-learn's ``ENGLISH_STOP_WORDS`` (318 words). NLTK's list would need
``nltk.download("stopwords")``, a corpus download these machines do not allow, so the values can
differ slightly from an NLTK-based implementation.

A user's content is the same for all of their queries: tokenise it once with
:func:`content_counter` and pass the ``Counter`` to :func:`persona_f1` or
:func:`persona_f1_mean`.
"""

from __future__ import annotations

import functools
import string
import unicodedata
from collections import Counter
from typing import Mapping, Sequence, Union

from runners.errors import ConfigError, DataError
from runners.metrics.base import Metric, register_metric
from runners.metrics.content import UserContent

Content = Union[str, Counter, UserContent]

_ASCII_PUNCTUATION = frozenset(string.punctuation)


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.lru_cache(maxsize=4096)
def _is_punctuation(char: str) -> bool:
    return char in _ASCII_PUNCTUATION or unicodedata.category(char).startswith("P")


def tokenize(text: str) -> list[str]:
    """Split text into Persona-F1 tokens.

    Lower-cases, replaces ASCII punctuation (``string.punctuation``) and Unicode punctuation
    (categories ``P*``) by spaces, splits on whitespace and drops English stop words.

    Args:
        text: Any text.

    Returns:
        The tokens, in order, with repeats.
    """
    cleaned = "".join(" " if _is_punctuation(c) else c for c in text.lower())
    stop = _stop_words()
    return [token for token in cleaned.split() if token not in stop]


def content_counter(content: str) -> Counter:
    """Tokenise a user's content once, for reuse across that user's queries.

    Args:
        content: The user's profile and history text.

    Returns:
        Token counts of :func:`tokenize` applied to ``content``.
    """
    return Counter(tokenize(content))


def persona_f1(pred: str, content: Content) -> float:
    """Persona-F1 of one response, in percent.

    ``common = Counter(pred) & Counter(content)``; precision ``= sum(common) / len(pred)``,
    recall ``= sum(common) / len(content)`` (token counts after :func:`tokenize`);
    ``F1 = 2PR / (P + R)``, 0 when nothing overlaps.

    Args:
        pred: The generated response.
        content: The user's content as text, or its precomputed :func:`content_counter`.

    Returns:
        F1 x 100, in [0, 100].
    """
    content_counts = content if isinstance(content, Counter) else content_counter(content)
    pred_counts = Counter(tokenize(pred))
    overlap = sum((pred_counts & content_counts).values())
    if overlap == 0:
        return 0.0
    precision = overlap / sum(pred_counts.values())
    recall = overlap / sum(content_counts.values())
    return 100.0 * 2 * precision * recall / (precision + recall)


def persona_f1_mean(preds: Sequence[str], content: Content) -> float:
    """Mean Persona-F1 of one user's responses, in percent.

    Args:
        preds: The generated responses to that user's queries.
        content: The user's content as text, or its precomputed :func:`content_counter`.

    Returns:
        The mean of :func:`persona_f1` over ``preds``, in [0, 100].

    Raises:
        DataError: If ``preds`` is empty.
    """
    if not preds:
        raise DataError("persona_f1: nothing to score (0 predictions); pass at least one prediction")
    counts = content if isinstance(content, Counter) else content_counter(content)
    return sum(persona_f1(pred, counts) for pred in preds) / len(preds)


@register_metric("persona_f1")
class PersonaF1Metric(Metric):
    """Persona-F1 in percent; needs ``user_content`` (text or Counter) in the context."""

    outputs = ("persona_f1",)
    per_query_outputs = outputs

    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """Mean Persona-F1 of ``preds`` against ``context["user_content"]``; ``refs`` are unused.

        Raises:
            ConfigError: If ``user_content`` is missing or not text/Counter.
        """
        return {"persona_f1": persona_f1_mean(preds, _content(context))}

    def per_query(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, list[float]]:
        """Persona-F1 of each response."""
        content = _content(context)
        counts = content if isinstance(content, Counter) else content_counter(content)
        return {"persona_f1": [persona_f1(pred, counts) for pred in preds]}


def _content(context: Mapping[str, object]) -> str | Counter:
    content = context.get("user_content")
    if isinstance(content, UserContent):
        return content.tokens
    if not isinstance(content, (str, Counter)):
        raise ConfigError(
            f"persona_f1 needs user_content= (the user's profile and history as str, Counter or UserContent), "
            f"got {type(content).__name__}; pass it to compute() or score()"
        )
    return content
