"""``local``: trials run in this process, one after another (the default)."""

from __future__ import annotations

from collections import deque
from typing import Any

from search.execution.executors.base import Executor, Objective, Outcome, evaluate


class LocalExecutor(Executor):
    """Runs each submitted trial in this process when :meth:`wait` is called, in submission order."""

    workers = 1

    def __init__(self) -> None:
        self._queue: deque[tuple[int, Objective, dict[str, Any]]] = deque()

    def submit(self, number: int, objective: Objective, config: dict[str, Any]) -> None:
        """Queue ``config`` (it runs in :meth:`wait`)."""
        self._queue.append((number, objective, config))

    def wait(self) -> list[tuple[int, Outcome]]:
        """Run the oldest queued trial and return it."""
        if not self._queue:
            return []
        number, objective, config = self._queue.popleft()
        return [(number, evaluate(objective, config))]

    def cancel(self) -> None:
        """Forget the queued trials."""
        self._queue.clear()
