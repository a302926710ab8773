"""Retrieval over one user's own history: retrievers by name, their indexes and a cache.

Importing the package registers the built-in retrievers ``bm25``, ``dense``, ``recency`` and
``random``; their heavy dependencies load only when an index is built.
"""

from runners.retrieval import bm25, dense, random_items, recency  # noqa: F401  (registration)
from runners.retrieval.base import (
    RetrievalIndex,
    RetrievalWarning,
    Retriever,
    get_retriever,
    known_retrievers,
    register_retriever,
)
from runners.retrieval.cache import IndexCache, default_cache_dir

__all__ = [
    "IndexCache",
    "RetrievalIndex",
    "RetrievalWarning",
    "Retriever",
    "default_cache_dir",
    "get_retriever",
    "known_retrievers",
    "register_retriever",
]
