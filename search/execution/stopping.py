"""Multi-objective early stopping: stop a trial whose intermediate point is dominated, with high
confidence, by a finished trial at the same point of training.

A trial reports :class:`runners.spec.Checkpoint`-s while it trains (the same keys in every trial
of a study). When the study submits a trial it hands the trial a :class:`StopCheck`: the curves
of the trials finished so far, the trial's known objectives (storage, computed from its
configuration) and the rule's settings. At each checkpoint past ``min_steps`` the check compares
the trial with every finished trial at the same key: finished trial ``F`` beats trial ``T`` with
probability ``prod_j Phi((F_j - T_j) / sqrt(se_Fj^2 + se_Tj^2))`` over the objectives (signed so
that larger is better; a known objective counts 1 when ``F`` is at least as good, else 0); when
that probability reaches ``confidence`` the trial stops with the reason. No trial stops at a
checkpoint until ``min_finished`` finished trials have passed it (default 3, :data:`search.optimizers.history.MIN_PAIRS`):
one early finished trial whose checkpoint looked good by chance would otherwise stop most of the
trials after it, and a trial stopped before three finished trials passed its checkpoint has no
estimate of its final values for the surrogate (:func:`search.optimizers.history.impute`). With
``margin`` m > 0 a measured objective counts as tied when ``T`` is ahead of ``F`` by less than ``m |F_j|``
(``Phi((F_j - T_j + m |F_j|) / se)``): differences smaller than that do not matter to the user, so
a trial that is no better than a finished one beyond the margin, and larger, stops. No trial stops
at a checkpoint where every finished trial ended its training (the last step of the last user):
the stop would save no step and lose the trial's final evaluation. The check runs where
the trial runs (a worker process or a Ray task), with what was finished when it was submitted.

A stopped trial is recorded as PRUNED with its partial metrics and the checkpoint. For the
surrogate it is not a finished point: the optimisers' view of the history
(:mod:`search.optimizers.history`) estimates its final values from the finished trials that passed
the same checkpoint, or leaves it out of the models with fewer than ``MIN_PAIRS`` of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from runners.errors import TrialStopped
from runners.spec import Checkpoint, checkpoint_position
from search.execution.executors import Evaluation
from search.numbers import finite
from search.optimizers.history import standard_error
from search.space import EarlyStoppingSettings
from search.study.study import CURVE_ATTR, PRUNED_ATTR



@dataclass(frozen=True)
class FinishedCurve:
    """A finished trial as the check sees it: its number, its checkpoints and its known objectives."""

    number: int
    points: Mapping[str, Mapping[str, float]]
    known: Mapping[str, float]


@dataclass(frozen=True)
class StopCheck:
    """The stopping rule of one submitted trial (picklable: it travels with the trial to its worker)."""

    objectives: Mapping[str, str]
    settings: EarlyStoppingSettings
    known: Mapping[str, float]
    finished: tuple[FinishedCurve, ...] = ()

    def reason(self, checkpoint: Checkpoint) -> str | None:
        """Why the trial should stop at ``checkpoint``, or None to go on."""
        if checkpoint.trained_steps < self.settings.min_steps:
            return None
        mine = {**checkpoint.metrics, **self.known}
        if not all(finite(mine.get(m)) for m in self.objectives):
            return None  # a loss-only checkpoint: no generation metrics to compare
        if self.finished and not any(_trained_past(other.points, checkpoint.key) for other in self.finished):
            return None  # every finished trial stopped training here: a stop would save nothing and lose the result
        passed = [other for other in self.finished if checkpoint.key in other.points]
        if len(passed) < self.settings.min_finished:
            return None  # too few finished trials here to judge by (and to estimate a stopped trial's end from)
        best = None
        for other in passed:
            theirs = other.points[checkpoint.key]
            p = dominance_probability({**theirs, **other.known}, mine, self.objectives, set(self.known),
                                      self.settings.margin)
            if p >= self.settings.confidence and (best is None or p > best[0]):
                best = (p, other, theirs)
        if best is None:
            return None
        p, other, theirs = best
        shown = ", ".join(f"{m} {_fmt(mine[m])} vs {_fmt({**theirs, **other.known}[m])}" for m in self.objectives)
        return (f"dominated at checkpoint {checkpoint.key} (user {checkpoint.user_id}, step {checkpoint.step}, "
                f"{checkpoint.trained_steps} steps trained) by trial {other.number} with probability {p:.2f} "
                f"({shown}{self._margin_note()})")

    def _margin_note(self) -> str:
        return f"; within a margin of {self.settings.margin:g}" if self.settings.margin else ""


def _trained_past(points: Mapping[str, Any], key: str) -> bool:
    """Whether a trial's curve goes on after checkpoint ``key`` (a later step, or a later user)."""
    at = checkpoint_position(key)
    return any(checkpoint_position(other) > at for other in points)


def dominance_probability(better: Mapping[str, float], worse: Mapping[str, float], objectives: Mapping[str, str],
                          exact: set[str] = frozenset(), margin: float = 0.0) -> float:
    """P(``better`` is at least as good as ``worse`` in every objective), objectives independent, normal errors.

    Each value may carry its standard error as ``<metric>_se``; metrics in ``exact`` (known
    objectives) and metrics without an error compare exactly. ``margin``: a measured objective of
    ``worse`` ahead of ``better``'s by less than ``margin * |better's value|`` counts as tied.
    """
    p = 1.0
    for metric, direction in objectives.items():
        sign = 1.0 if direction == "max" else -1.0
        slack = 0.0 if metric in exact else margin * abs(float(better[metric]))
        gap = sign * (float(better[metric]) - float(worse[metric])) + slack
        se = 0.0 if metric in exact else math.hypot(standard_error(better, metric), standard_error(worse, metric))
        p *= (1.0 if gap >= 0 else 0.0) if se == 0 else _phi(gap / se)
    return p


def stop_check(study, settings: EarlyStoppingSettings, known_values: Mapping[str, float]) -> StopCheck:
    """The check a new trial of ``study`` carries: every finished trial's curve, and its own known values."""
    finished = tuple(
        FinishedCurve(t.number, t.user_attrs.get(CURVE_ATTR, {}), {m: t.values[m] for m in known_values if m in t.values})
        for t in study.completed() if t.user_attrs.get(CURVE_ATTR)
    )
    return StopCheck(dict(study.space.objectives), settings, dict(known_values), finished)


@dataclass
class StoppableObjective:
    """Runs an objective with a report callback that records the curve and applies a :class:`StopCheck`.

    The objective is called as ``objective(config, report=callback)``; ``callback(checkpoint)``
    raises :class:`runners.errors.TrialStopped` when the check says stop. A stopped trial comes
    back as an :class:`Evaluation` with ``pruned`` set and its partial metrics as values.
    """

    objective: Callable[..., Any]
    check: StopCheck
    curve: dict[str, dict[str, float]] = field(default_factory=dict)

    def report(self, checkpoint: Checkpoint) -> None:
        """Record the checkpoint; stop the trial when the rule says so."""
        self.curve[checkpoint.key] = {k: float(v) for k, v in checkpoint.metrics.items() if finite(v)}
        reason = self.check.reason(checkpoint)
        if reason is not None:
            raise TrialStopped(checkpoint, reason)

    def __call__(self, config: dict[str, Any]) -> Evaluation:
        try:
            result = self.objective(config, report=self.report)
        except TrialStopped as stop:
            at = stop.checkpoint
            pruned = {"checkpoint": at.key, "step": at.step, "trained_steps": at.trained_steps,
                      "user": at.user_id, "reason": stop.reason}
            values = {**at.metrics, **self.check.known}
            return Evaluation(values, {CURVE_ATTR: self.curve, PRUNED_ATTR: pruned}, pruned=pruned)
        if isinstance(result, Evaluation):
            return Evaluation(result.values, {**result.user_attrs, CURVE_ATTR: self.curve})
        return Evaluation(dict(result), {CURVE_ATTR: self.curve})


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _fmt(value: float) -> str:
    return f"{value:.4g}"
