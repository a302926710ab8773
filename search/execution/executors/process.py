"""``process``: trials in local worker processes, each keeping its loaded model between trials.

Each worker is a spawned process with one pipe to the driver. It loads what a trial needs on
first use (the base model, the data, retrieval indexes: ``runners.session``) and keeps it for
the next trials, of whichever user (a per-user search runs every user on the same workers); the model's dequantized cache lies under ``$PERS_SEARCH_HOME``, which workers
share. Workers are our own ``multiprocessing`` processes rather than a
``concurrent.futures.ProcessPoolExecutor``: one dead worker there breaks the whole pool (every
trial in flight is lost), where here only the trial of the dead worker is retried, and a trial
that runs past its timeout is stopped by killing just its worker.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for
from typing import Any

from search.errors import SearchError
from search.execution.executors.base import Executor, Objective, Outcome, evaluate

POLL_SECONDS = 1.0
RETRIES = 1
CANCEL_GRACE_S = 5.0


@dataclass
class _Task:
    number: int
    objective: Objective
    config: dict[str, Any]
    attempts: int = 0
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Worker:
    process: Any
    conn: Connection
    device: str | None
    task: _Task | None = None


def _die_with_parent() -> None:
    """Ask Linux to kill this process when the driver dies (a SIGKILL-ed driver leaves no orphans)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers notice the closed pipe instead
        pass


def _exit_cleanly(signum, frame) -> None:
    """SIGTERM in a worker: unwind the trial (its scratch directory is removed on the way), then exit."""
    raise SystemExit(128 + signum)


def worker_main(conn: Connection, threads: int | None, device: str | None) -> None:
    """A worker's loop: receive ``(number, objective, config)``, send ``(number, outcome)``; ``None`` stops it."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle
    signal.signal(signal.SIGTERM, _exit_cleanly)  # the driver's cancel: let the trial's finally blocks run
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    if threads:
        import torch  # a worker that evaluates trials loads torch anyway

        torch.set_num_threads(threads)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        number, objective, config = task
        conn.send((number, evaluate(objective, config)))


class ProcessExecutor(Executor):
    """Up to ``workers`` trials at once in local processes.

    Args:
        workers: processes (and trials in flight).
        threads: torch threads per worker (default: the machine's cores split between workers).
        timeout_s: a trial running longer is stopped (its worker killed and replaced) and fails
            with the reason; None waits for ever.
        devices: CUDA device ids handed out to workers in turn (default: every visible GPU;
            none on a machine without one).
    """

    def __init__(self, workers: int = 2, threads: int | None = None, timeout_s: float | None = None,
                 devices: list[str] | None = None) -> None:
        if workers < 1:
            raise SearchError(f"--workers {workers}: need at least 1 worker")
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // workers)
        self.timeout_s = timeout_s
        self.devices = devices if devices is not None else _visible_gpus()
        self._context = multiprocessing.get_context("spawn")
        self._pool: list[_Worker] = []
        self._done: list[tuple[int, Outcome]] = []
        self._started = 0

    # ----------------------------------------------------------------- workers
    def _spawn(self) -> _Worker:
        device = self.devices[self._started % len(self.devices)] if self.devices else None
        self._started += 1
        parent, child = self._context.Pipe()
        process = self._context.Process(target=worker_main, args=(child, self.threads, device), daemon=True,
                                        name=f"pers-search-worker-{self._started}")
        process.start()
        child.close()
        return _Worker(process, parent, device)

    def _idle(self) -> _Worker:
        for worker in self._pool:
            if worker.task is None:
                return worker
        if len(self._pool) >= self.workers:
            raise SearchError(f"process executor: all {self.workers} workers are busy; wait() before submitting more")
        self._pool.append(self._spawn())
        return self._pool[-1]

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill a worker (if still alive) and put a fresh one in its place."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(timeout=10)
        worker.conn.close()
        fresh = self._spawn()
        self._pool[self._pool.index(worker)] = fresh
        return fresh

    # ----------------------------------------------------------------- the interface
    def submit(self, number: int, objective: Objective, config: dict[str, Any]) -> None:
        """Send ``config`` to an idle worker (a new one while fewer than ``workers`` run).

        Raises:
            SearchError: the objective cannot be sent to another process (define it at module level).
        """
        self._send(self._idle(), _Task(number, objective, config))

    def _send(self, worker: _Worker, task: _Task) -> None:
        try:
            worker.conn.send((task.number, task.objective, task.config))
        except (pickle.PicklingError, AttributeError, TypeError) as err:
            raise SearchError(f"process executor: the objective cannot be sent to a worker process ({err}); "
                              "define it at module level (not a lambda or a local function), or use --workers 1") from err
        task.started, task.attempts = time.monotonic(), task.attempts + 1
        worker.task = task

    def wait(self) -> list[tuple[int, Outcome]]:
        """Block until a trial finishes; a dead worker's trial is retried once, a timed-out one fails."""
        while not self._done:
            busy = [w for w in self._pool if w.task is not None]
            if not busy:
                return []
            ready = wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=POLL_SECONDS)
            for worker in busy:
                if worker.conn in ready:
                    self._receive(worker)
                elif worker.process.sentinel in ready:
                    self._died(worker)
            self._check_timeouts()
        done, self._done = self._done, []
        return done

    def _receive(self, worker: _Worker) -> None:
        try:
            number, outcome = worker.conn.recv()
        except (EOFError, OSError):
            self._died(worker)
            return
        worker.task = None
        self._done.append((number, outcome))

    def _died(self, worker: _Worker) -> None:
        task = worker.task
        worker.process.join(timeout=10)
        code = worker.process.exitcode
        fresh = self._replace(worker)
        if task.attempts <= RETRIES:
            self._send(fresh, task)  # retried once, in a fresh process
            return
        why = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        self._done.append((task.number, Outcome(None, f"worker process died ({why}) while running the trial, "
                                                      f"{task.attempts} times; see the worker's output above")))

    def _check_timeouts(self) -> None:
        if self.timeout_s is None:
            return
        for worker in [w for w in self._pool if w.task is not None]:
            elapsed = time.monotonic() - worker.task.started
            if elapsed > self.timeout_s:
                number = worker.task.number
                self._replace(worker)
                self._done.append((number, Outcome(
                    None, f"timed out after {elapsed:.0f} s (optimizer.trial_timeout_s={self.timeout_s:g}); the "
                          "trial's process was stopped; raise the timeout or shrink the configuration's budget")))

    def running(self) -> list[int]:
        """Trial numbers in flight."""
        return [w.task.number for w in self._pool if w.task is not None]

    def cancel(self) -> None:
        """Stop the workers running trials (idle ones stay): SIGTERM, so that a trial removes its scratch
        directory as it unwinds, then SIGKILL for one that has not exited within ``CANCEL_GRACE_S``."""
        busy = [w for w in self._pool if w.task is not None]
        for worker in busy:
            worker.process.terminate()
        deadline = time.monotonic() + CANCEL_GRACE_S
        for worker in busy:
            worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=10)
            worker.conn.close()
            self._pool.remove(worker)

    def close(self) -> None:
        """Stop every worker: idle ones are asked to exit, busy ones killed."""
        self.cancel()
        for worker in self._pool:
            try:
                worker.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for worker in self._pool:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=10)
            worker.conn.close()
        self._pool = []


def _visible_gpus() -> list[str]:
    """Ids of the CUDA devices this process sees (none without torch's CUDA)."""
    import torch  # only when a process executor starts

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
