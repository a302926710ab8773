"""The discrete local search of the SAAS optimisers' acquisition, and their spread start."""

from __future__ import annotations

import dataclasses

import torch

from search.encoding import Encoder, config_key
from search.optimizers import AcquisitionOptions, Observation, make_optimizer
from search.optimizers.saas.local_search import Scorer, grid_moves, hill_climb, neighbours, random_rows
from search.space import parse_space

TEXT = """
name: grid
objectives: {q: max, cost: min}
parameters:
  layers: {type: layer_mask, size: 8}
  count: {type: int, low: 0, high: 32, default: 0}
  rank: {type: choice, values: [4, 8, 16], default: 8, when: "count > 0"}
  retriever: {type: choice, values: [bm25, dense, recency], default: bm25}
optimizer: {init_trials: 6, nuts: {warmup: 16, samples: 8, thinning: 2}}
"""
SPACE = parse_space(TEXT, "grid.yaml")
FAST = AcquisitionOptions(num_restarts=2, raw_samples=32, mc_samples=16, maxiter=8)


def test_moves_are_single_changes_with_doubling_steps_for_ordered_dimensions():
    grid = tuple(i / 32 for i in range(33))
    assert sorted(grid_moves(grid, "int", grid[10])) == [grid[i] for i in (2, 6, 8, 9, 11, 12, 14, 18, 26)]
    assert grid_moves((0.0, 1.0), "binary", 1.0) == [0.0]
    assert grid_moves((0.0, 0.5, 1.0), "categorical", 0.5) == [0.0, 1.0]


def test_neighbours_are_canonical_and_distinct():
    encoder = Encoder(SPACE)
    config = {"layers": [1, 0, 0, 0, 0, 0, 0, 1], "count": 0, "rank": 8, "retriever": "dense"}
    row = tuple(encoder.encode(config))
    hood = neighbours(encoder, row)
    decoded = [encoder.decode(r) for r in hood]
    assert len({config_key(SPACE, c) for c in decoded}) == len(hood)
    assert all(c["rank"] == 8 for c in decoded if c["count"] == 0)  # count 0: rank is inactive, no rank moves
    assert sum(1 for c in decoded if c["layers"] != config["layers"]) == 8  # one flag flipped each
    frozen = [i for i, dim in enumerate(encoder.dims) if dim.param == "layers"]
    assert all(encoder.decode(r)["layers"] == config["layers"] for r in neighbours(encoder, row, frozen))


def test_random_rows_spread_the_number_of_flags_on():
    encoder = Encoder(SPACE)
    rows = random_rows(encoder, 200, torch.Generator().manual_seed(0), {})
    on = [sum(encoder.decode(r)["layers"]) for r in rows]
    assert min(on) == 0 and max(on) == 8 and len(set(on)) == 9


def test_hill_climb_reaches_the_maximum_of_a_separable_score():
    encoder = Encoder(SPACE)
    target = {"layers": [0, 1, 1, 0, 0, 0, 1, 0], "count": 23, "rank": 16, "retriever": "recency"}
    goal = torch.tensor(encoder.encode(target), dtype=torch.float64)

    def acqf(X: torch.Tensor) -> torch.Tensor:
        return -(X.squeeze(1) - goal).abs().sum(-1)

    scorer = Scorer(acqf, batch_limit=64)
    start = tuple(encoder.encode({"layers": [1] * 8, "count": 1, "rank": 4, "retriever": "bm25"}))
    hill_climb(scorer, [start], lambda r: neighbours(encoder, r), max_steps=32)
    best = max(scorer.values, key=scorer.values.get)
    assert encoder.decode(best) == target
    assert len(scorer.values) < 400  # a few dozen points per step, not the whole grid (8448 points)


def _cost(config: dict) -> float:
    return float(config["count"] * config["rank"] * sum(config["layers"]))


def _quick_saas(**kwargs):
    """A SAAS optimiser (so: the local acquisition search) on gp-nehvi's quick MAP GP fit, for speed."""
    from search.optimizers.gp import GPNEHVI
    from search.optimizers.saas import SaasMAP

    class QuickSaas(SaasMAP):
        fit_model = GPNEHVI.fit_model

    return QuickSaas(SPACE, known_objectives={"cost": _cost}, options=FAST, **kwargs)


def _history(n: int = 10) -> list[Observation]:
    from search.optimizers.quasi_random import SobolOptimizer

    configs = SobolOptimizer(SPACE, seed=1).suggest([], n)
    return [Observation(c, {"q": c["layers"][2] + 0.02 * c["count"]}) for c in configs]


def test_local_search_suggests_new_reproducible_configurations():
    hist = _history()
    picks = _quick_saas(seed=0).suggest(hist, 3)
    keys = {config_key(SPACE, c) for c in picks}
    assert len(keys) == 3 and not keys & {config_key(SPACE, o.config) for o in hist}
    assert _quick_saas(seed=0).suggest(hist, 3) == picks


def test_local_search_beats_many_more_random_points():
    """From 32 random starts and the front, the climb ends above the best of 1024 random grid points."""
    hist = _history()
    optimizer = _quick_saas(seed=0)
    acqf = optimizer.build_acquisition(hist, seed=3)
    best = optimizer._optimize_one(acqf, {}, set(), seed=3)
    scorer = Scorer(acqf)
    found = scorer([tuple(best.tolist())])[0]
    many = max(scorer(random_rows(optimizer.encoder, 1024, torch.Generator().manual_seed(9), {})))
    assert found >= many


def test_spread_start_covers_storage_and_resumes():
    """The spread start puts its points in distinct storage strata and continues from any history."""
    from search.optimizers.saas import MAP_DEFAULTS
    from search.optimizers.saas.start_design import design_pool, van_der_corput

    spread = dataclasses.replace(MAP_DEFAULTS, design="spread")
    optimizer = make_optimizer("saas-map", SPACE, seed=0, known_objectives={"cost": _cost}, settings=spread)
    start = optimizer.suggest([], 6)
    assert len({config_key(SPACE, c) for c in start}) == 6
    pool = design_pool(optimizer, optimizer.start_size())
    keys = [config_key(SPACE, c) for c in pool.configs]
    assert sorted(int(pool.strata[keys.index(config_key(SPACE, c))]) for c in start) == list(range(6))
    # One at a time from a growing history: the same start (a function of the history alone).
    hist: list[Observation] = []
    fresh = make_optimizer("saas-map", SPACE, seed=0, known_objectives={"cost": _cost}, settings=spread)
    for _ in range(6):
        (config,) = fresh.suggest(hist, 1)
        hist.append(Observation(config, {"q": 0.0}))
    assert [o.config for o in hist] == start
    assert van_der_corput(3) == 0.75
