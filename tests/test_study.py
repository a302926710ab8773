"""Study persistence, resume, failure recording, and the Pareto utilities."""

import json
import os

import pytest

from search.api import Evaluation, optimize
from search.errors import SpaceError, StudyError
from search.pareto import hypervolume, knee_index, pareto_indices, reference_point, study_reference_point
from search.space import parse_space
from search.study.study import Study, TrialState

TOY = """
name: toy
objectives: {quality: max, cost: min}
parameters:
  layers: {type: layer_mask, size: 3}
  count: {type: int, low: 0, high: 3, default: 1}
  rank: {type: choice, values: [2, 4, 8], default: 4, when: "count > 0"}
optimizer: {name: sobol, init_trials: 3, trials: 5}
"""
SPACE = parse_space(TOY, "toy.yaml")


def cost(config):
    return float(config["count"] * config["rank"] * sum(config["layers"]))


def objective(config):
    if config["count"] == 2:
        raise RuntimeError("trainer crashed")
    if config["count"] == 3 and config["rank"] == 8:
        return {"quality": float("nan")}
    return Evaluation({"quality": config["layers"][0] + 0.5 * config["count"]}, {"run_id": "r"})


def test_study_round_trip_failures_and_resume(tmp_path):
    calls = []

    def counted(config):
        calls.append(config)
        return objective(config)

    seen = []
    study = optimize(SPACE, counted, study_dir=tmp_path, known_objectives={"cost": cost},
                     callbacks=[lambda s, t: seen.append(t.number)])
    assert [t.number for t in study.trials] == seen == [0, 1, 2, 3, 4] and len(calls) == 5
    failed = [t for t in study.trials if t.state is TrialState.FAILED]
    assert all(t.error.startswith("RuntimeError: trainer crashed") or t.error == "non-finite metric: quality=nan"
               for t in failed)
    done = study.completed()
    assert done and all(t.values["cost"] == cost(t.config) and t.user_attrs["run_id"] == "r" for t in done)
    assert all(t.user_attrs["worker"].endswith(f":{os.getpid()}") for t in done), "local trials run here"

    stored = Study.load("toy", tmp_path)
    assert [t.to_json() for t in stored.trials] == [t.to_json() for t in study.trials]
    assert (tmp_path / "toy" / "space.yaml").read_text() == TOY
    assert json.loads((tmp_path / "toy" / "study.json").read_text())["space"]["parameters"]["layers"]["size"] == 3

    more = optimize(SPACE, counted, study_dir=tmp_path, known_objectives={"cost": cost}, trials=8)
    assert len(more.trials) == 8 and len(calls) == 8  # nothing redone
    assert [t.to_json() for t in more.trials[:5]] == [t.to_json() for t in study.trials]
    keys = {json.dumps(t.config, sort_keys=True) for t in more.trials}
    assert len(keys) == 8


def test_running_trials_become_stopped_and_rerun(tmp_path):
    study = Study.create("s", tmp_path, SPACE)
    config = {"layers": [1, 0, 0], "count": 1, "rank": 2}
    study.add_trial(config)  # a process killed here leaves it RUNNING on disk
    loaded = Study.load("s", tmp_path)  # a reader sees it as it is, and changes nothing
    assert loaded.trials[0].state is TrialState.RUNNING and not loaded.in_flight() and loaded.read_only
    reopened = Study.open("s", tmp_path, SPACE)  # the writer marks it stopped, to run it again
    assert reopened.trials[0].state is TrialState.STOPPED and reopened.stopped_configs() == [config]
    resumed = optimize(SPACE, objective, study_name="s", study_dir=tmp_path, known_objectives={"cost": cost}, trials=2)
    assert resumed.trials[1].config == config and resumed.trials[1].state is TrialState.COMPLETED
    assert len(resumed.finished()) == 2 and resumed.stopped_configs() == []


def test_resume_guards(tmp_path):
    optimize(SPACE, objective, study_dir=tmp_path, known_objectives={"cost": cost}, trials=1)
    with pytest.raises(StudyError, match="already exists"):
        optimize(SPACE, objective, study_dir=tmp_path, resume=False)
    other = parse_space(TOY.replace("high: 3", "high: 2"), "other.yaml")
    with pytest.raises(StudyError, match="created with a different space"):
        optimize(other, objective, study_dir=tmp_path)
    with pytest.raises(SpaceError, match="objectives: cost not reported by the trial runner; choose from: quality"):
        optimize(SPACE, lambda c: {"quality": 1.0}, study_name="x", study_dir=tmp_path)
    assert Study.load("x", tmp_path).trials[0].state is TrialState.FAILED


def test_pareto_hypervolume_and_knee_by_hand():
    objectives = {"q": "max", "c": "min"}
    points = [{"q": 1.0, "c": 1.0}, {"q": 2.0, "c": 3.0}, {"q": 0.5, "c": 2.0}, None, {"q": 3.0, "c": 9.0},
              {"q": float("nan"), "c": 0.0}]
    assert pareto_indices(points, objectives) == [0, 1, 4]
    # Reference q=0, c=10: boxes [0,1]x[1,10] + [1,2]x[3,10] + [2,3]x[9,10] = 9 + 7 + 1.
    assert hypervolume(points, objectives, {"q": 0.0, "c": 10.0}) == pytest.approx(17.0)
    from search.space import parse_constraint

    capped = [parse_constraint("c <= 5")]
    assert pareto_indices(points, objectives, capped) == [0, 1]
    assert hypervolume(points, objectives, {"q": 0.0, "c": 10.0}, capped) == pytest.approx(16.0)
    # The study's reference point: inferred from the first `start` points (and the first feasible one).
    start_front = reference_point(points[:2], objectives)
    assert study_reference_point(points, objectives, start=2) == start_front
    assert study_reference_point([None, *points], objectives, start=1) == reference_point(points[:1], objectives)
    assert study_reference_point(points, objectives, {"c": 10.0}, start=2)["c"] == 10.0
    assert study_reference_point([None], objectives) is None
    # Scaled over the front: (0, 1), (0.5, 0.75), (1, 0) -> distances^2 1, 0.3125, 1: point 1.
    assert knee_index(points, objectives) == 1


MILP_LIKE = """
name: milp-like
objectives: {rougeL: max, persona_f1: max, storage_bytes: min}
parameters:
  lora.layers: {type: layer_mask, size: 2}
  lora.count: {type: int, low: 0, high: 2, default: 1}
  lora.rank: {type: choice, values: [4, 8], default: 4, when: "lora.count > 0"}
  rag.k: {type: int, low: 0, high: 4, default: 0}
optimizer: {name: random, init_trials: 1, trials: 4}
"""


def test_peft_beyond_retrieval_counts_the_combined_standard_error(tmp_path):
    from rich.console import Console

    from search.commands.tables import front_table
    from search.results.report import beyond_retrieval

    study = Study.create("m", tmp_path, parse_space(MILP_LIKE, "m.yaml"))
    rag = {"lora.layers": [0, 0], "lora.count": 0, "lora.rank": 4, "rag.k": 4}
    memory = {"lora.layers": [1, 1], "lora.count": 1, "lora.rank": 4, "rag.k": 0}
    trials = [  # (config, rougeL, its se, persona_f1, its se, storage)
        (rag, 0.20, 0.03, 2.0, 0.3, 0.0),
        (memory, 0.30, 0.04, 2.2, 0.3, 1e5),  # ROUGE-L +0.10 > sqrt(.03^2+.04^2)=.05; Persona-F1 +0.2 < .42
        ({**memory, "lora.count": 2}, 0.24, 0.04, 2.4, 0.5, 2e5),  # +0.04 < .05 and +0.4 < .58: noise
    ]
    for config, r, r_se, p, p_se, storage in trials:
        t = study.add_trial(config)
        study.complete_trial(t.number, {"rougeL": r, "rougeL_se": r_se, "persona_f1": p, "persona_f1_se": p_se,
                                        "storage_bytes": storage})
    assert beyond_retrieval(study) == {1: ["rougeL"], 2: []}
    console = Console(width=250, record=True)
    console.print(front_table(study))
    text = console.export_text()
    assert "yes: rougeL" in text and "within noise" in text
    assert "front trials 1 carry PEFT" in text and "combined standard error" in text


def test_beyond_retrieval_is_silent_for_black_box_studies(tmp_path):
    from search.results.report import beyond_retrieval

    study = Study.create("toy", tmp_path, SPACE)
    t = study.add_trial({"layers": [1, 0, 0], "count": 1, "rank": 4})
    study.complete_trial(t.number, {"quality": 1.0, "cost": 4.0})
    assert beyond_retrieval(study) == {}
