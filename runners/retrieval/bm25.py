"""The ``bm25`` retriever: lexical BM25 ranking with the ``bm25s`` package."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from runners.data.types import HistoryItem
from runners.errors import ConfigError
from runners.retrieval.base import (
    EmptyIndex,
    RetrievalIndex,
    Retriever,
    register_retriever,
)


def _stemmer(language: str | None) -> Any:
    if language is None:
        return None
    try:
        import Stemmer  # PyStemmer
    except ImportError as err:
        raise ConfigError(
            f"bm25 retriever: stemmer={language!r} needs PyStemmer; pip install PyStemmer or drop the stemmer option"
        ) from err
    try:
        return Stemmer.Stemmer(language)
    except KeyError as err:
        raise ConfigError(
            f"bm25 retriever: stemmer={language!r} is not a PyStemmer language; use one of {Stemmer.algorithms()}"
        ) from err


class BM25Index(RetrievalIndex):
    """A ``bm25s.BM25`` index over one user's corpus."""

    def __init__(self, model: Any, stemmer: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model = model
        self.stemmer = stemmer

    def scores(self, query: str) -> np.ndarray:
        """Return the BM25 score of every item for a query (zeros when no query term is known).

        Args:
            query: The retrieval query.

        Returns:
            Scores, shape ``(size,)``.
        """
        tokens = [token for token in _tokenize([query], self.stemmer)[0] if token]
        ids = self.model.get_tokens_ids(tokens)
        if not ids:
            return np.zeros(self.size, dtype=np.float32)
        return self.model.get_scores_from_ids(ids)

    def _rank(self, query: str, k: int) -> list[int]:
        order = np.argsort(-self.scores(query), kind="stable")
        return [int(i) for i in order[:k]]

    @property
    def nbytes(self) -> int:
        """The sparse score matrix arrays plus the vocabulary (UTF-8 tokens and int32 ids)."""
        arrays = [value for value in self.model.scores.values() if isinstance(value, np.ndarray)]
        if getattr(self.model, "nonoccurrence_array", None) is not None:
            arrays.append(self.model.nonoccurrence_array)
        vocab = sum(len(str(token).encode("utf-8")) + 4 for token in self.model.vocab_dict)
        return int(sum(array.nbytes for array in arrays) + vocab)


class UnscoredIndex(RetrievalIndex):
    """The index of a history with no word BM25 can score: every item ties, so the first ``k`` items in
    their stored order (how :class:`BM25Index` ranks equal scores)."""

    def _rank(self, query: str, k: int) -> list[int]:
        return list(range(min(k, self.size)))

    @property
    def nbytes(self) -> int:
        return 0


def _tokenize(texts: list[str], stemmer: Any) -> list[list[str]]:
    import bm25s

    return bm25s.tokenize(texts, stemmer=stemmer, return_ids=False, show_progress=False)


@register_retriever("bm25")
class BM25Retriever(Retriever):
    """Ranks a user's items by BM25 score against the query.

    Documents and query are lower-cased and split with ``bm25s.tokenize`` defaults (scikit-learn
    style word pattern, English stop words removed). LaMP used ``rank_bm25.BM25Okapi`` on
    whitespace tokens with no lower-casing; the ``bm25s`` default ``lucene`` variant keeps every
    idf positive, which suits the small per-user corpora (Okapi's idf is negative for a term in
    more than half of the documents). Ties keep history order.

    Args:
        k1: Term-frequency saturation.
        b: Length normalisation.
        method: The ``bm25s`` variant: ``lucene``, ``robertson``, ``atire``, ``bm25l``,
            ``bm25+``.
        stemmer: A PyStemmer language (e.g. ``"english"``), or None for no stemming (PyStemmer
            is not a dependency).
    """

    def __init__(self, k1: float = 1.5, b: float = 0.75, method: str = "lucene", stemmer: str | None = None) -> None:
        methods = ("lucene", "robertson", "atire", "bm25l", "bm25+")
        if method not in methods:
            raise ConfigError(f"bm25 retriever: method={method!r} is not a bm25s method; use one of {methods}")
        self.k1, self.b, self.method, self.stemmer = float(k1), float(b), method, stemmer

    def _index(
        self,
        items: list[HistoryItem],
        task: str,
        corpus: list[str],
        user_id: str,
        digest: str,
        cache_dir: Path | None,
    ) -> RetrievalIndex:
        common = {"retriever": self.name, "size": len(items), "user_id": user_id, "digest": digest}
        if not items:
            return EmptyIndex(**common)

        import bm25s

        # bm25s sets its own logger to DEBUG at import, which floods any configured root handler.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        stemmer = _stemmer(self.stemmer)
        tokens = _tokenize(corpus, stemmer)
        if not any(tokens):  # every word is a stop word ("a", "ok"): bm25s cannot index an empty vocabulary
            return UnscoredIndex(**common)
        model = bm25s.BM25(k1=self.k1, b=self.b, method=self.method)
        model.index(tokens, show_progress=False)
        return BM25Index(model, stemmer, **common)
