"""Space YAML parsing: bundled spaces, overrides, and the wording of each error."""

from pathlib import Path

import pytest

from search.results.config_view import describe
from search.errors import SearchError, SpaceError
from search.optimizers import check_optimizer
from search.space import load_space, parse_space

TOY = """
name: toy
objectives: {quality: max, cost: min}
parameters:
  layers: {type: layer_mask, default: "0,2"}
  count: {type: int, low: 0, high: 3, default: 1}
  rank: {type: choice, values: [2, 4, 8], default: 4, when: "count > 0"}
  k: {type: fixed, value: 0}
optimizer: {name: sobol}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_bundled_spaces_parse_with_defaults():
    milp = load_space("milp")
    assert milp.source == "milp.yaml" and milp.optimizer.name == "saas-nehvi"
    assert milp.objectives == {"rougeL": "max", "persona_f1": "max", "storage_bytes": "min"}
    assert milp.training.max_steps == 8 and milp.training.lr == 1e-2 and milp.data.users == 2 and milp.model.targets[0] == "gate_proj"
    assert load_space("tiny.yaml").model.name == "tiny"
    paper = load_space("milp-paper").bind(30)
    assert paper.optimizer.init_trials == 100
    assert paper.parameters["lora.rank"].values == [8, 16, 32, 64, 96]
    assert paper.defaults() == {
        "lora.layers": [1] * 30, "lora.count": 1, "lora.rank": 8, "rag.k": 0, "rag.retriever": "bm25",
        "perpcs.top_k": 0,
    }


def test_existing_path_wins_and_defaults_expand_index_lists(tmp_path):
    path = tmp_path / "milp.yaml"
    path.write_text(TOY)
    space = load_space(str(path)).bind(4)
    assert space.name == "toy"
    assert space.defaults() == {"layers": [1, 0, 1, 0], "count": 1, "rank": 4, "k": 0}
    assert space.is_active("rank", {"count": 1}) and not space.is_active("rank", {"count": 0})


def test_overrides_pin_parameters_and_change_settings():
    space = load_space("milp").bind(4)
    new = space.with_overrides(
        ["lora.rank=16", "lora.layers=0,1", "training.epochs=2", "data.users=4", "optimizer.trials=10",
         "model.name=tiny", "optimizer.ref_point.rougeL=0.1"]
    )
    assert new.defaults()["lora.layers"] == [1, 1, 0, 0] and new.defaults()["lora.rank"] == 16
    assert (new.training.epochs, new.data.users, new.optimizer.trials, new.model.name) == (2, 4, 10, "tiny")
    assert new.optimizer.ref_point == {"rougeL": 0.1, "persona_f1": 0.0, "storage_bytes": 2.5e7}  # one key changed
    assert new.overrides[0] == "lora.rank=16" and space.training.epochs == 4  # the original is unchanged
    assert space.with_overrides(["lora.layers=none"]).defaults()["lora.layers"] == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("  count: {type: int, low: 0, high: 3, lowx: 1}",
         "parameters.count.lowx: unknown key; allowed keys: when, type, low, high, log, default"),
        ("  count: {type: int, low: abc, high: 3}", "parameters.count.low: input should be a valid integer"),
        ("  count: {type: int, low: 64, high: 8}", "parameters.count: low=64 > high=8; swap them"),
        ("  count: {type: range, low: 0, high: 3}",
         "parameters.count.type: 'range' is not a parameter type; use one of: layer_mask, int, float, choice, fixed"),
        ("  count: {type: choice, values: [1, 2], default: 3}",
         "parameters.count: default=3 is not one of values=[1, 2]; pick one of them"),
        ("  count: {type: int, low: 0, high: 3, when: 'nope > 0'}",
         "parameters.count.when: 'nope' is not a parameter; use one of: count"),
    ],
)
def test_parameter_errors_name_file_key_and_fix(tmp_path, snippet, expected):
    path = write(tmp_path, f"name: bad\nparameters:\n{snippet}\n")
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert str(info.value).startswith(f"space {path}: ")
    assert expected in str(info.value)


def test_unknown_section_key_and_unknown_optimizer(tmp_path):
    with pytest.raises(SpaceError, match=r"training\.epoch: unknown key; allowed keys: memory_injection, "):
        parse_space(TOY + "training: {epoch: 2}\n", "bad.yaml")
    with pytest.raises(SpaceError) as info:  # checked before a study loads its model, not by the schema
        check_optimizer(parse_space(TOY.replace("name: sobol", "name: bayes"), "bad.yaml"))
    assert str(info.value).startswith(
        "space bad.yaml: optimizer.name: unknown optimizer 'bayes'; use one of: ax-default, ax-saasbo, gp-nehvi, optuna-nsga2, "
        "optuna-tpe, random, saas-map, saas-nehvi"
    )
    assert ", sobol" in str(info.value)
    with pytest.raises(SpaceError, match=r"^space bad.yaml: colour: unknown key; allowed keys: name, model, data"):
        parse_space(TOY + "colour: red\n", "bad.yaml")


def test_unknown_objective_lists_what_the_runner_reports():
    space = parse_space(TOY, "toy.yaml")
    space.check_objectives({"quality", "cost", "loss"})
    with pytest.raises(SpaceError) as info:
        space.check_objectives({"quality", "loss"})
    assert str(info.value) == (
        "space toy.yaml: objectives: cost not reported by the trial runner; choose from: loss, quality"
    )


def test_errors_are_value_errors_and_search_errors(tmp_path):
    with pytest.raises(ValueError):
        load_space("no-such-space")
    with pytest.raises(SearchError, match="give a YAML path or one of: milp, milp-paper, quick, tiny"):
        load_space("no-such-space")
    with pytest.raises(SpaceError, match="unknown key 'lora'"):
        load_space("milp").with_overrides(["lora=1"])
    with pytest.raises(SpaceError, match=r"parameters: a layer_mask has no size; call Space.bind"):
        load_space("milp").defaults()
    with pytest.raises(SpaceError, match="size=30 but the model has 4 layers"):
        load_space("milp").bind(30).bind(4)


def test_describe_writes_masks_as_ranges_and_leaves_out_inactive_parameters():
    space = parse_space(TOY, "toy.yaml")
    assert describe(space, {"layers": [1, 1, 1, 0, 1], "count": 2, "rank": 8, "k": 0}) == \
        "layers=0-2,4 count=2 rank=8 k=0"
    assert describe(space, {"layers": [1, 0, 1], "count": 0, "rank": 4, "k": 0}) == "layers=0,2 count=0 k=0"
    assert describe(space, {"layers": [0, 0, 0], "count": 1, "rank": 4, "k": 0}) == "layers=- count=1 rank=4 k=0"


def test_reported_metrics_are_shown_beside_the_objectives_and_checked():
    space = parse_space(TOY + "constraints: ['loss <= 3']\nreport: [copy_rate, loss]\n", "toy.yaml")
    assert space.shown_metrics == ["loss", "copy_rate"]  # constrained first, each once, objectives left out
    assert space.metrics == ["quality", "cost", "loss"]  # what the optimiser models: not the reported ones
    space.check_objectives({"quality", "cost", "loss", "copy_rate"})
    with pytest.raises(SpaceError) as info:
        space.check_objectives({"quality", "cost", "loss"})
    assert str(info.value) == ("space toy.yaml: report: copy_rate not reported by the trial runner; "
                               "choose from: cost, loss, quality")
    assert load_space("milp.yaml").shown_metrics == ["copy_rate"]


def test_int_and_float_are_one_range_parameter_with_their_own_bound_types():
    """``int`` and ``float`` share one class (bounds, log scale, default, the range checks); an ``int``'s
    bounds and default must be integers, a ``float``'s may be any number."""
    from search.space import FloatParam, IntParam, RangeParam

    head = "name: t\nobjectives: {q: max}\nparameters:\n  x: "
    count = parse_space(head + "{type: int, low: 1, high: 8, log: true}\n", "t.yaml").parameters["x"]
    rate = parse_space(head + "{type: float, low: 0.1, high: 1.0, default: 0.5}\n", "t.yaml").parameters["x"]
    assert isinstance(count, IntParam) and isinstance(rate, FloatParam)
    assert isinstance(count, RangeParam) and isinstance(rate, RangeParam)
    assert (count.default_value(), rate.default_value()) == (1, 0.5) and type(count.default_value()) is int
    for kind, shown in (("int", "low=4 > high=3"), ("float", "low=4.0 > high=3.0")):
        with pytest.raises(SpaceError, match=rf"^space t.yaml: parameters.x: {shown}; swap them$"):
            parse_space(head + f"{{type: {kind}, low: 4, high: 3}}\n", "t.yaml")
    with pytest.raises(SpaceError, match=r"parameters.x.default: input should be a valid integer, got a number with a "
                                         r"fractional part \(got 2.5\)"):
        parse_space(head + "{type: int, low: 0, high: 3, default: 2.5}\n", "t.yaml")
    with pytest.raises(SpaceError, match=r"parameters.x.step: unknown key; allowed keys: when, type, low, high, log, "
                                         r"default$"):
        parse_space(head + "{type: float, low: 0, high: 3, step: 1}\n", "t.yaml")
