"""The ``random`` retriever: a seeded sample of a user's history, without replacement."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from runners.data.types import HistoryItem
from runners.errors import ConfigError
from runners.retrieval.base import RetrievalIndex, Retriever, register_retriever


class RandomIndex(RetrievalIndex):
    """Draws items uniformly at random, reproducibly per (seed, query)."""

    def __init__(self, seed: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.seed = seed

    def _rank(self, query: str, k: int) -> list[int]:
        query_hash = int.from_bytes(hashlib.sha256(query.encode("utf-8")).digest()[:8], "little")
        generator = np.random.default_rng([self.seed, query_hash])
        return [int(i) for i in generator.permutation(self.size)[:k]]

    @property
    def nbytes(self) -> int:
        return 0  # nothing is stored: the sample is drawn per query


@register_retriever("random")
class RandomRetriever(Retriever):
    """Picks ``k`` of the user's items at random, the random-history baseline.

    LaMP's random retriever calls ``random.choices(profile, k=n)``, which samples with
    replacement, so a prompt can repeat an item and hold fewer than ``k`` distinct ones (often,
    for short histories). We sample without replacement, so ``k`` random items means ``k``
    distinct items and the baseline is comparable with the rankers at the same ``k``.

    The draw is seeded by ``seed`` and the query text, so it does not depend on how many
    queries were asked before (a cached index gives the same items in every trial), and the
    ``k`` items are a prefix of the ``k + 1`` items for the same query.

    Args:
        seed: The random seed.
    """

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"random retriever: seed={seed!r} must be an integer >= 0; pass seed=0 or another")
        self.seed = seed

    def _index(
        self,
        items: list[HistoryItem],
        task: str,
        corpus: list[str],
        user_id: str,
        digest: str,
        cache_dir: Path | None,
    ) -> RandomIndex:
        return RandomIndex(self.seed, retriever=self.name, size=len(items), user_id=user_id, digest=digest)
