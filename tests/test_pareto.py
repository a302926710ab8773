"""The front, the hypervolume and the reference point in NumPy, checked against BoTorch and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.pareto import dominated_volume, hypervolume, infer_reference_point, knee_index, non_dominated, pareto_indices

OBJ = {"a": "max", "b": "min", "c": "max"}
coordinate = st.integers(0, 6).map(float)  # a coarse grid: ties and duplicates happen often
point_sets = st.lists(st.tuples(coordinate, coordinate, coordinate), min_size=1, max_size=12)


def brute_force_front(Y: np.ndarray) -> set[int]:
    return {i for i in range(len(Y))
            if not any((Y[j] >= Y[i]).all() and (Y[j] > Y[i]).any() for j in range(len(Y)))}


def brute_force_volume(Y: np.ndarray, ref: np.ndarray) -> float:
    """Count the unit cells of the integer grid that some point dominates (coordinates are integers)."""
    Y = Y[(Y > ref).all(axis=1)]
    if len(Y) == 0:
        return 0.0
    top = Y.max(axis=0)
    cells = itertools.product(*(np.arange(r, t) for r, t in zip(ref, top)))
    return float(sum(any((y >= np.asarray(cell) + 1).all() for y in Y) for cell in cells))


@settings(max_examples=150, deadline=None)
@given(point_sets)
def test_front_is_the_brute_force_front(rows):
    Y = np.asarray(rows)
    assert set(np.flatnonzero(non_dominated(Y)).tolist()) == brute_force_front(Y)


@settings(max_examples=150, deadline=None)
@given(point_sets, st.tuples(st.integers(-1, 2), st.integers(-1, 2), st.integers(-1, 2)))
def test_hypervolume_is_the_brute_force_volume(rows, ref):
    Y, r = np.asarray(rows), np.asarray(ref, dtype=float)
    assert dominated_volume(Y, r) == pytest.approx(brute_force_volume(Y, r))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*(st.floats(-5, 5, allow_nan=False),) * 3), min_size=1, max_size=20))
def test_agrees_with_botorch(rows):
    import torch
    from botorch.utils.multi_objective.box_decompositions.dominated import DominatedPartitioning
    from botorch.utils.multi_objective.hypervolume import infer_reference_point as botorch_ref
    from botorch.utils.multi_objective.pareto import is_non_dominated

    Y = np.asarray(rows)
    T = torch.tensor(Y, dtype=torch.float64)
    assert non_dominated(Y).tolist() == is_non_dominated(T, deduplicate=False).tolist()
    front = Y[non_dominated(Y)]
    ref = infer_reference_point(front)
    assert ref == pytest.approx(botorch_ref(torch.tensor(front)).numpy())
    theirs = DominatedPartitioning(ref_point=torch.tensor(ref), Y=torch.tensor(front)).compute_hypervolume()
    assert dominated_volume(Y, ref) == pytest.approx(float(theirs), rel=1e-9, abs=1e-12)


def test_raw_values_directions_constraints_and_knee():
    points = [{"a": 1.0, "b": 5.0, "c": 0.0}, {"a": 2.0, "b": 5.0, "c": 0.0}, {"a": 0.0, "b": 1.0, "c": 1.0},
              None, {"a": float("nan"), "b": 0.0, "c": 9.0}]
    assert pareto_indices(points, OBJ) == [1, 2]
    ref = {"a": 0.0, "b": 6.0, "c": -1.0}
    # in the maximised space: (2, -5, 0) and (0, -1, 1) against (0, -6, -1); the second is not above the
    # reference in a, so the volume is the first's box: 2 x 1 x 1
    assert hypervolume(points, OBJ, ref) == pytest.approx(2.0)
    assert knee_index(points, OBJ) in (1, 2)
    assert hypervolume([None], OBJ, ref) == 0.0 and knee_index([None], OBJ) is None
