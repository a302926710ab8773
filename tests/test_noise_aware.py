"""Noise-aware surrogates: trials' standard errors enter the GP fits as observed noise (train_Yvar).

A synthetic problem whose noise is known: ``q(x) = sin(2 pi x)`` observed at 13 points with a
standard error of 0.02, except one point observed 1.0 too high with a standard error of 1.0 (a
trial scored on very few queries). A surrogate that knows the noise discounts that point; one
that infers a single noise level for all trials is pulled towards it.
"""

from __future__ import annotations

import math

import pytest

from search.optimizers import make_optimizer
from search.optimizers.base import Observation
from search.space import parse_space

SPACE = """
name: noisy
objectives: {q: max, r: max}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
optimizer: {name: gp-nehvi, init_trials: 2, trials: 20, seed: 0, nuts: {warmup: 32, samples: 16, thinning: 2}}
"""
OUTLIER_X = 0.5


def truth(x: float) -> float:
    return math.sin(2 * math.pi * x)


def history(with_variances: bool) -> list[Observation]:
    out = []
    for i in range(13):
        x = i / 12
        q, se = truth(x), 0.02
        if x == OUTLIER_X:
            q, se = q + 1.0, 1.0
        variances = {"q": se**2, "r": 0.02**2} if with_variances else None
        out.append(Observation({"x": x}, {"q": q, "r": 1.0 - x}, variances))
    return out


def posterior_mean(optimizer, x: float) -> float:
    import torch

    with torch.no_grad():
        return float(optimizer.model.models[0].posterior(torch.tensor([[x]], dtype=torch.float64)).mean.mean())


@pytest.mark.parametrize("name", ["gp-nehvi", "saas-map", pytest.param("saas-nehvi", marks=pytest.mark.slow)])
def test_observed_noise_discounts_a_noisy_trial(name):
    space = parse_space(SPACE, "noisy.yaml")
    errors = {}
    for aware in (True, False):
        optimizer = make_optimizer(name, space, seed=0)
        optimizer.build_acquisition(history(aware), seed=0)
        errors[aware] = abs(posterior_mean(optimizer, OUTLIER_X) - truth(OUTLIER_X))
    print(f"\n{name}: posterior mean's error at the noisy trial: {errors[True]:.3f} with its noise, "
          f"{errors[False]:.3f} with the noise inferred")
    assert errors[True] < 0.25, f"{name}: the noise-aware surrogate is pulled {errors[True]:.2f} by the noisy trial"
    assert errors[True] < errors[False], f"{name}: knowing the noise did not help ({errors})"


def test_variances_need_every_observation_and_are_floored():
    space = parse_space(SPACE, "noisy.yaml")
    optimizer = make_optimizer("gp-nehvi", space, seed=0)
    obs = history(True)
    yvar = optimizer.training_variances(obs, "q")
    assert yvar.shape == (13, 1) and float(yvar.max()) == pytest.approx(1.0)
    assert optimizer.training_variances(obs[:-1] + [Observation({"x": 1.0}, {"q": 0.0, "r": 0.0})], "q") is None
    zero = [Observation(o.config, o.values, {"q": 0.0, "r": 0.0}) for o in obs]
    assert float(optimizer.training_variances(zero, "q").min()) > 0


def test_study_observations_carry_the_trials_squared_standard_errors(tmp_path):
    from search.optimizers.history import observations
    from search.study.study import Study

    space = parse_space(SPACE, "noisy.yaml")
    study = Study.create("noisy", tmp_path, space)
    trial = study.add_trial({"x": 0.25})
    study.complete_trial(trial.number, {"q": 1.0, "q_se": 0.1, "r": 0.5, "r_se": 0.2})
    (obs,) = observations(study.trials, study.space)
    assert obs.variances == pytest.approx({"q": 0.01, "r": 0.04})


FAILING = """
name: failing
objectives: {q: max, r: max}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
optimizer: {name: gp-nehvi, init_trials: 2, trials: 20, seed: 0}
"""


@pytest.mark.parametrize("name", ["gp-nehvi", "saas-map"])
def test_repeated_failures_steer_the_search_away(name):
    """Both objectives rise towards x = 1, but every trial from x = 0.8 on has failed: with failures
    imputed at the worst value seen, the next suggestions stay below the failing region; with
    failures only skipped, the surrogate extrapolates the rise into it."""
    from search.optimizers.base import AcquisitionOptions

    good = [Observation({"x": x}, {"q": x, "r": x * x}) for x in (0.0, 0.1, 0.2, 0.3, 0.45, 0.6, 0.7)]
    failed = [Observation({"x": x}, None, failure=True) for x in (0.8, 0.85, 0.9, 0.95, 1.0)]
    space = parse_space(FAILING, "failing.yaml")
    picks = {}
    for learn in (True, False):
        optimizer = make_optimizer(name, space, seed=0, options=AcquisitionOptions(num_restarts=4, raw_samples=64))
        optimizer.learn_from_failures = learn
        picks[learn] = [c["x"] for c in optimizer.suggest(good + failed, 3)]
    print(f"\n{name}: suggestions {picks[True]} learning from failures, {picks[False]} skipping them")
    inside = {learn: sum(x > 0.8 for x in xs) for learn, xs in picks.items()}
    assert inside[True] == 0, f"{name}: suggested {picks[True]} inside the failing region"
    assert inside[True] < inside[False]
