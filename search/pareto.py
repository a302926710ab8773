"""Pareto front, hypervolume and knee point of a set of trial values, with BoTorch utilities.

Values are dicts of raw metrics (as reported); ``objectives`` maps metric -> ``max``/``min``.
``None`` (a failed trial), a missing or non-finite objective, and a violated constraint all
exclude a point from the front. Internally everything is maximised (``min`` objectives negated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from search.space import Constraint, finite

if TYPE_CHECKING:
    import torch

Values = Mapping[str, float] | None


def _sign(direction: str) -> float:
    return -1.0 if direction == "min" else 1.0


def is_feasible(values: Values, objectives: Mapping[str, str], constraints: Sequence[Constraint] = ()) -> bool:
    """True when every objective is finite and every constraint holds."""
    if values is None or not all(finite(values.get(m)) for m in objectives):
        return False
    return all(finite(values.get(c.metric)) and c.satisfied(float(values[c.metric])) for c in constraints)


def _matrix(points: Sequence[Values], objectives: Mapping[str, str]) -> "torch.Tensor":
    import torch

    rows = [[_sign(d) * float(p[m]) for m, d in objectives.items()] for p in points]  # type: ignore[index]
    return torch.tensor(rows, dtype=torch.float64).reshape(len(points), len(objectives))


def pareto_indices(
    points: Sequence[Values], objectives: Mapping[str, str], constraints: Sequence[Constraint] = ()
) -> list[int]:
    """Indices of the feasible, non-dominated points (BoTorch ``is_non_dominated``)."""
    from botorch.utils.multi_objective.pareto import is_non_dominated

    ok = [i for i, p in enumerate(points) if is_feasible(p, objectives, constraints)]
    if not ok:
        return []
    mask = is_non_dominated(_matrix([points[i] for i in ok], objectives), deduplicate=False)
    return [i for i, keep in zip(ok, mask.tolist()) if keep]


def reference_point(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    given: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
) -> dict[str, float] | None:
    """The reference point in raw units: ``given`` values where present, else inferred.

    Inference uses BoTorch's ``infer_reference_point`` on the feasible front. Returns None when
    there is no feasible point and nothing is given for some objective.
    """
    given = dict(given or {})
    if all(m in given for m in objectives):
        return {m: float(given[m]) for m in objectives}
    front = pareto_indices(points, objectives, constraints)
    if not front:
        return None
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

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


def hypervolume(
    points: Sequence[Values],
    objectives: Mapping[str, str],
    ref_point: Mapping[str, float] | None = None,
    constraints: Sequence[Constraint] = (),
) -> float:
    """Hypervolume dominated by the feasible points above the reference point (raw units in, >= 0 out).

    Uses BoTorch's ``DominatedPartitioning``. Without ``ref_point`` the point is inferred from
    the front (so the value then changes as the front grows); studies pass
    :func:`study_reference_point` instead.
    """
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import (
        DominatedPartitioning,
    )

    ref = reference_point(points, objectives, ref_point, constraints)
    front = pareto_indices(points, objectives, constraints)
    if ref is None or not front:
        return 0.0
    ref_t = torch.tensor([_sign(d) * ref[m] for m, d in objectives.items()], dtype=torch.float64)
    Y = _matrix([points[i] for i in front], objectives)
    Y = Y[(Y > ref_t).all(dim=-1)]
    if Y.shape[0] == 0:
        return 0.0
    return float(DominatedPartitioning(ref_point=ref_t, Y=Y).compute_hypervolume())


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
    low, high = Y.min(dim=0).values, Y.max(dim=0).values
    scaled = (Y - low) / (high - low).clamp_min(1e-12)
    distance = (1.0 - scaled).pow(2).sum(dim=-1)
    return front[int(distance.argmin())]
