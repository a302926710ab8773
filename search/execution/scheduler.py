"""Many studies on one executor: its W workers kept busy with the trials of several users at once.

A per-user search (:func:`search.execution.per_user.optimize_tasks`) has one study per user, each with its
own optimiser, seed, front, directory and lock. Run one after another, a user's BO batch is small
(its next suggestion waits for its last trial), so with ``--workers W`` most workers idle. The
:class:`CohortScheduler` runs the users' :class:`~search.execution.driver.StudyDriver`-s side by side:

- up to W users are active at once, started in cohort order; a user whose study has its trials
  (or whose space is exhausted) ends and the next user starts;
- a free worker goes to the active user with the fewest trials in flight (the earliest in the
  cohort on a tie); while at least W users are left (active or not started), a user has at most
  one trial in flight, so every suggestion sees all of that user's finished trials, as a search
  alone on one worker would; only when fewer users remain do they take several workers each
  (their suggestions then condition on their trials in flight, ``pending``).

Executors key trials by an int: the scheduler gives each submitted trial a key of its own and maps
it back to (user, trial number). The process running the scheduler is the only writer of every
study (and of MLflow, through the drivers' callbacks); workers return outcomes and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from search.execution.executors import Executor
from search.execution.driver import Started, StudyDriver

OpenTask = Callable[[int], StudyDriver]
EndTask = Callable[[int, StudyDriver], None]


@dataclass
class _Active:
    index: int
    driver: StudyDriver
    refused: bool = False  # asked for a trial and had none to give (the space is exhausted for now)


@dataclass
class _Flight:
    active: _Active
    number: int
    slot: int


class CohortScheduler:
    """Runs ``count`` studies on one executor (see the module docstring for the policy).

    Args:
        executor: the cohort's executor (entered by the caller); ``executor.workers`` is W.
        count: the number of tasks (users), started in order 0, 1, ...
        open_task: opens task ``i``'s study (the caller takes its lock) and returns its driver.
        end_task: task ``i`` is done (its study has its trials, nothing is in flight).
    """

    def __init__(self, executor: Executor, count: int, open_task: OpenTask, end_task: EndTask) -> None:
        self.executor = executor
        self.count = count
        self.open_task = open_task
        self.end_task = end_task
        self._active: list[_Active] = []
        self._next = 0  # the next task to start
        self._flights: dict[int, _Flight] = {}  # executor key -> the trial it runs
        self._keys = 0

    @property
    def workers(self) -> int:
        """W: trials in flight at most."""
        return max(1, self.executor.workers)

    def users_left(self) -> int:
        """Users active or not started yet."""
        return len(self._active) + self.count - self._next

    def run(self) -> None:
        """Run every task to its end; on any exception (Ctrl-C too) cancel what is in flight and re-raise."""
        try:
            while True:
                self._retire()
                self._activate()
                self._fill()
                if not self._flights:
                    if not self._active and self._next >= self.count:
                        return
                    continue  # the active users had nothing to start: they are done, retired next round
                for key, outcome in self.executor.wait():
                    flight = self._flights.pop(key)
                    flight.active.refused = False
                    flight.active.driver.finish(flight.number, outcome)
        except BaseException:
            self.executor.cancel()
            raise

    # ----------------------------------------------------------------- the policy
    def _retire(self) -> None:
        for active in [a for a in self._active if a.driver.done]:
            self._active.remove(active)
            self.end_task(active.index, active.driver)

    def _activate(self) -> None:
        while len(self._active) < self.workers and self._next < self.count:
            index, self._next = self._next, self._next + 1
            driver = self.open_task(index)
            if driver.done:
                self.end_task(index, driver)
            else:
                self._active.append(_Active(index, driver))

    def _fill(self) -> None:
        """Hand every free worker a trial: the active user with the fewest in flight first."""
        while len(self._flights) < self.workers:
            cap = 1 if self.users_left() >= self.workers else self.workers
            offer = [a for a in self._active if not a.refused and a.driver.in_flight < cap and a.driver.wanted() > 0]
            if not offer:
                return
            active = min(offer, key=lambda a: (a.driver.in_flight, a.index))
            started = active.driver.start(1)
            if not started:
                active.refused = True
                continue
            self._submit(active, started[0])

    def _submit(self, active: _Active, started: Started) -> None:
        key, self._keys = self._keys, self._keys + 1
        slot = min(set(range(self.workers)) - {f.slot for f in self._flights.values()})
        self._flights[key] = _Flight(active, started.record.number, slot)
        self.executor.submit(key, started.objective, started.record.config)
        active.driver.submitted(started.record, slot)
