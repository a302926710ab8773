"""``ray``: trials as Ray tasks, on an existing cluster (``--address auto`` or ``HOST:PORT``) or a
Ray started in this process (``--address local``).

Each trial is one task asking for a GPU when the cluster has any (else its share of the CPUs).
The objective (with the trial setup) goes to the object store once; Ray reuses worker processes
for tasks of the same function, so a worker keeps its loaded model between trials, of whichever
user (``runners.session`` shares it by model settings). A task whose worker dies (a killed process, a lost node) is retried once
by Ray (``max_retries=1``); a second death makes the trial fail with the reason. The driver stays
the only writer of the study and of MLflow: tasks return outcomes and nothing else.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from search.errors import SearchError
from search.execution.executors.base import Executor, Objective, Outcome, evaluate
from search.execution.usage_reporting import usage_reporting_off

POLL_SECONDS = 1.0
INSTALL_HINT = "pip install 'pers-search[ray]'"


def _remote_evaluate(objective: Objective, config: dict[str, Any]) -> Outcome:
    """The task body: one evaluation in a Ray worker."""
    return evaluate(objective, config)


def import_ray() -> Any:
    """Ray, or an error that says how to install it.

    Raises:
        SearchError: Ray is not installed.
    """
    try:
        import ray  # the optional extra
    except ImportError as err:
        raise SearchError(f"--executor ray needs Ray, an optional extra: {INSTALL_HINT}") from err
    return ray


class RayExecutor(Executor):
    """Up to ``workers`` trials at once as Ray tasks.

    Args:
        workers: trials in flight.
        address: ``auto`` (a running cluster), ``local`` (start Ray here) or ``HOST:PORT``.
        timeout_s: a trial running longer is cancelled and fails with the reason (None: no limit).
        num_cpus: for ``local``: CPUs Ray may use (default all).
    """

    def __init__(self, workers: int = 2, address: str = "auto", timeout_s: float | None = None,
                 num_cpus: int | None = None) -> None:
        if workers < 1:
            raise SearchError(f"--workers {workers}: need at least 1 worker")
        self.ray = import_ray()
        self.workers, self.address, self.timeout_s = workers, address, timeout_s
        self._owns_ray = not self.ray.is_initialized()
        if self._owns_ray:
            self._init(num_cpus)
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)) // workers)
        self.task_resources = {"num_gpus": 1} if gpus else {"num_cpus": cpus}
        self._task = self.ray.remote(max_retries=1, retry_exceptions=False, **self.task_resources)(_remote_evaluate)
        self._refs: dict[Any, tuple[int, float]] = {}
        self._objectives: dict[int, Any] = {}

    def _init(self, num_cpus: int | None) -> None:
        usage_reporting_off()  # a Ray started here reports usage stats unless RAY_USAGE_STATS_ENABLED says no
        # ray.init replaces the SIGTERM handler with one that exits on the spot; the run's own handler
        # (search.execution.signals: stop as Ctrl-C does) is put back once Ray is up
        previous = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            self._start(num_cpus)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _start(self, num_cpus: int | None) -> None:
        try:
            if self.address == "local":
                self.ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                              configure_logging=False, log_to_driver=True)
            else:
                self.ray.init(address=self.address, configure_logging=False, log_to_driver=True)
        except ConnectionError as err:
            raise SearchError(f"--address {self.address}: no Ray cluster answers ({err}); start one with "
                              "`ray start --head` (and `ray start --address HEAD:6379` on other machines), "
                              "or use --address local") from err

    def submit(self, number: int, objective: Objective, config: dict[str, Any]) -> None:
        """Start a Ray task for ``config`` (the objective is put in the object store once)."""
        key = id(objective)
        if key not in self._objectives:
            self._objectives[key] = (objective, self.ray.put(objective))
        ref = self._task.remote(self._objectives[key][1], config)
        self._refs[ref] = (number, time.monotonic())

    def wait(self) -> list[tuple[int, Outcome]]:
        """Block until a task finishes; a worker that died twice, or a timeout, fails the trial."""
        while self._refs:
            ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=POLL_SECONDS)
            done = [self._collect(ref) for ref in ready]
            done += self._timeouts()
            if done:
                return done
        return []

    def _collect(self, ref: Any) -> tuple[int, Outcome]:
        number, _ = self._refs.pop(ref)
        try:
            return number, self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # the worker or node died (after Ray's one retry)
            return number, Outcome(None, f"Ray worker failed twice while running the trial "
                                         f"({type(err).__name__}: {str(err).splitlines()[0][:300]})")

    def _timeouts(self) -> list[tuple[int, Outcome]]:
        if self.timeout_s is None:
            return []
        out = []
        for ref, (number, started) in list(self._refs.items()):
            elapsed = time.monotonic() - started
            if elapsed > self.timeout_s:
                self.ray.cancel(ref, force=True)
                del self._refs[ref]
                out.append((number, Outcome(None, f"timed out after {elapsed:.0f} s (optimizer.trial_timeout_s="
                                                  f"{self.timeout_s:g}); the Ray task was cancelled")))
        return out

    def cancel(self) -> None:
        """Cancel every task still running (force: their workers are killed); finished ones are dropped.

        Cancelling a task that finishes at that moment can crash Ray's core worker (a failed check,
        "Tried to complete task that was not pending", seen under load), so the finished ones are
        left out first.
        """
        refs = list(self._refs)
        self._refs.clear()
        if not refs:
            return
        _, running = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in running:
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        """Stop what is in flight and shut Ray down if this executor started it (the shutdown ends its
        workers, tasks included, with no cancel racing a task that finishes); on a cluster it did not
        start, cancel the tasks still running."""
        if self._owns_ray and self.ray.is_initialized():
            self._refs.clear()
            self.ray.shutdown()
        else:
            self.cancel()
