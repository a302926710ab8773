"""Ax as a peer: ``ax-default`` and ``ax-saasbo`` pass the optimiser contract, on the real Ax.

The space, helpers and contract checks are those of ``tests/test_optimizers.py``; NUTS is cut to
a few steps (``optimizer.nuts``) so a SAAS suggestion takes seconds.
"""

import pytest
from test_optimizers import FAST, TOY, assert_valid, cost, history, quality

from search.optimizers import make_optimizer, optimizer_names
from search.optimizers.ax_optimizers import AxSpace, _quiet_ax, metric_names, optimization_strings
from search.optimizers.base import Observation
from search.space import parse_space

AX = ["ax-default", "ax-saasbo"]
SPACE = parse_space(TOY.replace("warmup: 16, samples: 8, thinning: 2", "warmup: 8, samples: 4, thinning: 2"), "toy.yaml")


def build(name: str, seed: int = 3, space=SPACE):
    return make_optimizer(name, space, seed=seed, known_objectives={"cost": cost}, options=FAST)


def test_registered_beside_ours():
    assert set(AX) <= set(optimizer_names())
    assert {"saas-nehvi", "gp-nehvi", "sobol"} <= set(optimizer_names())


@pytest.mark.parametrize("name", AX)
def test_empty_and_all_failed_history(name):
    assert_valid(build(name).suggest([], 3), [], 3)
    failed = history(5, failed=True)  # more failures than init_trials: still quasi-random, no model
    assert_valid(build(name).suggest(failed, 2), failed, 2)


def test_sobol_start_continues_one_sequence_across_calls():
    """Stateless calls draw the Sobol points an uninterrupted study would (position = history length)."""
    first = build("ax-default").suggest([], 3)
    after_one = build("ax-default").suggest([Observation(first[0], {"quality": 1.0, "cost": 1.0})], 2)
    assert after_one == first[1:]
    assert build("ax-default", seed=4).suggest([], 3) != first


@pytest.mark.parametrize("name, model", [("ax-default", "MBM defaults"), ("ax-saasbo", "WarpedSAAS")])
def test_model_based_suggestions_are_valid_reproducible_and_use_the_model(name, model):
    hist = history(6)
    optimizer = build(name)
    first = optimizer.suggest(hist, 2)
    assert_valid(first, hist, 2)
    table = optimizer.client.summarize()
    assert table["generation_node"].tolist()[6:] == ["MBM", "MBM"]
    run = optimizer.client._experiment.trials[6].generator_runs[0]
    assert run.gen_metadata["models_used"] == [{"m_quality": model, "m_cost": model}]  # the known cost is modelled
    assert build(name).suggest(hist, 2) == first


def test_saasbo_takes_the_space_nuts_settings():
    mll = build("ax-saasbo").model_config(seed=7).mll_options
    assert (mll["warmup_steps"], mll["num_samples"], mll["thinning"], mll["seed"]) == (8, 4, 2, 7)


def test_client_holds_the_history_failed_and_unusable_as_failed():
    hist = history(6)
    hist[2] = Observation(hist[2].config, None)
    hist[3] = Observation(hist[3].config, {"quality": float("nan")})
    with _quiet_ax():
        client = build("ax-default").build_client(hist, seed=1)
    table = client.summarize()
    assert table["trial_status"].tolist() == ["COMPLETED"] * 2 + ["FAILED"] * 2 + ["COMPLETED"] * 2
    # The known cost is attached as data, computed: the observations did not report it.
    assert table["m_cost"].tolist()[:2] == [cost(o.config) for o in hist[:2]]
    assert table["m_quality"].tolist()[:2] == [o.values["quality"] for o in hist[:2]]


def test_reference_point_becomes_objective_thresholds():
    space = parse_space(TOY.replace("optimizer: {", "optimizer: {ref_point: {quality: 0.5, cost: 20}, "), "toy.yaml")
    goals = optimization_strings(space, build("ax-default", space=space).reference_point(history(4)))
    assert goals.objective == "m_quality, -m_cost"
    assert goals.constraints == ["m_quality >= 0.5", "m_cost <= 20.0"]
    # Inferred from the start when not given, as our optimisers do.
    inferred = build("gp-nehvi").reference_point(history(6))
    ours = build("ax-default").reference_point(history(6))
    assert [ours["quality"], -ours["cost"]] == inferred.tolist()


def test_constraints_on_objectives_tighten_thresholds_or_go_on_a_copy():
    text = TOY.replace("optimizer: {", 'constraints: ["cost <= 10", "quality <= 3", "loss >= 2"]\noptimizer: {')
    space = parse_space(text, "toy.yaml")
    goals = optimization_strings(space, {"quality": 0.5, "cost": 20.0})
    assert goals.constraints == ["m_quality_c1 <= 3.0", "m_loss >= 2.0", "m_quality >= 0.5", "m_cost <= 10.0"]
    assert goals.sources == {"m_quality": "quality", "m_cost": "cost", "m_loss": "loss", "m_quality_c1": "quality"}
    hist = [Observation(o.config, {**o.values, "loss": 2.5}) for o in history(6)]
    picks = make_optimizer("ax-default", space, seed=0, known_objectives={"cost": cost}).suggest(hist, 2)
    assert len(picks) == 2


def test_metric_names_are_safe_for_ax_expressions():
    space = parse_space("name: s\nobjectives: {E: max, a-b: min, a_b: min}\nparameters:\n  x: {type: int, low: 0, high: 3}\n")
    assert metric_names(space) == {"E": "m_E", "a-b": "m_a_b", "a_b": "m_a_b_2"}


def test_parameters_map_to_ax_and_back():
    text = """
name: kinds
objectives: {a: max}
parameters:
  mask: {type: layer_mask, size: 3}
  n: {type: int, low: 1, high: 64, log: true}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  rank: {type: choice, values: [16, 4, 8.5]}
  flag: {type: choice, values: [true, "auto", 0]}
  tool: {type: choice, values: [bm25, dense], when: "n > 1"}
  pinned: {type: choice, values: [x]}
  fixed: {type: fixed, value: 3}
"""
    space = parse_space(text, "kinds.yaml")
    mapping = AxSpace(space)
    kinds = {p.ax_name: (type(p.config).__name__, getattr(p.config, "is_ordered", None)) for p in mapping.params}
    assert kinds == {
        "mask[0]": ("ChoiceParameterConfig", True), "mask[1]": ("ChoiceParameterConfig", True),
        "mask[2]": ("ChoiceParameterConfig", True), "n": ("RangeParameterConfig", None),
        "lr": ("RangeParameterConfig", None), "rank": ("ChoiceParameterConfig", True),
        "flag": ("ChoiceParameterConfig", False), "tool": ("ChoiceParameterConfig", False),
    }
    assert mapping.params[3].config.scaling == "log" and mapping.params[5].config.values == [4.0, 8.5, 16.0]
    config = {"mask": [1, 0, 1], "n": 8, "lr": 0.001, "rank": 16, "flag": True, "tool": "dense", "pinned": "x", "fixed": 3}
    ax = mapping.to_ax(config)
    assert ax["flag"] == "True" and ax["rank"] == 16.0 and ax["mask[2]"] == 1
    back = mapping.from_ax(ax)
    assert back == config and type(back["rank"]) is int and back["flag"] is True
    # An inactive parameter comes back at its default (canonical), whatever Ax proposed.
    assert mapping.from_ax({**ax, "n": 1})["tool"] == "bm25"
    assert mapping.to_ax({**config, "flag": 0})["flag"] == "0"  # 0 == False, but the int 0 is a value of its own
    assert mapping.to_ax({**config, "flag": 1})["flag"] == "True"  # no int 1: the equal value True
    with pytest.raises(ValueError, match=r"parameter rank: value 5 is not one of \[4, 8.5, 16\]; the history"):
        mapping.to_ax({**config, "rank": 5})


def test_optimize_end_to_end_resumes_and_stays_quiet(tmp_path, capfd):
    """A toy 2-objective study with ax-default through ``search.api.optimize``; resumed, it matches."""
    from search.api import optimize

    def objective(config):
        return {"quality": quality(config)}

    def run(trials, name):
        return optimize(SPACE, objective, optimizer="ax-default", trials=trials, init_trials=3, seed=5,
                        study_name=name, study_dir=tmp_path, known_objectives={"cost": cost}, options=FAST)

    study = run(7, "whole")
    configs = [t.config for t in study.trials]
    assert len(study.finished()) == 7 and len({str(c) for c in configs}) == 7
    assert study.hypervolume() > 0
    run(5, "split")
    resumed = run(7, "split")
    assert [t.config for t in resumed.trials] == configs
    out, err = capfd.readouterr()
    assert "ax." not in out + err and "[INFO" not in out + err
