"""What every executor shares: the objective's result types, one safe evaluation, and the interface.

An executor keeps up to :attr:`Executor.workers` trials in flight: the study loop
:meth:`~Executor.submit`-s configurations under their trial numbers and :meth:`~Executor.wait`-s
for whichever finish first. Exceptions raised by the objective become outcomes with an error
(the study records the trial as failed and goes on); a worker that dies is the executor's to
handle (retry once elsewhere, then an outcome with the reason).
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Objective = Callable[[dict[str, Any]], Mapping[str, float]]


@dataclass(frozen=True)
class Evaluation:
    """What an objective may return instead of a plain metrics dict.

    Attributes:
        values: validation metrics (objectives and any others).
        user_attrs: JSON-ready extras stored on the trial (artifact paths, run ids).
        pruned: set by early stopping: the checkpoint and the reason (``values`` are then partial).
    """

    values: Mapping[str, float]
    user_attrs: dict[str, Any] = field(default_factory=dict)
    pruned: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of evaluating one configuration: values, or an error string.

    Attributes:
        values: the reported metrics, or None when the evaluation failed.
        error: why it failed.
        user_attrs: JSON-ready extras (from an :class:`Evaluation`, plus ``worker``).
        seconds: wall time of the evaluation where it ran.
        pruned: where and why early stopping stopped the trial (its ``values`` are then partial).
    """

    values: dict[str, float] | None
    error: str | None = None
    user_attrs: dict[str, Any] = field(default_factory=dict)
    seconds: float = math.nan
    pruned: dict[str, Any] | None = None


def worker_name() -> str:
    """``host:pid`` of the process evaluating a trial."""
    return f"{socket.gethostname()}:{os.getpid()}"


def evaluate(objective: Objective, config: dict[str, Any]) -> Outcome:
    """Call the objective once, turning exceptions (out of memory included) into an :class:`Outcome`."""
    started = time.perf_counter()
    try:
        result = objective(dict(config))
    except MemoryError as err:
        return Outcome(None, f"out of memory: {err or 'MemoryError'}", {"worker": worker_name()},
                       time.perf_counter() - started)
    except Exception as err:  # noqa: BLE001  (any trial error is recorded, the study goes on)
        last = traceback.extract_tb(err.__traceback__)[-1:]
        where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
        return Outcome(None, f"{_oom_name(err)}{type(err).__name__}: {err}{where}", {"worker": worker_name()},
                       time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if isinstance(result, Evaluation):
        return Outcome(dict(result.values), None, {**result.user_attrs, "worker": worker_name()}, seconds,
                       result.pruned)
    return Outcome(dict(result), None, {"worker": worker_name()}, seconds)


def _oom_name(err: BaseException) -> str:
    """``out of memory: `` for torch's CUDA/MPS out-of-memory errors (they are not MemoryErrors)."""
    return "out of memory: " if type(err).__name__ == "OutOfMemoryError" else ""


@dataclass(frozen=True)
class Running:
    """A trial in flight: its number, configuration, slot and start time (for the live display)."""

    number: int
    config: dict[str, Any]
    slot: int
    started: float


class Executor(ABC):
    """Keeps up to :attr:`workers` trials in flight.

    Use it as a context manager (workers start on enter, stop on exit). ``KeyboardInterrupt``
    and ``SystemExit`` propagate from :meth:`wait`; :meth:`cancel` then stops what is in flight.
    """

    workers: int = 1

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def submit(self, number: int, objective: Objective, config: dict[str, Any]) -> None:
        """Start evaluating ``config`` as trial ``number`` (returns at once)."""

    @abstractmethod
    def wait(self) -> list[tuple[int, Outcome]]:
        """Block until at least one submitted trial finishes; return every finished ``(number, outcome)``."""

    def cancel(self) -> None:
        """Stop every trial in flight (their outcomes are never returned)."""

    def close(self) -> None:
        """Release the workers."""


class Lent(Executor):
    """An executor lent to one study: the study's end leaves it open for the next (its owner closes it).

    A per-user search runs its users' studies on one executor, so that worker processes (and the
    base model each has loaded) live across users.

    Args:
        owner: The executor lent.
    """

    def __init__(self, owner: Executor) -> None:
        self.owner = owner
        self.workers = owner.workers

    def submit(self, number: int, objective: Objective, config: dict[str, Any]) -> None:
        """Submit to the owner."""
        self.owner.submit(number, objective, config)

    def wait(self) -> list[tuple[int, Outcome]]:
        """Wait on the owner."""
        return self.owner.wait()

    def cancel(self) -> None:
        """Cancel the owner's trials in flight."""
        self.owner.cancel()
