"""A cache of retrieval indexes, so each user's index is built once and reused across trials.

Indexes are kept in memory (least recently used evicted first), keyed on the retriever name,
its options, the task and a content hash of the user's corpus. Retrievers with expensive
artifacts (the ``dense`` embeddings) also keep them on disk under the cache directory, so a new
process reuses them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Hashable, Sequence

from runners.data.types import HistoryItem
from runners.errors import ConfigError
from runners.home import tool_home
from runners.retrieval.base import (
    RetrievalIndex,
    content_digest,
    get_retriever,
    resolve_options,
)


def default_cache_dir() -> Path:
    """Return the on-disk retrieval cache, ``$PERS_SEARCH_HOME/retrieval``.

    ``PERS_SEARCH_HOME`` defaults to ``~/.cache/pers-search``; it is read when called.

    Returns:
        The directory (not created).
    """
    return tool_home() / "retrieval"


class IndexCache:
    """An in-memory LRU cache of retrieval indexes with an on-disk store for embeddings.

    Args:
        directory: Where retrievers keep on-disk artifacts; None means
            :func:`default_cache_dir` at construction time.
        max_entries: Indexes kept in memory; the least recently used goes first.
        persist: False keeps nothing on disk.

    Attributes:
        directory: The on-disk directory, or None when ``persist`` is False.
        hits: Lookups answered from memory.
        builds: Indexes built.
    """

    def __init__(self, directory: str | Path | None = None, max_entries: int = 512, persist: bool = True) -> None:
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ConfigError(f"IndexCache: max_entries={max_entries!r} must be an integer >= 1; pass a positive size")
        if not persist:
            self.directory = None
        else:
            self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.max_entries = max_entries
        self.hits = 0
        self.builds = 0
        self._entries: OrderedDict[Hashable, RetrievalIndex] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every in-memory index (files on disk stay)."""
        with self._lock:
            self._entries.clear()

    def get_or_build(
        self,
        retriever_name: str,
        items: Sequence[HistoryItem],
        task: str,
        corpus: Sequence[str],
        *,
        user_id: str = "",
        **options: Any,
    ) -> RetrievalIndex:
        """Return the index of a user's history, building it on the first request.

        Args:
            retriever_name: The registered retriever name (``rag.retriever``).
            items: The user's history items.
            task: The dataset task id.
            corpus: One document per item (``runners.prompts.corpus_text``).
            user_id: The user's id, for messages (not part of the key).
            **options: The retriever's options.

        Returns:
            The index; the same object for the same name, options, task and content.

        Raises:
            ConfigError: If the retriever name or an option is unknown.
        """
        resolved = resolve_options(retriever_name, options)
        frozen = tuple(sorted((name, repr(value)) for name, value in resolved.items()))
        key = (retriever_name, frozen, task, content_digest(items, corpus))
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
        retriever = get_retriever(retriever_name, **resolved)
        index = retriever.build(items, task, corpus, user_id=user_id, cache_dir=self.directory)
        with self._lock:
            self.builds += 1
            self._entries[key] = index
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return index
