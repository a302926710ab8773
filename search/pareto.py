"""Pareto front, hypervolume, reference point and knee of a set of trial values, in NumPy.

Values are dicts of raw metrics (as reported); ``objectives`` maps metric -> ``max``/``min``.
``None`` (a failed trial), a missing or non-finite objective, and a violated constraint all
exclude a point from the front. Internally everything is maximised (``min`` objectives negated).

This module answers ``status``, ``pareto`` and the MLflow reports without loading torch: the
front is a pairwise dominance check, the hypervolume the exact slicing algorithm (HSO: sweep the
last objective, the hypervolume of each slice's front in one objective fewer, a plain sweep in
two), which is fast for the few hundred points of a study; the reference point is inferred as
BoTorch's ``infer_reference_point`` does (``tests/test_pareto.py`` checks both against BoTorch).
The optimisers still use BoTorch's box decompositions for their acquisition functions.
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np

from search.numbers import finite

Values = Mapping[str, float] | None
MIN_Y_RANGE = 1e-7  # BoTorch's floor on an objective's range when inferring a reference point
REF_SCALE = 0.1  # BoTorch's default: the reference point lies 10% of the range below the nadir


class Constraint(Protocol):
    """An outcome constraint as the front sees it (``search.space.Constraint`` is one): the metric it bounds
    and whether a value satisfies it. A protocol, so that the front maths stays below the space schema."""

    metric: str

    def satisfied(self, value: float) -> bool:
        """Whether ``value`` of :attr:`metric` satisfies the constraint."""


def _sign(direction: str) -> float:
    return -1.0 if direction == "min" else 1.0


def is_feasible(values: Values, objectives: Mapping[str, str], constraints: Sequence[Constraint] = ()) -> bool:
    """True when every objective is finite and every constraint holds."""
    if values is None or not all(finite(values.get(m)) for m in objectives):
        return False
    return all(finite(values.get(c.metric)) and c.satisfied(float(values[c.metric])) for c in constraints)


def _matrix(points: Sequence[Values], objectives: Mapping[str, str]) -> np.ndarray:
    rows = [[_sign(d) * float(p[m]) for m, d in objectives.items()] for p in points]  # type: ignore[index]
    return np.asarray(rows, dtype=np.float64).reshape(len(points), len(objectives))


def non_dominated(Y: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (maximisation; equal rows all kept)."""
    if len(Y) == 0:
        return np.zeros(0, dtype=bool)
    geq = (Y[:, None, :] >= Y[None, :, :]).all(axis=-1)
    gt = (Y[:, None, :] > Y[None, :, :]).any(axis=-1)
    return ~(geq & gt).any(axis=0)


def pareto_indices(
    points: Sequence[Values], objectives: Mapping[str, str], constraints: Sequence[Constraint] = ()
) -> list[int]:
    """Indices of the feasible, non-dominated points."""
    ok = [i for i, p in enumerate(points) if is_feasible(p, objectives, constraints)]
    if not ok:
        return []
    mask = non_dominated(_matrix([points[i] for i in ok], objectives))
    return [i for i, keep in zip(ok, mask.tolist()) if keep]


def infer_reference_point(front: np.ndarray) -> np.ndarray:
    """BoTorch's ``infer_reference_point`` without a maximum: the nadir minus 10% of the range
    (a single point: minus 10% of its magnitude), in the maximised space."""
    if len(front) == 1:
        return front[0] - REF_SCALE * np.maximum(np.abs(front[0]), MIN_Y_RANGE)
    nadir, ideal = front.min(axis=0), front.max(axis=0)
    return nadir - REF_SCALE * np.maximum(ideal - nadir, MIN_Y_RANGE)


def reference_point(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    given: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
) -> dict[str, float] | None:
    """The reference point in raw units: ``given`` values where present, else inferred from the front.

    Returns None when there is no feasible point and nothing is given for some objective.
    """
    given = dict(given or {})
    if all(m in given for m in objectives):
        return {m: float(given[m]) for m in objectives}
    front = pareto_indices(points, objectives, constraints)
    if not front:
        return None
    inferred = infer_reference_point(_matrix([points[i] for i in front], objectives))
    return {m: float(given.get(m, _sign(d) * float(v))) for (m, d), v in zip(objectives.items(), inferred.tolist())}


def study_reference_point(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    given: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
    start: int = 0,
) -> dict[str, float] | None:
    """A study's reference point: ``given`` values, else inferred from its first trials only.

    ``points`` are in trial order. Objectives missing from ``given`` are inferred (as in
    :func:`reference_point`) from the shortest prefix that holds the first ``start`` points (the
    quasi-random start) and at least one feasible point, so the reference point is fixed once the
    start is done. An inferred point that followed the whole front would drift outwards with
    every extreme trial (DTLZ2's ``(2, 0, 0)`` corners), which both makes the hypervolume curve
    non-monotone and rewards the optimiser for chasing extremes.
    """
    end = max(start, 1)
    feasible = [i for i, p in enumerate(points) if is_feasible(p, objectives, constraints)]
    if feasible:
        end = max(end, feasible[0] + 1)
    return reference_point(points[:end], objectives, given, constraints)


def dominated_volume(Y: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume dominated by the rows of ``Y`` above ``ref`` (maximisation)."""
    Y = Y[(Y > ref).all(axis=1)]
    if len(Y) == 0:
        return 0.0
    Y = Y[non_dominated(Y)]
    if Y.shape[1] == 1:
        return float(Y[:, 0].max() - ref[0])
    if Y.shape[1] == 2:
        Y = Y[np.argsort(-Y[:, 0])]
        volume, height = 0.0, ref[1]
        for x, y in Y:
            if y > height:
                volume += (x - ref[0]) * (y - height)
                height = y
        return float(volume)
    Y = Y[np.argsort(-Y[:, -1])]
    volume = 0.0
    for i in range(len(Y)):
        bottom = Y[i + 1, -1] if i + 1 < len(Y) else ref[-1]
        if Y[i, -1] > bottom:
            volume += (Y[i, -1] - bottom) * dominated_volume(Y[: i + 1, :-1], ref[:-1])
    return float(volume)


def hypervolume(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    ref_point: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
) -> float:
    """Hypervolume dominated by the feasible points above the reference point (raw units in, >= 0 out).

    Without ``ref_point`` the point is inferred from the front (so the value then changes as the
    front grows); studies pass :func:`study_reference_point` instead.
    """
    ref = reference_point(points, objectives, ref_point, constraints)
    front = pareto_indices(points, objectives, constraints)
    if ref is None or not front:
        return 0.0
    ref_y = np.asarray([_sign(d) * ref[m] for m, d in objectives.items()], dtype=np.float64)
    return dominated_volume(_matrix([points[i] for i in front], objectives), ref_y)


def knee_index(
    points: Sequence[Values], objectives: Mapping[str, str], constraints: Sequence[Constraint] = ()
) -> int | None:
    """The front point closest to the utopia point after scaling each objective to [0, 1] over the front.

    Returns None when the front is empty.
    """
    front = pareto_indices(points, objectives, constraints)
    if not front:
        return None
    Y = _matrix([points[i] for i in front], objectives)
    low, high = Y.min(axis=0), Y.max(axis=0)
    scaled = (Y - low) / np.maximum(high - low, 1e-12)
    distance = ((1.0 - scaled) ** 2).sum(axis=-1)
    return front[int(distance.argmin())]


def box_volume(objectives: Mapping[str, str], ref: Mapping[str, float], ideal: Mapping[str, float]) -> float:
    """Volume of the box between a reference point and an ideal point (raw units; 0 when empty)."""
    volume = 1.0
    for metric, direction in objectives.items():
        side = ideal[metric] - ref[metric] if direction == "max" else ref[metric] - ideal[metric]
        volume *= max(0.0, side)
    return volume


def clipped_hypervolume(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    ref: Mapping[str, float],
    ideal: Mapping[str, float],
    constraints: Sequence[Constraint] = (),
) -> float:
    """Hypervolume of the feasible points inside the box ``[ref, ideal]`` (values past the ideal
    point count as the ideal), so it is at most :func:`box_volume` and never falls as points are added."""
    front = pareto_indices(points, objectives, constraints)
    if not front:
        return 0.0
    Y = _matrix([points[i] for i in front], objectives)
    top = np.asarray([_sign(d) * ideal[m] for m, d in objectives.items()], dtype=np.float64)
    ref_y = np.asarray([_sign(d) * ref[m] for m, d in objectives.items()], dtype=np.float64)
    return dominated_volume(np.minimum(Y, top), ref_y)
