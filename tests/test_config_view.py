"""Outputs show what ran (issue 36): parameters that did nothing are left out of every table, CSV,
JSON, serving.yaml and MLflow param; layer masks read as index ranges; booleans as yes/no in
tables and true/false in CSV and JSON. study.json keeps the raw configuration."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from runners.spec import inert_keys
from search.results.config_view import active_config, config_params, config_record, count_key, describe, layer_ranges
from search.space import load_space, parse_space
from search.study.study import Study

ON = {"lora.layers": [1, 0, 1, 1], "lora.count": 2, "lora.rank": 4, "rag.k": 2, "rag.retriever": "bm25",
      "perpcs.top_k": 0}
NO_MEMORY = {**ON, "lora.count": 0, "rag.retriever": "recency"}           # count 0: layers and rank did nothing
NO_RETRIEVAL = {**ON, "lora.layers": [0, 0, 1, 1], "lora.count": 1, "lora.rank": 8, "rag.k": 0}  # retriever idle
NO_LAYER = {**ON, "lora.layers": [0, 0, 0, 0], "lora.count": 3, "rag.k": 1}  # no layer on: count, rank idle
CONFIGS = (ON, NO_MEMORY, NO_RETRIEVAL, NO_LAYER)
# rougeL, persona_f1, storage_bytes: every trial is on the front (each is best somewhere)
VALUES = ((0.4, 12.0, 5000.0), (0.2, 10.0, 0.0), (0.3, 5.0, 1000.0), (0.1, 11.0, 0.0))


@pytest.fixture(scope="module")
def space():
    return load_space("tiny.yaml").bind(4)


@pytest.fixture(scope="module")
def study(tmp_path_factory, space):
    """A tiny-space study of the four configurations above, completed with fixed values."""
    study = Study.create("shown", tmp_path_factory.mktemp("studies"), space)
    for config, (rouge, f1, storage) in zip(CONFIGS, VALUES):
        trial = study.add_trial(dict(config))
        study.complete_trial(trial.number, {"rougeL": rouge, "persona_f1": f1, "storage_bytes": storage})
    assert {t.number for t in study.pareto_trials()} == {0, 1, 2, 3}
    return study


def test_layer_masks_read_as_index_ranges():
    mask = [1 if i in (2, 12, 22, 23, 24) else 0 for i in range(30)]
    assert layer_ranges(mask) == "2,12,22-24"
    assert layer_ranges([0] * 30) == "-"
    assert layer_ranges([1, 1, 1, 1]) == "0-3"
    assert count_key("lora.layers") == "lora.n_layers" and count_key("mask") == "n_mask"


def test_the_rule_drops_what_did_nothing(space):
    assert inert_keys(ON) == set()
    assert inert_keys(NO_MEMORY) == {"lora.layers", "lora.rank"}
    assert inert_keys({**NO_MEMORY, "lora.lr_scale": 0.5, "lora.base": "cohort"}) == {
        "lora.layers", "lora.rank", "lora.lr_scale"}  # the cohort adapter alone still ran
    assert inert_keys(NO_RETRIEVAL) == {"rag.retriever"}
    assert inert_keys(NO_LAYER) == {"lora.count", "lora.rank"}  # the mask of none stays: it is the off switch
    assert inert_keys({"mask": [0, 0], "k": 0}) == set()  # a black-box study's keys are its own
    assert active_config(space, NO_MEMORY) == {"lora.count": 0, "rag.k": 2, "rag.retriever": "recency",
                                               "perpcs.top_k": 0}
    assert describe(space, NO_LAYER) == "lora.layers=- rag.k=1 rag.retriever=bm25 perpcs.top_k=0"
    assert describe(space, ON) == "lora.layers=0,2-3 lora.count=2 lora.rank=4 rag.k=2 rag.retriever=bm25 perpcs.top_k=0"
    assert config_record(space, ON)["lora.layers"] == [0, 2, 3] and config_record(space, ON)["lora.n_layers"] == 3
    params = config_params(space, NO_LAYER)
    assert params["lora.layers"] == "-" and params["lora.n_layers"] == "0" and "lora.rank" not in params


def test_a_when_condition_of_the_space_is_honoured_too():
    space = parse_space("""
name: cond
objectives: {quality: max}
parameters:
  depth: {type: int, low: 0, high: 3}
  width: {type: int, low: 1, high: 8, when: "depth > 0"}
  flag: {type: choice, values: [true, false]}
""")
    assert describe(space, {"depth": 0, "width": 4, "flag": True}) == "depth=0 flag=yes"
    assert config_record(space, {"depth": 2, "width": 4, "flag": False}) == {"depth": 2, "width": 4, "flag": False}
    assert config_params(space, {"depth": 2, "width": 4, "flag": False})["flag"] == "false"


def _rows_by_trial(rows):
    return {int(r["trial"]): r for r in rows}


def test_pareto_json_and_csv_carry_only_what_ran(study, capsys):
    from search.cli import main

    assert main(["pareto", study.name, "--study-dir", str(study.directory.parent), "--json"]) == 0
    rows = _rows_by_trial(json.loads(capsys.readouterr().out)["front"])
    assert rows[0]["lora.layers"] == [0, 2, 3] and rows[0]["lora.n_layers"] == 3 and rows[0]["lora.rank"] == 4
    assert not {"lora.layers", "lora.n_layers", "lora.rank"} & set(rows[1]) and rows[1]["lora.count"] == 0
    assert "rag.retriever" not in rows[2] and rows[2]["rag.k"] == 0
    assert rows[3]["lora.layers"] == [] and rows[3]["lora.n_layers"] == 0 and "lora.rank" not in rows[3]
    knee = study.knee_trial().number
    assert {n: r["knee"] for n, r in rows.items()} == {n: n == knee for n in range(4)}  # JSON true/false

    assert main(["pareto", study.name, "--study-dir", str(study.directory.parent), "--csv"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split(",")
    assert header[:2] == ["trial", "knee"]
    config_columns = [c for c in header if c.startswith(("lora.", "rag.", "perpcs."))]
    assert config_columns == ["lora.layers", "lora.n_layers", "lora.count", "lora.rank", "rag.k", "rag.retriever",
                              "perpcs.top_k"], "a column some rows leave out stays beside its neighbours"
    cells = _rows_by_trial(csv.DictReader(io.StringIO(text)))
    assert cells[0]["lora.layers"] == "[0, 2, 3]" and cells[0]["lora.n_layers"] == "3"
    assert cells[1]["lora.rank"] == cells[1]["lora.layers"] == "" and cells[1]["lora.count"] == "0"
    assert cells[2]["rag.retriever"] == "" and cells[2]["rag.k"] == "0"
    assert {r["knee"] for r in cells.values()} == {"true", "false"}


def _table_lines(table) -> list[str]:
    from rich.console import Console

    console = Console(width=400, record=True, file=io.StringIO())
    console.print(table)
    return console.export_text().splitlines()


def _row(lines, number):
    return next(line for line in lines if line.startswith("│") and line.split("│")[1].strip() == str(number))


def test_tables_show_ranges_yes_no_and_no_idle_settings(study):
    from search.commands.tables import front_table, trials_table

    knee = study.knee_trial().number
    front = _table_lines(front_table(study))
    assert "knee" in next(line for line in front if "┃ trial" in line)
    for number in range(4):
        cells = [c.strip() for c in _row(front, number).split("│")]
        assert cells[2] == ("yes" if number == knee else "no")
    assert "lora.layers=0,2-3 lora.count=2 lora.rank=4" in _row(front, 0)
    assert "lora.count=0 rag.k=2 rag.retriever=recency" in _row(front, 1) and "lora.rank" not in _row(front, 1)
    assert "rag.k=0" in _row(front, 2) and "retriever" not in _row(front, 2)
    assert "lora.layers=- rag.k=1" in _row(front, 3) and "lora.count" not in _row(front, 3)

    trials = _table_lines(trials_table(study))
    assert [c.strip() for c in _row(trials, 1).split("│")][3] == "yes"  # on the front
    assert "lora.rank" not in _row(trials, 1) and "True" not in "\n".join(trials + front)


def test_mlflow_params_carry_only_what_ran(study, tmp_path):
    from mlflow.tracking import MlflowClient

    from search.tracking.tracker import Tracker

    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(store).connect(study.name, study.directory.parent)
    tracker.sync(study)
    tracker.finish(study)
    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([tracker.experiment_id], filter_string="tags.`pers_search.role` = 'trial'")
    params = {int(r.data.tags["pers_search.trial"]): r.data.params for r in runs}
    tags = {int(r.data.tags["pers_search.trial"]): r.data.tags for r in runs}
    assert params[0] == {"lora.layers": "0,2-3", "lora.n_layers": "3", "lora.count": "2", "lora.rank": "4",
                         "rag.k": "2", "rag.retriever": "bm25", "perpcs.top_k": "0"}
    assert params[1] == {"lora.count": "0", "rag.k": "2", "rag.retriever": "recency", "perpcs.top_k": "0"}
    assert "rag.retriever" not in params[2] and params[2]["lora.layers"] == "2-3"
    assert params[3]["lora.layers"] == "-" and params[3]["lora.n_layers"] == "0" and "lora.count" not in params[3]
    assert tags[1]["config"] == "lora.count=0 rag.k=2 rag.retriever=recency perpcs.top_k=0"


def test_study_json_keeps_the_raw_configuration(study):
    again = Study.load(study.name, study.directory.parent)
    assert [t.config for t in again.trials] == [dict(c) for c in CONFIGS]


def test_serving_yaml_holds_only_what_the_trial_used(study, tmp_path):
    from search.export import export_bundle

    bundle = export_bundle(study, "trial:1", tmp_path / "b")  # count 0: retrieval alone, nothing to train
    manifest = yaml.safe_load((bundle.out / "serving.yaml").read_text())
    assert "memory" not in manifest and "shared_pieces" not in manifest and manifest["adapters"] == {}
    assert manifest["retrieval"]["k"] == 2 and manifest["retrieval"]["retriever"] == "recency"
    assert manifest["config"] == {"lora.count": 0, "rag.k": 2, "rag.retriever": "recency", "perpcs.top_k": 0}
