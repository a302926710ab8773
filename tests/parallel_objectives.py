"""Black-box objectives for the executor tests, defined at module level so worker processes can load them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from toy_study import objective as toy_objective


def sleepy(config):
    """The toy objective after a short sleep (so that trials overlap in time)."""
    time.sleep(0.5)
    return toy_objective(config)


class DiesOnce:
    """Kills its own process the first time it sees a configuration with ``k == 2``; then it works.

    The marker file (shared by all processes) remembers the first death.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, config):
        if config["k"] == 2 and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return toy_objective(config)


def always_dies(config):
    """Kills its process whenever ``k == 2``."""
    if config["k"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return toy_objective(config)


def hangs_on_k3(config):
    """Never returns (well, after an hour) for ``k == 3``."""
    if config["k"] == 3:
        time.sleep(3600)
    return toy_objective(config)


class ReportsLoads:
    """A trial objective that also reports how many base models its process has loaded so far
    (``runners.session.cache_info``), in the ``model_loads`` attr of each trial."""

    def __init__(self, objective) -> None:
        self.objective = objective

    def __call__(self, config, report=None):
        from runners.session import cache_info
        from search.execution.executors import Evaluation

        done = self.objective(config, report)
        return Evaluation(done.values, {**done.user_attrs, "model_loads": cache_info()["models"]["builds"]},
                          done.pruned)


class TimedUser:
    """The toy objective of one user (quality shifted by ``shift`` when the first layer is on), after
    sleeping ``seconds``; the trial's start and end times (in the worker) go into its attrs."""

    def __init__(self, shift: float, seconds: float = 0.3) -> None:
        self.shift = shift
        self.seconds = seconds

    def __call__(self, config):
        from search.execution.executors import Evaluation

        began = time.time()
        time.sleep(self.seconds)
        values = toy_objective(config)
        values["quality"] += self.shift * config["mask"][0]
        return Evaluation(values, {"began": began, "ended": time.time()})
