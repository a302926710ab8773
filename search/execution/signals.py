"""SIGTERM and SIGHUP stop a run the way Ctrl-C does.

A scheduler stops a job with SIGTERM (Slurm, Kubernetes, systemd, ``kill``) and a closed terminal
sends SIGHUP. Python's default for both is to die on the spot: no ``finally`` runs, so the MLflow
runs stay RUNNING, scratch directories stay behind and nothing says what happened. Within
:func:`stop_on_signals`, both raise :class:`Stopped` (a ``KeyboardInterrupt``) in the main thread
instead, so the code that handles Ctrl-C (cancel the trials in flight, keep the finished ones,
close the MLflow runs as KILLED, print how to resume) handles them too. A repeat of the signal
while that code runs is ignored, so a scheduler's second SIGTERM cannot cut the clean-up short
(its SIGKILL still can).
"""

from __future__ import annotations

import contextlib
import signal
from typing import Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
_FIRED: list[int] = []  # the signal that stopped the run (the first one), while stop_on_signals is active


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by a signal; ``exit_code`` is 128 + its number (143, 129)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum
        self.name = signal.Signals(signum).name


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first of :data:`STOP_SIGNALS` raises :class:`Stopped`; repeats are ignored.

    Only the main thread can install handlers; elsewhere the block runs unchanged.
    """
    fired = _FIRED
    fired.clear()

    def handler(signum, frame) -> None:
        if fired:
            return
        fired.append(signum)
        raise Stopped(signum)

    try:
        previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _signal_of(interrupt: KeyboardInterrupt) -> int | None:
    """The signal behind an interrupt: its own, or the one that fired when a library caught
    :class:`Stopped` and raised a plain ``KeyboardInterrupt`` in its place (Ray's ``wait`` does)."""
    if isinstance(interrupt, Stopped):
        return interrupt.signum
    return _FIRED[0] if _FIRED else None


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal's number for SIGTERM and SIGHUP."""
    signum = _signal_of(interrupt)
    return 130 if signum is None else 128 + signum


def what_stopped(interrupt: KeyboardInterrupt) -> str:
    """``interrupted`` (Ctrl-C) or ``stopped by SIGTERM``."""
    signum = _signal_of(interrupt)
    return "interrupted" if signum is None else f"stopped by {signal.Signals(signum).name}"
