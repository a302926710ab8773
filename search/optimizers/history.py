"""The optimisers' view of a study's history: its finished trials as :class:`Observation`-s.

The study gives its trial records; this module decides what an optimiser sees of them (the study
knows no optimiser type, as Optuna's samplers read the study and not the other way round):

- a COMPLETED trial: its values and, where it reported standard errors (``<metric>_se``), their
  squares as noise variances;
- a PRUNED trial (stopped early by ``search.execution.stopping``): its final values as :func:`impute`
  estimates them from the finished trials that passed the same checkpoint (a least-squares line
  from their values there to their final values), with the line's residual spread added to its
  noise; with fewer than ``MIN_PAIRS`` such trials no values (it still counts as observed, so it
  is never suggested again);
- a FAILED trial: no values, marked as a failure.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Collection, Mapping, Sequence

from runners.spec import SE_SUFFIX
from search.numbers import finite
from search.optimizers.base import Observation
from search.study.study import CURVE_ATTR, PRUNED_ATTR, TrialRecord, TrialState

if TYPE_CHECKING:
    from search.space import Space

_FINISHED = (TrialState.COMPLETED, TrialState.PRUNED, TrialState.FAILED)

MIN_PAIRS = 3  # completed trials past a checkpoint before a pruned trial there is imputed (and early stopping acts)


def standard_error(values: Mapping[str, float], metric: str) -> float:
    """The standard error ``values`` carry for ``metric`` (``<metric>_se``), 0 when none is reported."""
    se = values.get(f"{metric}{SE_SUFFIX}")
    return float(se) if finite(se) else 0.0


def observations(trials: Sequence[TrialRecord], space: "Space", known: Collection[str] = ()) -> list[Observation]:
    """The finished trials (completed, pruned, failed) of a study as optimiser observations, in trial order.

    Args:
        trials: the study's trial records (``Study.trials``).
        space: the study's space (its metrics and objectives).
        known: metrics computed from the configuration (kept exact when imputing).
    """
    completed = [t for t in trials if t.state is TrialState.COMPLETED]
    out = []
    for t in trials:
        if t.state is TrialState.COMPLETED:
            out.append(Observation(t.config, dict(t.values), noise_variances(t.values, space.metrics)))
        elif t.state is TrialState.PRUNED:
            guess = impute(t, completed, space.objectives, set(known))
            out.append(Observation(t.config, *guess) if guess else Observation(t.config, None))
        elif t.state in _FINISHED:
            out.append(Observation(t.config, None, failure=True))
    return out


def noise_variances(values: Mapping[str, float], metrics: Collection[str]) -> dict[str, float] | None:
    """``{metric: se**2}`` for the metrics whose standard error the values carry, or None."""
    out = {m: float(values[f"{m}{SE_SUFFIX}"]) ** 2 for m in metrics if finite(values.get(f"{m}{SE_SUFFIX}"))}
    return out or None


def impute(pruned: TrialRecord, completed: Sequence[TrialRecord], objectives: Mapping[str, str],
           known: set[str]) -> tuple[dict, dict] | None:
    """Estimated final values and their variances for a PRUNED trial (see the module docstring).

    Args:
        pruned: the pruned trial record.
        completed: the study's completed trial records.
        objectives: metric -> direction (the metrics to impute).
        known: metrics computed from the configuration (kept exact).

    Returns:
        ``(values, variances)``, or None when fewer than ``MIN_PAIRS`` completed trials passed
        the checkpoint the trial stopped at.
    """
    key = pruned.user_attrs.get(PRUNED_ATTR, {}).get("checkpoint")
    partial = pruned.user_attrs.get(CURVE_ATTR, {}).get(key)
    if key is None or partial is None:
        return None
    pairs = [(t.user_attrs[CURVE_ATTR][key], t.values) for t in completed
             if key in t.user_attrs.get(CURVE_ATTR, {})]
    if len(pairs) < MIN_PAIRS:
        return None
    values, variances = {}, {}
    for metric in objectives:
        if metric in known:
            values[metric], variances[metric] = float(pruned.values[metric]), 0.0
            continue
        xy = [(at[metric], final[metric]) for at, final in pairs if metric in at and metric in final]
        if len(xy) < MIN_PAIRS or metric not in partial:
            return None
        values[metric], variances[metric] = _predict(xy, partial[metric], standard_error(partial, metric))
    return values, variances


def _predict(xy: list[tuple[float, float]], x: float, se: float) -> tuple[float, float]:
    """Least-squares line ``final = a + b * at`` through the finished trials; its prediction at ``x``
    and the variance: residual variance plus the line's slope times the measurement error."""
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((v - mx) ** 2 for v in xs)
    slope = sum((a - mx) * (b - my) for a, b in xy) / sxx if sxx > 0 else 1.0
    intercept = my - slope * mx if sxx > 0 else statistics.fmean(b - a for a, b in xy)
    residuals = [b - (intercept + slope * a) for a, b in xy]
    dof = max(1, len(xy) - (2 if sxx > 0 else 1))
    spread = sum(r * r for r in residuals) / dof
    return intercept + slope * x, spread + (slope * se) ** 2
