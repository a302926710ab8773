"""The ``recency`` retriever: a user's latest history items, newest first."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from runners.data.types import HistoryItem
from runners.errors import DataError
from runners.retrieval.base import RetrievalIndex, Retriever, register_retriever


def time_key(time: str | float | int, item_id: str | None = None) -> tuple[float, ...]:
    """Return a sortable key for an item's ``time``.

    Numbers (and numeric strings) sort as numbers. Other strings are read as LaMP reads
    dates, ``tuple(map(int, date.split("-")))``, generalised to every run of digits, so
    ``"2021-03-04"``, ``"2021/03/04"`` and ``"2021-03-04T10:00"`` all order by their fields.

    Args:
        time: The item's time.
        item_id: The item's id, for the message.

    Returns:
        The key; keys compare field by field.

    Raises:
        DataError: If the time is neither a number nor holds any digits.
    """
    if isinstance(time, (int, float)) and not isinstance(time, bool) and math.isfinite(time):
        return (float(time),)
    text = str(time).strip()
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and math.isfinite(number):
        return (number,)
    fields = re.findall(r"\d+", text)
    if not fields:
        raise DataError(
            f"recency retriever: history item id={item_id!r} has time={time!r}, neither a number "
            f"nor a date like YYYY-MM-DD; fix the item's time or use another rag.retriever"
        )
    return tuple(float(field) for field in fields)


class RecencyIndex(RetrievalIndex):
    """Item indices ordered newest first."""

    def __init__(self, order: np.ndarray, **kwargs) -> None:
        super().__init__(size=len(order), **kwargs)
        self.order = order

    def _rank(self, query: str, k: int) -> list[int]:
        return [int(i) for i in self.order[:k]]

    @property
    def nbytes(self) -> int:
        return int(self.order.nbytes)


@register_retriever("recency")
class RecencyRetriever(Retriever):
    """Ranks a user's items by ``time``, newest first; the query is ignored.

    Items without a time count as older than every dated item; among themselves (and among
    equal times) a later position in the file is newer, so a history with no times at all is
    ranked by file order, last item first. LaMP sorts by the parsed date and takes the last n
    reversed, which gives the same order for dated items.
    """

    def _index(
        self,
        items: list[HistoryItem],
        task: str,
        corpus: list[str],
        user_id: str,
        digest: str,
        cache_dir: Path | None,
    ) -> RecencyIndex:
        keys = [
            (item.time is not None, time_key(item.time, item.id) if item.time is not None else (), i)
            for i, item in enumerate(items)
        ]
        order = np.array([key[2] for key in sorted(keys, reverse=True)], dtype=np.int64)
        return RecencyIndex(order, retriever=self.name, user_id=user_id, digest=digest)
