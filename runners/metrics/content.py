"""A user's own text, prepared once for the metrics that compare an answer with it.

Persona-F1 reads its token counts and the copy rate its word n-grams; a session builds one
:class:`UserContent` per user (``runners.metrics.user_content_of``) and every trial reuses it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class UserContent:
    """A user's profile and history, as Persona-F1 tokens and as copy-rate word n-grams.

    Attributes:
        tokens: Persona-F1's token counts (``runners.metrics.persona.content_counter``).
        ngrams: every word n-gram of the text (``runners.metrics.copying.content_ngrams``).
    """

    tokens: Counter
    ngrams: frozenset
