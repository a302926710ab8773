"""Warm starts that learn from earlier users' trials: the same-user input and the rescaling."""

from __future__ import annotations

import math

import pytest
import torch

from search.encoding import config_key
from search.optimizers.base import Observation, make_optimizer
from search.optimizers.user_transfer import cohort_summary, on_current_scale, pool_by_config, pooled_front
from search.execution.per_user import optimize_tasks, warm_start_observations, warm_start_points
from search.space import parse_space

SPACE = parse_space("""
name: transfer
objectives: {quality: max, cost: min}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
  width: {type: int, low: 1, high: 4}
optimizer: {name: gp-nehvi, init_trials: 4, trials: 6, seed: 0, ref_point: {quality: 0.0, cost: 5.0}}
warm_start: {max_points: 2}
""", "transfer.yaml")


def key(config):
    """A configuration's identity in :data:`SPACE` (as the optimisers compare them)."""
    return config_key(SPACE, config)


def quality(x: float, width: int, centre: float, level: float) -> float:
    return level + 0.6 * (1.0 - (x - centre) ** 2 / 0.5) * (1.0 - 0.2 * (4 - width))


def observations(points, centre, level):
    return [Observation({"x": x, "width": w}, {"quality": quality(x, w, centre, level)}, {"quality": 1e-4})
            for x, w in points]


GRID = [(i / 11, w) for i in range(12) for w in (1, 4)]


def test_earlier_values_take_the_current_users_mean_and_spread():
    earlier = [observations([(0.1, 1), (0.5, 4), (0.9, 2)], 0.5, 0.7)]
    current = observations([(0.2, 3), (0.6, 4), (0.8, 1)], 0.5, 0.1)
    out = on_current_scale(earlier, current, ["quality"], key)
    mean = sum(o.values["quality"] for o in current) / 3
    sd = math.sqrt(sum((o.values["quality"] - mean) ** 2 for o in current) / 3)
    values = [o.values["quality"] for o in out]
    assert sum(values) / 3 == pytest.approx(mean)
    assert math.sqrt(sum((v - mean) ** 2 for v in values) / 3) == pytest.approx(sd)
    raw = [o.values["quality"] for o in earlier[0]]
    raw_sd = math.sqrt(sum((v - sum(raw) / 3) ** 2 for v in raw) / 3)
    assert out[0].variances["quality"] == pytest.approx(1e-4 * (sd / raw_sd) ** 2)
    assert [o.config for o in out] == [o.config for o in earlier[0]], "configurations are kept"
    # with fewer than three values of its own, the current user's spread is the earlier users' median
    two = on_current_scale(earlier, current[:2], ["quality"], key)
    assert max(o.values["quality"] for o in two) - min(o.values["quality"] for o in two) == pytest.approx(
        max(raw) - min(raw))


def test_a_user_of_the_same_shape_lands_on_the_current_users_values_from_the_configurations_both_ran():
    """The warm start's front points are configurations both users ran: the level difference is read there.

    Matching means instead would compare the earlier user's whole search with the current user's two
    near-front trials and put every earlier value too high.
    """
    points = [(i / 9, 1 + i % 4) for i in range(10)]
    earlier = [observations(points, 0.6, 0.4)]
    current = observations([points[5], points[6]], 0.6, 0.1)  # two of its configurations, rerun
    out = on_current_scale(earlier, current, ["quality"], key)
    assert [o.values["quality"] for o in out] == pytest.approx([quality(x, w, 0.6, 0.1) for x, w in points])
    assert [o.variances["quality"] for o in out] == pytest.approx([2e-4] * 10), "plus the shift's variance (1e-4 / 2 x 2)"
    means_matched = on_current_scale(earlier, current, ["quality"], key=lambda c: id(c))  # nothing shared
    assert min(o.values["quality"] - quality(x, w, 0.6, 0.1) for o, (x, w) in zip(means_matched, points)) > 0.05


def test_users_link_up_through_the_front_points_each_re_ran_and_noisier_differences_weigh_less():
    """User a shares nothing with the current user, but b re-ran a's front points: a is put on b's shifted level."""
    points = [(i / 9, 1 + i % 4) for i in range(10)]
    a = observations(points[:6], 0.6, 0.4)
    b = observations(points[4:6] + [(0.05, 1), (0.95, 4)], 0.6, 0.3)  # a's 5th and 6th configurations, re-run
    current = observations([(0.05, 1), (0.95, 4.0)], 0.6, 0.1)  # b's; 4.0 and 4 are one configuration
    out = on_current_scale([a, b], current, ["quality"], key)
    expected = [quality(x, w, 0.6, 0.1) for x, w in points[:6] + points[4:6] + [(0.05, 1), (0.95, 4)]]
    assert [o.values["quality"] for o in out] == pytest.approx(expected)
    assert out[0].variances["quality"] > 1e-4, "a shifted value carries its shift's uncertainty"
    # two shared configurations whose differences disagree: the one measured precisely counts most
    loud = [Observation({"x": 0.1, "width": 1}, {"quality": 0.5}, {"quality": 1e-6}),
            Observation({"x": 0.2, "width": 1}, {"quality": 0.5}, {"quality": 1.0})]
    mine = [Observation({"x": 0.1, "width": 1}, {"quality": 0.3}, {"quality": 1e-6}),
            Observation({"x": 0.2, "width": 1}, {"quality": 0.9}, {"quality": 1.0})]
    (first, _) = on_current_scale([loud], mine, ["quality"], key)
    assert first.values["quality"] == pytest.approx(0.3, abs=1e-4)


def model_error(prior, current, centre, level):
    """Mean absolute error of the fitted quality model's mean on a grid, for the current user."""
    optimizer = make_optimizer("gp-nehvi", SPACE, seed=0, known_objectives={"cost": lambda c: float(c["width"])},
                               prior=prior)
    assert optimizer.usable_prior() == [p for p in prior if p]
    optimizer.build_acquisition(current, seed=0)
    X = optimizer.encoder.encode_many([{"x": x, "width": w} for x, w in GRID])
    with torch.no_grad():
        mean = optimizer.model.models[0].posterior(X).mean.reshape(-1)
    truth = torch.tensor([quality(x, w, centre, level) for x, w in GRID], dtype=torch.float64)
    return float((mean - truth).abs().mean())


def test_a_like_earlier_user_at_another_level_teaches_the_model_what_the_current_user_has_not_tried():
    """Two trials of the current user say little; an earlier user of the same shape, 0.3 higher, says the rest."""
    current = observations([(0.15, 2), (0.85, 3)], 0.6, 0.1)
    earlier = [observations([(i / 9, 1 + i % 4) for i in range(10)], 0.6, 0.4)]
    alone, helped = model_error([], current, 0.6, 0.1), model_error(earlier, current, 0.6, 0.1)
    assert helped < 0.5 * alone, (helped, alone)


def test_the_model_takes_over_after_the_front_points_when_it_has_earlier_users():
    current = observations([(0.15, 2), (0.85, 3)], 0.6, 0.1)
    known = {"cost": lambda c: float(c["width"])}
    prior = [observations([(0.5, 1), (0.7, 4)], 0.6, 0.4)]
    cold = make_optimizer("gp-nehvi", SPACE, seed=0, known_objectives=known)
    warm = make_optimizer("gp-nehvi", SPACE, seed=0, known_objectives=known, prior=prior)
    assert cold.start_size() == 4 and warm.start_size() == 2, "the model right after the 2 front points"
    assert make_optimizer("random", SPACE, seed=0).learns_from_prior is False
    (pick,) = warm.suggest(current, 1)
    assert 0.0 <= pick["x"] <= 1.0 and warm.model is not None, "a model-based suggestion at the third trial"

    own = make_optimizer("gp-nehvi", SPACE.with_overrides(["warm_start.own_points=1"]), seed=0,
                         known_objectives=known, prior=prior)
    assert own.start_size() == 3, "2 front points and one of the user's own"
    (mine,) = own.suggest(current, 1)
    assert getattr(own, "model", None) is None, "the third trial is the user's own quasi-random point"
    (pick,) = own.suggest(current + observations([(mine["x"], mine["width"])], 0.6, 0.1), 1)
    assert own.model is not None, "a model-based suggestion at the fourth trial"


def test_with_one_front_point_the_model_suggests_the_second_trial_from_the_earlier_users_and_one_value():
    """One value of the user's own links the earlier users' rows to its level: enough for the model
    (the default start); without earlier users one value still gets a quasi-random point."""
    assert parse_space("name: s\nobjectives: {q: max}\nparameters: {x: {type: float, low: 0, high: 1}}",
                       "s.yaml").warm_start.start_trials() == 1
    known = {"cost": lambda c: float(c["width"])}
    one = SPACE.with_overrides(["warm_start.max_points=1"])
    prior = [observations([(i / 9, 1 + i % 4) for i in range(10)], 0.6, 0.4)]
    knee = observations([(6 / 9, 3)], 0.6, 0.1)  # the earlier user's front point, 0.3 lower for this user
    warm = make_optimizer("gp-nehvi", one, seed=0, known_objectives=known, prior=prior)
    assert warm.start_size() == 1
    (pick,) = warm.suggest(knee, 1)
    assert warm.model is not None, "a model-based suggestion at the second trial"
    X = warm.encoder.encode_many([{"x": x, "width": 4} for x in (0.1, 0.6)])
    truth = [quality(x, 4, 0.6, 0.1) for x in (0.1, 0.6)]
    with torch.no_grad():
        mean = warm.model.models[0].posterior(X).mean.reshape(-1).tolist()
    assert mean[1] - mean[0] > 0.5 * (truth[1] - truth[0]), ("the earlier user's shape", mean, truth)
    assert abs(mean[1] - truth[1]) < 0.05, ("on this user's level (the earlier user's is 0.3 higher)", mean, truth)
    cold = make_optimizer("gp-nehvi", one, seed=0, known_objectives=known)
    cold.suggest(knee, 1)
    assert getattr(cold, "model", None) is None, "without earlier users a model needs two values"


def test_per_user_warm_start_hands_the_earlier_users_pool_to_the_optimizer_within_a_budget(tmp_path):
    """Every earlier user counts: one group of rows on a common level, one row per configuration, capped."""
    users = {u: (lambda c, lvl=lvl: {"quality": quality(c["x"], c["width"], 0.6, lvl), "quality_se": 0.01,
                                     "cost": float(c["width"])})
             for u, lvl in (("a", 0.1), ("b", 0.3), ("c", 0.2))}
    space = SPACE.with_overrides(["warm_start.max_observations=6"]).with_optimizer(trials=4)
    cohort = optimize_tasks(space, users, study_name="t", study_dir=tmp_path, warm_start=True,
                            known_objectives={"cost": lambda c: float(c["width"])})
    assert all(len(s.completed()) == 4 for s in cohort.studies.values())
    a, b = cohort.studies["a"], cohort.studies["b"]
    (pool,) = warm_start_observations([a, b], 100, {"cost"})
    ran = [key(t.config) for t in a.trials + b.trials]
    assert sorted(key(o.config) for o in pool) == sorted(set(ran)) and len(set(ran)) < len(ran), \
        "b re-ran a's front points: one row each"
    # b shares as many configurations as a and is the more recent: a's values are put on b's level (0.2 higher)
    assert [o.values["quality"] for o in pool] == pytest.approx(
        [quality(o.config["x"], o.config["width"], 0.6, 0.3) for o in pool])
    assert all(o.variances["quality"] > 0 for o in pool)
    (capped,) = warm_start_observations([a, b], 3, {"cost"})
    front = warm_start_points([a, b], 1)
    assert len(capped) == 3 and capped[0].config == front[0], "the pool's knee leads, for the new user to link to"
    assert warm_start_observations([a, b], 0) == [] and warm_start_observations([], 6) == []


def test_saas_models_measure_the_space_dimensions_of_a_model_with_the_same_user_input():
    """The SAAS optimisers hold dimensions their models drop: with the extra input they still measure the space's."""
    known = {"cost": lambda c: float(c["width"])}
    current = observations([(0.15, 2), (0.85, 3), (0.5, 1)], 0.6, 0.1)
    optimizer = make_optimizer("saas-map", SPACE.with_overrides(["warm_start.max_points=2"]), seed=0,
                               known_objectives=known, prior=[observations([(i / 9, 1 + i % 4) for i in range(10)], 0.6, 0.4)])
    (pick,) = optimizer.suggest(current, 1)
    model = optimizer.model.models[0]
    assert model.train_inputs[0].shape[-1] == optimizer.encoder.d + 1
    assert all(0 <= i < optimizer.encoder.d for i in optimizer.irrelevant_dims(optimizer.model))
    assert pick not in [o.config for o in current]


def test_the_banner_says_what_the_warm_start_does():
    from search.commands.searching import warm_start_note

    assert warm_start_note(SPACE) == ""
    on = SPACE.with_overrides(["warm_start.enabled=true"])
    assert warm_start_note(on) == (", warm-started from the users before: up to 2 points of their common front "
                                   "first, all their trials in the gp-nehvi model, summarised in up to 48 rows")
    assert warm_start_note(on.with_optimizer(name="random")).endswith("common front first")
    assert warm_start_note(on.with_overrides(["warm_start.max_observations=0"])).endswith("common front first")
    assert warm_start_note(on.with_overrides(["warm_start.max_points=0"])) == (
        ", warm-started from the users before: the usual quasi-random start, all their trials in the "
        "gp-nehvi model, summarised in up to 48 rows")
    assert warm_start_note(on.with_overrides(["warm_start.max_points=1"])).startswith(
        ", warm-started from the users before: the knee of their common front first, all their trials")


def test_no_front_points_keeps_the_quasi_random_start_and_the_model_still_learns(tmp_path):
    known = {"cost": lambda c: float(c["width"])}
    space = SPACE.with_overrides(["warm_start.max_points=0"])
    prior = [observations([(0.5, 1), (0.7, 4)], 0.6, 0.4)]
    assert make_optimizer("gp-nehvi", space, seed=0, known_objectives=known, prior=prior).start_size() == 4
    users = {u: (lambda c, lvl=lvl: {"quality": quality(c["x"], c["width"], 0.6, lvl), "cost": float(c["width"])})
             for u, lvl in (("a", 0.1), ("b", 0.3))}
    space = space.with_optimizer(name="sobol", trials=3, init_trials=3)
    cold = optimize_tasks(space, users, study_name="c", study_dir=tmp_path, known_objectives=known)
    warm = optimize_tasks(space, users, study_name="w", study_dir=tmp_path, warm_start=True, known_objectives=known)
    assert [t.config for t in warm.studies["b"].trials] == [t.config for t in cold.studies["b"].trials], \
        "no front points: the second user's start is its own"


# --------------------------------------------------------------------------- the cohort's pool
POOL_OBJECTIVES = {"quality": "max", "cost": "min"}


def user_trials(points, centre, level):
    """A user's observations with the cost objective (the width) beside its quality."""
    return [Observation(o.config, {**o.values, "cost": float(o.config["width"])}, o.variances)
            for o in observations(points, centre, level)]


def test_the_common_front_comes_from_every_earlier_user_not_the_last_ones_knee():
    """The first user found the best configurations; the last two only re-ran one of them and tried poor ones."""
    best = [(0.6, 4), (0.6, 2), (0.6, 1)]
    first = user_trials(best + [(0.0, 1), (1.0, 4)], 0.6, 0.1)
    later = [user_trials([(0.6, 2), (0.05, 3), (0.95, 1)], 0.6, level) for level in (0.4, 0.2)]
    front = pooled_front([first, *later], ["quality"], key, POOL_OBJECTIVES)
    configs = [(r.observation.config["x"], r.observation.config["width"]) for r in front]
    assert set(configs) == set(best), "on one level, the poor configurations of the later users are dominated"
    assert configs[0] == (0.6, 2), "the knee first"
    shared = front[0]
    assert shared.users == (0, 1, 2), "a configuration three users ran is one row"
    # every user put on the level of the user sharing the most (ties: the most recent, level 0.2)
    assert shared.observation.values["quality"] == pytest.approx(quality(0.6, 2, 0.6, 0.2))
    assert front[1].observation.values["quality"] == pytest.approx(quality(0.6, 4, 0.6, 0.2))


def test_the_summary_stays_within_its_budget_however_many_users_and_keeps_the_front_and_every_user():
    rng = __import__("random").Random(0)
    knee = (0.6, 2)
    users = [user_trials([knee] + [(rng.random(), rng.randint(1, 4)) for _ in range(9)], 0.6, 0.01 * u)
             for u in range(20)]  # 20 users of 10 trials, each re-ran the same configuration
    rows = cohort_summary(users, ["quality"], key, POOL_OBJECTIVES, budget=48)
    assert len(rows) == 48 and len({key(o.config) for o in rows}) == 48
    front = pooled_front(users, ["quality"], key, POOL_OBJECTIVES)
    assert [key(o.config) for o in rows[: min(len(front), 24)]] == [key(r.observation.config) for r in front][:24]
    assert (key({"x": knee[0], "width": knee[1]}) in {key(o.config) for o in rows})
    origin = {key(o.config): u for u, trials in enumerate(users) for o in trials[1:]}
    assert {origin[key(o.config)] for o in rows if key(o.config) in origin} == set(range(20)), "every user is heard"
    assert cohort_summary(users, ["quality"], key, POOL_OBJECTIVES, budget=0) == []
    small = cohort_summary(users[:2], ["quality"], key, POOL_OBJECTIVES, budget=100)
    assert len(small) == 19, "two users of 10 with one configuration in common: 19 rows, nothing left out"


def test_a_configuration_several_users_ran_has_their_spread_as_noise():
    a = [Observation({"x": 0.5, "width": 1}, {"quality": 0.50, "cost": 1.0}, {"quality": 1e-4}),
         Observation({"x": 0.1, "width": 1}, {"quality": 0.30, "cost": 1.0}, {"quality": 1e-4})]
    b = [Observation({"x": 0.5, "width": 1}, {"quality": 0.60, "cost": 1.0}, {"quality": 1e-4}),
         Observation({"x": 0.9, "width": 1}, {"quality": 0.20, "cost": 1.0}, {"quality": 1e-4})]
    rows = pool_by_config([a, b], ["quality"], key)
    shared = rows[key({"x": 0.5, "width": 1})]
    assert shared.users == (0, 1) and shared.observation.values["quality"] == pytest.approx(0.55)
    assert shared.observation.variances["quality"] == pytest.approx((1e-4 + 0.005) / 2), "(noise + spread) / users"
    assert rows[key({"x": 0.1, "width": 1})].observation.variances["quality"] == pytest.approx(1e-4)
