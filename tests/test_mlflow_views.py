"""The MLflow views a study's experiment carries (no browser): the chart view's cards and sections,
the front view's knee column, the ``knee`` tag, the layer count param and the descriptions that open
the Model-training pages, read back from a real SQLite store.

tests/test_browser_ui.py checks that MLflow's UI draws them.
"""

from __future__ import annotations

import json

import pytest

from search.api import optimize
from search.results.config_view import count_key
from search.space import load_space, parse_space
from search.tracking.links import DESCRIPTION_TAG, SHARED_VIEW_TAG, run_page, save_view, training_page
from search.tracking.tracker import Tracker
from search.tracking.views import (
    CHARTS_VIEW_PREFIX,
    HYPERVOLUME_METRIC,
    KNEE_COLUMN,
    SECTIONS,
    charts_view_key,
    chart_state,
    front_view_key,
    readable_params,
    scatter_pairs,
)
from toy_study import objective, toy_space_text

MLFLOW_EXPERIMENT_TAG_LIMIT = 20000  # mlflow.utils.validation.MAX_EXPERIMENT_TAG_VAL_LENGTH in MLflow 3.17


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A finished toy study (objectives quality:max, cost:min; params mask, x, k) logged to a new store."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("views")
    store = f"sqlite:///{root}/mlflow.db"
    tracker = Tracker(store).connect("views", root)
    study = optimize(parse_space(toy_space_text("views", trials=8, seed=4)), objective, study_dir=root,
                     callbacks=[tracker])
    tracker.finish(study)
    return study, tracker, MlflowClient(tracking_uri=store)


def _trial_runs(client, tracker) -> dict[int, object]:
    runs = client.search_runs([tracker.experiment_id], filter_string="tags.`pers_search.role` = 'trial'")
    return {int(r.data.tags["pers_search.trial"]): r for r in runs}


def test_the_chart_view_puts_the_objectives_first_and_points_at_logged_data(logged):
    study, tracker, client = logged
    tags = client.get_experiment(tracker.experiment_id).tags
    assert charts_view_key(study.space.objectives) == "pers-search-charts-quality"
    view = json.loads(tags[SHARED_VIEW_TAG + CHARTS_VIEW_PREFIX + "quality"])
    assert view["searchFilter"] == "" and view["runsHiddenMode"] == "SHOW_ALL", "every trial and the study's run"
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`quality`", False), "sorted: MLflow lists runs flat"
    cards = view["compareRunCharts"]
    assert [c["type"] for c in cards] == ["SCATTER", "LINE", "PARALLEL", "BAR", "BAR"]
    scatter, line, parallel = cards[:3]
    assert (scatter["yaxis"]["key"], scatter["xaxis"]["key"]) == ("quality", "cost")
    assert (line["metricKey"], line["xAxisKey"]) == (HYPERVOLUME_METRIC, "step")
    assert parallel["selectedParams"] == ["n_mask", "x", "k"], "the mask as its count, not a 0110 number"
    assert parallel["selectedMetrics"] == ["quality", "cost"]
    assert [c["metricKey"] for c in cards[3:]] == ["quality", "cost"]

    sections = view["compareRunSections"]
    assert [s["name"] for s in sections] == list(SECTIONS)
    assert [s["display"] for s in sections] == [True, True, True, True, False], "other metrics folded away"
    assert view["isAccordionReordered"] is True, "else MLflow sorts the sections by name"
    assert {c["metricSectionId"] for c in cards} <= {s["uuid"] for s in sections}

    trials = _trial_runs(client, tracker)
    for run in trials.values():
        assert {"quality", "cost"} <= set(run.data.metrics)
        assert set(parallel["selectedParams"]) <= set(run.data.params)
        assert run.data.params["n_mask"] == str(_layers_on(run.data.params["mask"]))
    steps = client.get_metric_history(tracker.parent_run_id, HYPERVOLUME_METRIC)
    assert len(steps) == len(trials), "the curve the line card draws: one point per trial"

    front = json.loads(tags[SHARED_VIEW_TAG + front_view_key(study.space.objectives)])
    assert front["searchFilter"] == 'tags.pareto = "true"'
    assert front["compareRunCharts"] == cards, "the front's Chart toggle shows the same charts"
    assert front["selectedColumns"][-1] == KNEE_COLUMN == "tags.`knee`"


def test_the_knee_is_tagged_on_one_run_and_moves_with_the_front(logged):
    study, tracker, client = logged
    trials = _trial_runs(client, tracker)
    knees = [n for n, r in trials.items() if r.data.tags.get("knee") == "true"]
    assert knees == [study.knee_trial().number]
    assert all(r.data.tags.get("knee") == "false" for n, r in trials.items() if n not in knees)
    assert client.get_run(tracker.parent_run_id).data.tags["knee_trial"] == str(knees[0])
    front = {t.number for t in study.pareto_trials()}
    colors = {n: r.data.tags["mlflow.runColor"] for n, r in trials.items()}
    assert colors == {n: "#2272b4" if n in knees else "#c83243" if n in front else "#8396a5" for n in trials}, \
        "MLflow's charts draw the front red, the knee blue, the other trials grey"

    best = study.add_trial({"mask": [0, 0, 0], "x": 1.0, "k": 0})  # given values that dominate every trial
    study.complete_trial(best.number, {"quality": 10.0, "cost": 0.0})
    tracker.sync(study)
    trials = _trial_runs(client, tracker)
    assert [n for n, r in trials.items() if r.data.tags.get("knee") == "true"] == [best.number]
    assert trials[knees[0]].data.tags["knee"] == "false"
    assert trials[best.number].data.tags["mlflow.runColor"] == "#2272b4"
    assert {r.data.tags["mlflow.runColor"] for n, r in trials.items() if n != best.number} == {"#8396a5"}, \
        "a trial that dominates every other leaves it alone on the front"


def test_descriptions_open_the_model_training_pages_and_spare_a_users_text(logged, tmp_path):
    study, tracker, client = logged
    eid, run_id = tracker.experiment_id, tracker.parent_run_id
    text = client.get_run(run_id).data.tags[DESCRIPTION_TAG]
    assert f"(#/experiments/{eid}/runs/{run_id}?workflowType=machine_learning)" in text
    assert (f"(#/experiments/{eid}/runs?viewStateShareKey=pers-search-charts-quality&compareRunsMode=CHART"
            "&workflowType=machine_learning)") in text
    described = client.get_experiment(eid).tags[DESCRIPTION_TAG]
    assert f"(#/experiments/{eid}/runs?viewStateShareKey=pers-search-front-quality&workflowType=machine_learning)" \
        in described

    client.set_experiment_tag(eid, DESCRIPTION_TAG, "my notes on this experiment")
    client.set_tag(run_id, DESCRIPTION_TAG, "my notes on this study")
    again = Tracker(tracker.uri).connect(study.name, study.directory.parent)
    again.sync(study)
    assert client.get_experiment(eid).tags[DESCRIPTION_TAG] == "my notes on this experiment"
    assert client.get_run(run_id).data.tags[DESCRIPTION_TAG] == "my notes on this study"


def test_scatter_pairs_put_quality_against_cost():
    assert scatter_pairs({"rougeL": "max", "persona_f1": "max", "storage_bytes": "min"}) == [
        ("rougeL", "storage_bytes"), ("persona_f1", "storage_bytes")]
    assert scatter_pairs({"a": "max", "b": "max", "c": "max"}) == [("a", "b"), ("b", "c")], "one direction: in turn"
    assert scatter_pairs({"a": "min"}) == []
    assert count_key("memory.layers") == "memory.n_layers" and count_key("mask") == "n_mask"


def test_the_bundled_space_gets_readable_axes_and_fits_mlflows_tag_limit():
    space = load_space("milp.yaml")
    params = readable_params(space)
    assert all(not p.endswith(".layers") for p in params) and any(p.endswith(".n_layers") for p in params)
    front = {"orderByKey": "metrics.`rougeL`", "orderByAsc": False, "selectedColumns": []}
    state = json.dumps(chart_state(space), separators=(",", ":"))
    assert len(state) + len(json.dumps(front)) + 40 * len(space.parameters) < MLFLOW_EXPERIMENT_TAG_LIMIT
    titles = [c["displayName"] for c in chart_state(space)["compareRunCharts"] if c["type"] == "SCATTER"]
    assert titles == ["ROUGE-L vs storage", "Persona-F1 vs storage"]


def _layers_on(ranges: str) -> int:
    """How many layers an index-range mask param names (``0,2-3`` -> 3; ``-`` -> 0)."""
    if ranges == "-":
        return 0
    spans = [part.split("-") for part in ranges.split(",")]
    return sum(int(span[-1]) - int(span[0]) + 1 for span in spans)


def test_save_view_writes_the_shared_view_tag_once_as_compact_json(logged):
    """The one write through MLflow UI internals: ``mlflow.sharedViewState.<key>`` holds the state as
    compact JSON, and an unchanged state is not written again."""
    _, tracker, client = logged
    state = {"searchFilter": 'tags.pareto = "true"', "selectedColumns": ["metrics.`quality`"]}
    tags = client.get_experiment(tracker.experiment_id).tags
    assert save_view(client, tracker.experiment_id, "probe", state, tags) is True
    tags = client.get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.sharedViewState.probe"] == '{"searchFilter":"tags.pareto = \\"true\\"",' \
                                                    '"selectedColumns":["metrics.`quality`"]}'
    assert json.loads(tags["mlflow.sharedViewState.probe"]) == state
    assert save_view(client, tracker.experiment_id, "probe", state, tags) is False, "unchanged: no write"
    assert save_view(client, tracker.experiment_id, "probe", {**state, "orderByAsc": True}, tags) is True
    assert json.loads(client.get_experiment(tracker.experiment_id).tags["mlflow.sharedViewState.probe"])[
        "orderByAsc"] is True


def test_every_link_opens_the_model_training_pages():
    assert training_page("#/experiments") == "#/experiments?workflowType=machine_learning"
    assert training_page("#/experiments/3/runs", {"viewStateShareKey": "k", "compareRunsMode": "CHART"}) == \
        "#/experiments/3/runs?viewStateShareKey=k&compareRunsMode=CHART&workflowType=machine_learning"
    assert run_page("3", "abc") == "#/experiments/3/runs/abc?workflowType=machine_learning"
