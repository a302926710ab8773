"""Every optimiser passes the same contract checks; known objectives are computed, not modelled."""

import dataclasses

import pytest

from search.encoding import config_key
from search.errors import RegistryError
from search.optimizers import AcquisitionOptions, Observation, make_optimizer, optimizer_names, register_optimizer
from search.optimizers.quasi_random import SobolOptimizer
from search.space import parse_space

TOY = """
name: toy
objectives: {quality: max, cost: min}
parameters:
  layers: {type: layer_mask, size: 2}
  count: {type: int, low: 0, high: 3, default: 1}
  rank: {type: choice, values: [2, 4, 8], default: 4, when: "count > 0"}
  k: {type: fixed, value: 0}
optimizer: {name: sobol, init_trials: 4, nuts: {warmup: 16, samples: 8, thinning: 2}}
"""
SPACE = parse_space(TOY, "toy.yaml")
ALL = ["gp-nehvi", "optuna-nsga2", "optuna-tpe", "random", "saas-map", "saas-nehvi", "sobol"]
AX = ["ax-default", "ax-saasbo"]  # the same contract checks, with Ax-sized settings: tests/test_ax_optimizers.py
BO = ["gp-nehvi", "saas-map", "saas-nehvi"]
FAST = AcquisitionOptions(num_restarts=2, raw_samples=32, mc_samples=16, maxiter=8, extra={"initialization_strategy": "random"})


def cost(config: dict) -> float:
    return float(config["count"] * config["rank"] * sum(config["layers"]))


def quality(config: dict) -> float:
    return config["layers"][0] + 0.5 * config["count"] - 0.1 * config["rank"]


def build(name: str, seed: int = 3):
    return make_optimizer(name, SPACE, seed=seed, known_objectives={"cost": cost}, options=FAST)


def history(n: int, failed: bool = False) -> list[Observation]:
    configs = SobolOptimizer(SPACE, seed=11).suggest([], n)
    return [Observation(c, None if failed else {"quality": quality(c), "cost": cost(c)}) for c in configs]


def assert_valid(configs: list[dict], hist: list[Observation], n: int) -> None:
    keys = [config_key(SPACE, c) for c in configs]
    assert len(configs) == n and len(set(keys)) == n
    assert not set(keys) & {config_key(SPACE, o.config) for o in hist}
    for c in configs:
        assert set(c) == {"layers", "count", "rank", "k"} and c["k"] == 0
        assert len(c["layers"]) == 2 and set(c["layers"]) <= {0, 1}
        assert c["count"] in range(4) and c["rank"] in (2, 4, 8)
        assert c["count"] > 0 or c["rank"] == 4  # inactive rank holds its default


def test_registry_lists_all_and_refuses_duplicates():
    assert optimizer_names() == sorted(ALL + AX)
    with pytest.raises(RegistryError, match="'sobol' is already registered by SobolOptimizer"):
        register_optimizer("sobol")(SobolOptimizer)
    with pytest.raises(RegistryError, match="unknown optimizer 'cma'; use one of: ax-default, ax-saasbo, gp-nehvi, "):
        make_optimizer("cma", SPACE)


@pytest.mark.parametrize("name", ALL)
def test_empty_and_all_failed_history(name):
    assert_valid(build(name).suggest([], 3), [], 3)
    failed = history(3, failed=True)
    assert_valid(build(name).suggest(failed, 2), failed, 2)


@pytest.mark.parametrize("name", ["optuna-nsga2", "optuna-tpe", "random", "sobol"])
def test_cheap_optimisers_are_reproducible_and_avoid_observed(name):
    hist = history(6)
    first = build(name).suggest(hist, 3)
    assert_valid(first, hist, 3)
    assert build(name).suggest(hist, 3) == first
    assert build(name, seed=4).suggest(hist, 3) != first


def test_exhausted_space_returns_what_is_left():
    every = history(30)  # 4 masks x (1 + 3 x 3) settings = 40 configurations in all
    keys = {config_key(SPACE, o.config) for o in every}
    rest = build("random").suggest(every, 50)
    assert len(rest) == 40 - len(keys)


@pytest.mark.parametrize("name", BO)
def test_bo_suggestions_model_only_learned_metrics(name):
    from botorch.models import SingleTaskGP
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP

    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

    from search.optimizers.saas import NUTS_DEFAULTS
    from search.optimizers.saas.padded_model import PaddedSaasFullyBayesianSingleTaskGP

    hist = history(6)
    optimizer = build(name)
    first = optimizer.suggest(hist, 2)
    assert_valid(first, hist, 2)
    learned, known = optimizer.model.models
    expected = {"gp-nehvi": SingleTaskGP, "saas-map": EnsembleMapSaasSingleTaskGP,
                "saas-nehvi": PaddedSaasFullyBayesianSingleTaskGP if NUTS_DEFAULTS.nuts_engine == "botorch"
                else SaasFullyBayesianSingleTaskGP}[name]
    assert type(learned) is expected and isinstance(known, GenericDeterministicModel)
    # The cost "model" is the exact function (negated: cost is minimised) of the rounded point.
    config = {"layers": [1, 1], "count": 3, "rank": 8, "k": 0}
    x = optimizer.encoder.encode_many([config])
    assert known.posterior(x).mean.item() == -48.0
    if name == "gp-nehvi":
        assert build(name).suggest(hist, 2) == first


def test_constraints_and_reference_point_in_maximisation_form():
    import torch

    space = parse_space(
        TOY.replace("optimizer: {", 'constraints: ["cost <= 10", "loss >= 2"]\noptimizer: {ref_point: {cost: 20}, '),
        "toy.yaml",
    )
    optimizer = make_optimizer("gp-nehvi", space, known_objectives={"cost": cost})
    assert space.metrics == ["quality", "cost", "loss"] and optimizer.signs() == [1.0, -1.0, 1.0]
    Y = torch.tensor([[0.5, -12.0, 1.0], [1.5, -4.0, 3.0]], dtype=torch.float64)  # cost is stored negated
    c_cost, c_loss = optimizer.constraint_callables()
    assert c_cost(Y).tolist() == [2.0, -6.0] and c_loss(Y).tolist() == [1.0, -1.0]  # feasible when <= 0
    hist = [Observation(c, {"quality": quality(c), "loss": 2.5}) for c in SobolOptimizer(space, seed=1).suggest([], 6)]
    ref = optimizer.reference_point(hist)
    assert ref[1].item() == -20.0  # the YAML value, negated like the cost outputs
    from search.pareto import reference_point

    start = [{**o.values, "cost": cost(o.config)} for o in hist[:4]]  # init_trials: 4
    assert ref[0].item() == reference_point(start, space.objectives, {"cost": 20}, space.parsed_constraints)["quality"]


def test_inferred_reference_point_is_fixed_after_the_start():
    """Extreme later trials do not move the reference point (they did, and BO chased DTLZ2's corners)."""
    optimizer = make_optimizer("gp-nehvi", SPACE, known_objectives={"cost": cost})
    start = history(4)
    ref = optimizer.reference_point(start)
    extreme = {"layers": [1, 1], "count": 3, "rank": 8, "k": 0}
    later = start + [Observation(extreme, {"quality": 100.0, "cost": cost(extreme)})]
    assert optimizer.reference_point(later).tolist() == ref.tolist()
    # Known objectives are computed when a trial did not report them.
    assert optimizer.reference_point([Observation(o.config, {"quality": o.values["quality"]}) for o in start]).tolist() \
        == ref.tolist()


def test_saas_holds_continuous_dims_it_deems_irrelevant_at_an_incumbent():
    """On a problem where only x0 matters, x1 and x2 are copied from the front's knee, not optimised.

    Left free, L-BFGS drove such dimensions to the box's faces (DTLZ2: every g dimension at 0 or 1).
    """
    import random

    text = """
name: floats
objectives: {a: max, b: max}
parameters:
  x0: {type: float, low: 0.0, high: 1.0}
  x1: {type: float, low: 0.0, high: 1.0}
  x2: {type: float, low: 0.0, high: 1.0}
  n: {type: int, low: 0, high: 3}
optimizer: {name: saas-map, init_trials: 4}
"""
    space = parse_space(text, "floats.yaml")
    rng = random.Random(0)
    configs = [{"x0": rng.random(), "x1": rng.random(), "x2": rng.random(), "n": rng.randrange(4)} for _ in range(16)]
    hist = [Observation(c, {"a": c["x0"], "b": (1 - c["x0"]) ** 2}) for c in configs]
    optimizer = make_optimizer("saas-map", space, seed=0, options=FAST)
    picks = optimizer.suggest(hist, 2)
    assert optimizer.irrelevant_dims(optimizer.model) == [1, 2]  # x0 matters; n is discrete, never held
    from search.pareto import knee_index

    knee = configs[knee_index([o.values for o in hist], space.objectives)]
    for pick in picks:
        assert (pick["x1"], pick["x2"]) == (knee["x1"], knee["x2"])
    assert len({pick["x0"] for pick in picks}) == 2  # x0 is optimised
    # A dimension a known objective depends on is optimised even when no learned model uses it.
    storage_like = {"b": lambda c: (1 - c["x0"]) ** 2 + c["x2"]}
    with_cost = make_optimizer("saas-map", space, seed=0, options=FAST, known_objectives=storage_like)
    with_cost.suggest(hist, 1)
    assert with_cost.irrelevant_dims(with_cost.model) == [1]
    # The standard GP is the plain baseline: it holds nothing.
    gp = make_optimizer("gp-nehvi", space, seed=0, options=FAST)
    gp.suggest(hist, 1)
    assert gp.irrelevant_dims(gp.model) == []


def test_restart_reports_are_silenced_during_a_suggestion_and_other_warnings_pass():
    import warnings

    from botorch.exceptions.warnings import OptimizationWarning

    from search.optimizers.nehvi import _quiet_restarts

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _quiet_restarts():
            warnings.warn("Optimization failed within `scipy.optimize.minimize` with status 2", OptimizationWarning)
            warnings.warn("Optimization failed in `gen_candidates_scipy`", RuntimeWarning)
            warnings.warn("a model did not converge", RuntimeWarning)
        warnings.warn("Optimization failed outside a suggestion", RuntimeWarning)
    assert [str(w.message) for w in caught] == ["a model did not converge", "Optimization failed outside a suggestion"]


@pytest.mark.parametrize("name", [*ALL, *AX])
def test_pending_aware_batches_never_repeat_a_pending_or_finished_configuration(name):
    """A batch of 4 from 6 finished, then 2 more with those 4 pending: 12 distinct configurations."""
    hist = history(6)
    first = build(name).suggest(hist, 4)
    assert_valid(first, hist, 4)
    more = build(name).suggest(hist, 2, pending=first)
    assert_valid(more, hist, 2)
    keys = {config_key(SPACE, c) for c in [*first, *more]}
    assert len(keys) == 6 and not keys & {config_key(SPACE, o.config) for o in hist}
    assert build(name).suggest(hist, 2, pending=first) == more, "reproducible under the seed"


def test_saas_settings_come_from_the_space_over_each_name_s_defaults():
    """``optimizer.saas`` in the space sets the SAAS switches a user would want; unset ones keep the
    registered name's defaults; settings passed to the constructor win; a bad value names the file,
    the field and the allowed values."""
    from search.errors import SpaceError
    from search.optimizers.saas import MAP_DEFAULTS, NUTS_DEFAULTS, SaasSettings

    assert build("saas-nehvi").settings == NUTS_DEFAULTS and build("saas-map").settings == MAP_DEFAULTS
    assert (NUTS_DEFAULTS.fit, NUTS_DEFAULTS.design, NUTS_DEFAULTS.flag_screen) == ("nuts", "spread", True)
    assert (MAP_DEFAULTS.fit, MAP_DEFAULTS.design, MAP_DEFAULTS.flag_screen) == ("map", "sobol", False)
    chosen = SPACE.with_overrides(["optimizer.saas.fit=map", "optimizer.saas.flag_screen=false"])
    optimizer = make_optimizer("saas-nehvi", chosen, seed=0)
    assert (optimizer.settings.fit, optimizer.settings.design, optimizer.settings.flag_screen) == ("map", "spread", False)
    assert optimizer.use_map and optimizer.settings.warm_chains  # the unset switches keep saas-nehvi's
    assert make_optimizer("saas-map", SPACE.with_overrides(["optimizer.saas.design=spread"])).settings.design == "spread"
    given = SaasSettings(design="sobol")
    assert make_optimizer("saas-nehvi", chosen, settings=given).settings is given
    with pytest.raises(SpaceError) as info:
        parse_space(TOY.replace("optimizer: {", "optimizer: {saas: {fit: mcmc}, "), "toy.yaml")
    assert str(info.value) == "space toy.yaml: optimizer.saas.fit: input should be 'nuts' or 'map' (got 'mcmc')"
    with pytest.raises(SpaceError, match=r"optimizer\.saas\.screen: unknown key; allowed keys: fit, design, "
                                         r"flag_screen; did you mean 'flag_screen'\?"):
        SPACE.with_overrides(["optimizer.saas.screen=true"])
    with pytest.raises(ValueError, match=r"SaasSettings\.design='grid' is not allowed; use one of: spread, sobol"):
        SaasSettings(design="grid")


def test_saas_nehvi_with_the_map_fit_chosen_in_the_space_fits_the_map_ensemble():
    """``optimizer.saas.fit: map`` makes saas-nehvi fit saas-map's model: the same suggestions as saas-map
    given saas-nehvi's other defaults (the spread start, the layer screen)."""
    from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP

    from search.optimizers.saas import NUTS_DEFAULTS

    hist = history(6)
    chosen = make_optimizer("saas-nehvi", SPACE.with_overrides(["optimizer.saas.fit=map"]), seed=3,
                            known_objectives={"cost": cost}, options=FAST)
    picks = chosen.suggest(hist, 2)
    assert_valid(picks, hist, 2)
    assert type(chosen.model.models[0]) is EnsembleMapSaasSingleTaskGP
    same = make_optimizer("saas-map", SPACE, seed=3, known_objectives={"cost": cost}, options=FAST,
                          settings=dataclasses.replace(NUTS_DEFAULTS, fit="map"))
    same.name = "saas-nehvi"  # the name salts the suggestion seed
    assert same.suggest(hist, 2) == picks


def test_the_documented_saas_block_is_saas_nehvi_s_defaults():
    """docs/architecture.md's ``optimizer.saas`` example parses and spells out saas-nehvi's defaults."""
    import re
    from pathlib import Path

    from search.optimizers.saas import NUTS_DEFAULTS

    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = re.search(r"\(`optimizer.saas` in a space\).*?```yaml\n(.*?)```", text, re.S).group(1)
    space = parse_space(TOY.replace("optimizer: {name: sobol, init_trials: 4, nuts: {warmup: 16, samples: 8, "
                                    "thinning: 2}}\n", block), "architecture.md")
    assert space.optimizer.saas.fit == "nuts" and make_optimizer("saas-nehvi", space).settings == NUTS_DEFAULTS
    assert make_optimizer("saas-map", space).settings.design == "spread"  # what the block sets holds for both names
