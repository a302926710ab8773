"""How trials run: ``local`` (in this process, the default), ``process`` (local worker processes)
and ``ray`` (Ray tasks on a cluster). :func:`make_executor` builds one by name."""

from __future__ import annotations

from search.errors import SearchError
from search.execution.executors.base import (
    Evaluation,
    Executor,
    Objective,
    Outcome,
    evaluate,
    worker_name,
)
from search.execution.executors.local import LocalExecutor
from search.execution.executors.process import ProcessExecutor
from search.execution.executors.ray_cluster import RayExecutor

EXECUTORS = ("local", "process", "ray")


def make_executor(name: str | None = None, workers: int = 1, address: str = "auto",
                  timeout_s: float | None = None) -> Executor:
    """The executor the options ask for.

    ``name`` None picks ``local`` for one worker without a timeout, else ``process`` (a trial that
    must be stoppable has to run in a process of its own).

    Raises:
        SearchError: an unknown name, fewer than one worker, ``local`` with several workers, or
            ``ray`` without Ray installed.
    """
    if workers < 1:
        raise SearchError(f"--workers {workers}: need at least 1 worker")
    name = name or ("local" if workers == 1 and timeout_s is None else "process")
    if name == "local":
        if workers > 1:
            raise SearchError(f"--executor local runs one trial at a time; use --executor process (or ray) "
                              f"for --workers {workers}")
        if timeout_s is not None:
            return ProcessExecutor(1, timeout_s=timeout_s)
        return LocalExecutor()
    if name == "process":
        return ProcessExecutor(workers, timeout_s=timeout_s)
    if name == "ray":
        return RayExecutor(workers, address, timeout_s=timeout_s)
    raise SearchError(f"--executor {name!r} is unknown; use one of: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "Evaluation", "Executor", "LocalExecutor", "Objective", "Outcome", "ProcessExecutor",
           "RayExecutor", "evaluate", "make_executor", "worker_name"]
