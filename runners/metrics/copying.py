"""Copy rate: the share of an answer that repeats the user's own text word for word.

Persona-F1 counts the answer's words that also occur in the user's profile and history. An
answer that recites the user's earlier messages scores high on it without being personal in any
useful sense: it is the user's data, played back. The copy rate measures that directly: the
share of the answer's word 5-grams (lower-cased, punctuation removed, stop words kept) that
occur anywhere in the user's profile and history. An answer shorter than 5 words has no 5-gram
and copies nothing (0). Per query, then averaged over queries; a fraction in [0, 1], so that a
space can constrain it (``copy_rate <= 0.2``).

A 5-gram shared by chance between two independent texts is rare; shared phrasings of a domain
("if you have any other questions") are not, so the copy rate of the reference answers
themselves (what the user's next message really said) is the level to compare with.
"""

from __future__ import annotations

import functools
import unicodedata
from collections import Counter
from typing import Mapping, Sequence

from runners.errors import ConfigError, DataError
from runners.metrics.base import Metric, register_metric
from runners.metrics.content import UserContent

COPY_N = 5
"""Words per n-gram: long enough that a shared one is a copied phrase, not a common pairing."""


@functools.lru_cache(maxsize=4096)
def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P") or unicodedata.category(char).startswith("S")


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation and symbols replaced by spaces (stop words kept)."""
    return "".join(" " if _is_punctuation(c) else c for c in text.lower()).split()


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def content_ngrams(text: str, n: int = COPY_N) -> frozenset:
    """Every word ``n``-gram of a user's text (profile and history joined by newlines).

    N-grams do not span the joins: each line is cut into words on its own.
    """
    return frozenset(g for line in text.split("\n") for g in _ngrams(words(line), n))


def copy_rate(pred: str, source: frozenset, n: int = COPY_N) -> float:
    """The share of ``pred``'s word ``n``-grams (each position counted) found in ``source``.

    Args:
        pred: A generated answer.
        source: The user's n-grams (:func:`content_ngrams`).
        n: Words per n-gram (the n of ``source``).

    Returns:
        A fraction in [0, 1]; 0 when ``pred`` has fewer than ``n`` words.
    """
    grams = _ngrams(words(pred), n)
    if not grams:
        return 0.0
    return sum(g in source for g in grams) / len(grams)


@register_metric("copy_rate")
class CopyRateMetric(Metric):
    """The mean copy rate of the answers (a fraction); needs the user's content in the context
    (``user_content``: a :class:`UserContent` or the text itself)."""

    outputs = ("copy_rate",)
    per_query_outputs = outputs

    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """Mean :func:`copy_rate` of ``preds`` against the user's content; ``refs`` are unused.

        Raises:
            DataError: no predictions.
            ConfigError: the context has no usable ``user_content``.
        """
        if not preds:
            raise DataError("copy_rate: nothing to score (0 predictions); pass at least one prediction")
        values = self.per_query(preds, refs, **context)["copy_rate"]
        return {"copy_rate": sum(values) / len(values)}

    def per_query(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, list[float]]:
        """The copy rate of each answer."""
        source = _source(context)
        return {"copy_rate": [copy_rate(pred, source) for pred in preds]}


def _source(context: Mapping[str, object]) -> frozenset:
    content = context.get("user_content")
    if isinstance(content, UserContent):
        return content.ngrams
    if isinstance(content, str):
        return content_ngrams(content)
    kind = "a token Counter (it has no word order)" if isinstance(content, Counter) else type(content).__name__
    raise ConfigError(f"copy_rate needs user_content= as the user's profile and history text or a UserContent, "
                      f"got {kind}; build it with runners.metrics.user_content_of(text)")
