"""The retriever interface, its registry, and the warning raised when k exceeds a history.

A :class:`Retriever` builds a :class:`RetrievalIndex` over one user's own history; the index
ranks that history for a query. Retrievers plug in by name with :func:`register_retriever`
and are looked up with :func:`get_retriever`.
"""

from __future__ import annotations

import abc
import hashlib
import inspect
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence, TypeVar

from runners.data.types import HistoryItem
from runners.errors import ConfigError
from runners.registry import Registry

_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()

T = TypeVar("T", bound="Retriever")


class RetrievalWarning(UserWarning):
    """Retrieval could not do exactly what was asked (for example k exceeds the history)."""


def content_digest(items: Sequence[HistoryItem], corpus: Sequence[str]) -> str:
    """Return a hash of a user's corpus documents and item times.

    Args:
        items: The history items (their ``time`` is hashed, recency depends on it).
        corpus: One document per item.

    Returns:
        A hex SHA-256 digest.
    """
    digest = hashlib.sha256()
    for item, text in zip(items, corpus):
        for part in (repr(item.time), text):
            data = part.encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
    digest.update(len(corpus).to_bytes(8, "little"))
    return digest.hexdigest()


class RetrievalIndex(abc.ABC):
    """A ranking over one user's history items.

    Subclasses implement :meth:`_rank` and :attr:`nbytes`.

    Attributes:
        retriever: The registered name of the retriever that built the index.
        size: The number of indexed items.
        user_id: The user the history belongs to (for messages; may be empty).
        digest: The content hash of the indexed corpus.
    """

    def __init__(self, retriever: str, size: int, user_id: str = "", digest: str = "") -> None:
        self.retriever = retriever
        self.size = size
        self.user_id = user_id
        self.digest = digest

    def __len__(self) -> int:
        return self.size

    def top_k(self, query: str, k: int) -> list[int]:
        """Return the indices of the ``k`` best items for a query, best first.

        When ``k`` exceeds the history, every item is returned and a :class:`RetrievalWarning`
        is issued once per process for this retriever and user.

        Args:
            query: The retrieval query text.
            k: How many items to return.

        Returns:
            Indices into the indexed items, best first, without repeats.

        Raises:
            ConfigError: If ``k`` is not a non-negative integer.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ConfigError(f"retriever {self.retriever}: rag.k={k!r} must be an integer >= 0; set rag.k to 0 or more")
        if k > self.size:
            self._warn_short(k)
            k = self.size
        return self._rank(query, k) if k else []

    def _warn_short(self, k: int) -> None:
        who = self.user_id or f"corpus {self.digest[:12]}"
        key = (self.retriever, who)
        with _WARNED_LOCK:
            if key in _WARNED:
                return
            _WARNED.add(key)
        warnings.warn(
            f"retriever {self.retriever}: rag.k={k} exceeds the {self.size} history items of user "
            f"{who}; using all {self.size} (said once per user)",
            RetrievalWarning,
            stacklevel=3,
        )

    @abc.abstractmethod
    def _rank(self, query: str, k: int) -> list[int]:
        """Return the ``k`` best indices, best first; ``1 <= k <= size``."""

    @property
    @abc.abstractmethod
    def nbytes(self) -> int:
        """The size of the index in bytes, measured from its arrays and structures."""


class EmptyIndex(RetrievalIndex):
    """The index of an empty history: it ranks nothing and stores nothing."""

    def _rank(self, query: str, k: int) -> list[int]:
        return []

    @property
    def nbytes(self) -> int:
        return 0


class Retriever(abc.ABC):
    """Builds a :class:`RetrievalIndex` over one user's history.

    Subclasses set ``name`` (done by :func:`register_retriever`), take their options as
    keyword arguments of ``__init__`` and implement :meth:`_index`.
    """

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        """A retriever without options."""

    def build(
        self,
        items: Sequence[HistoryItem],
        task: str,
        corpus: Sequence[str],
        *,
        user_id: str = "",
        cache_dir: str | Path | None = None,
    ) -> RetrievalIndex:
        """Index one user's history.

        Args:
            items: The user's history items (only this user's).
            task: The dataset task id.
            corpus: The document of each item (see ``runners.prompts.corpus_text``), aligned
                with ``items``.
            user_id: The user's id, for messages.
            cache_dir: A directory where the retriever may keep expensive per-user artifacts
                (dense embeddings) across processes; None keeps nothing on disk.

        Returns:
            The index.

        Raises:
            ConfigError: If ``items`` and ``corpus`` differ in length.
        """
        if len(items) != len(corpus):
            raise ConfigError(
                f"retriever {self.name}: {len(items)} history items but {len(corpus)} corpus "
                f"documents; pass one document per item"
            )
        digest = content_digest(items, corpus)
        directory = Path(cache_dir).expanduser() if cache_dir is not None else None
        return self._index(list(items), task, list(corpus), user_id, digest, directory)

    @abc.abstractmethod
    def _index(
        self,
        items: list[HistoryItem],
        task: str,
        corpus: list[str],
        user_id: str,
        digest: str,
        cache_dir: Path | None,
    ) -> RetrievalIndex:
        """Build the index; arguments as :meth:`build`, validated, plus the content digest."""


def register_retriever(name: str) -> Callable[[type[T]], type[T]]:
    """Class decorator registering a retriever under a name.

    Args:
        name: The name ``rag.retriever`` selects it by.

    Returns:
        The decorator, which returns the class unchanged (with ``name`` set).

    Raises:
        ConfigError: If the name is taken.
    """
    return RETRIEVERS.register(name)


def known_retrievers() -> list[str]:
    """Return the registered retriever names, sorted."""
    return RETRIEVERS.names()


def resolve_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return a retriever's full options: those given plus the defaults of the rest.

    Args:
        name: A registered retriever name.
        options: Keyword options for the retriever.

    Returns:
        Every option of the retriever's constructor with its value.

    Raises:
        ConfigError: If the name is unknown or an option is not one the retriever takes.
    """
    cls = RETRIEVERS.get(name)
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, **options)
    except TypeError as err:
        known = [p for p in signature.parameters if p != "self"]
        raise ConfigError(
            f"retriever {name}: options {sorted(options)} are not accepted ({err}); it takes {known}"
        ) from err
    bound.apply_defaults()
    return {key: value for key, value in bound.arguments.items() if key != "self"}


def get_retriever(name: str, **options: Any) -> Retriever:
    """Return a new retriever by registered name.

    Args:
        name: The retriever name (``rag.retriever``): ``bm25``, ``dense``, ``recency``,
            ``random`` or one registered with :func:`register_retriever`.
        **options: The retriever's options (e.g. ``seed`` for ``random``).

    Returns:
        The retriever.

    Raises:
        ConfigError: If the name is unknown or an option is not accepted.
    """
    return RETRIEVERS.get(name)(**resolve_options(name, options))


RETRIEVERS: Registry[type[Retriever]] = Registry(
    "retriever", Retriever, ConfigError, where=" (rag.retriever)",
    how_to_add="add one with @register_retriever({name}) on a Retriever subclass in runners.retrieval")
