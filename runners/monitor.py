"""Intermediate reports of a training trial (for early stopping): checkpoints every few steps.

Every ``MonitorSpec.every`` optimiser steps of a user's training, the trial measures the model
on the user's first ``MonitorSpec.queries`` validation queries (the answer loss every time; the
generation metrics every ``generate_every``-th time) and reports a :class:`Checkpoint` whose
metrics are the cohort's so far: the users trained before with their final values, this user
with the checkpoint's. The report callback may raise :class:`runners.errors.TrialStopped` to
stop the trial.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

from runners.spec import SE_SUFFIX, Checkpoint, MonitorSpec, checkpoint_key

Report = Callable[[Checkpoint], None]
Measure = Callable[[bool], dict[str, float]]


class TrainingMonitor:
    """Counts one user's training steps and reports a checkpoint every ``spec.every`` of them.

    Args:
        spec: when to report.
        report: the callback.
        measure: ``measure(generate)`` -> this user's metrics now (with ``<m>_se`` where known).
        earlier: final metrics of the users trained before, in cohort order.
        user_index: this user's position in the cohort.
        user_id: this user's id.
        trained_before: training steps of the earlier users.
    """

    def __init__(self, spec: MonitorSpec, report: Report, measure: Measure, earlier: Sequence[Mapping[str, float]],
                 user_index: int, user_id: str, trained_before: int = 0) -> None:
        self.spec, self.report, self.measure = spec, report, measure
        self.earlier, self.user_index, self.user_id = list(earlier), user_index, user_id
        self.trained_before = trained_before
        self.step = 0
        self.count = 0

    def on_step(self) -> None:
        """After each optimiser step: report when a checkpoint is due."""
        self.step += 1
        if self.step % self.spec.every:
            return
        generate = self.count % self.spec.generate_every == 0
        self.count += 1
        metrics = cohort_so_far(self.earlier, self.measure(generate))
        self.report(Checkpoint(key=checkpoint_key(self.user_index, self.step), index=self.count - 1,
                               user_index=self.user_index, user_id=self.user_id, step=self.step,
                               trained_steps=self.trained_before + self.step, metrics=metrics))


def cohort_so_far(earlier: Sequence[Mapping[str, float]], current: Mapping[str, float]) -> dict[str, float]:
    """Each of ``current``'s metrics averaged with the earlier users' values; standard errors combined
    as for a mean of independent users (``sqrt(sum se^2) / n``)."""
    out: dict[str, float] = {}
    for key, value in current.items():
        if key.endswith(SE_SUFFIX):
            continue
        values = [float(u[key]) for u in earlier if key in u] + [float(value)]
        out[key] = sum(values) / len(values)
        ses = [u.get(f"{key}{SE_SUFFIX}") for u in earlier if key in u] + [current.get(f"{key}{SE_SUFFIX}")]
        if all(se is not None for se in ses):
            out[f"{key}{SE_SUFFIX}"] = math.sqrt(sum(float(se) ** 2 for se in ses)) / len(ses)
    return out
