"""End to end against a real ``mlflow server`` on a free localhost port, read back through the REST API."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import pytest

from search.api import optimize
from search.results.config_view import layer_ranges
from search.space import parse_space
from search.study.study import Study
from search.tracking.tracker import Tracker
from live_server import running_server
from toy_study import free_port, objective, toy_space_text

SPACE = toy_space_text("served", trials=4, seed=5)


def rest(url: str, endpoint: str, body: dict | None = None, **query) -> dict:
    """One MLflow REST call: GET with query parameters, or POST with a JSON body."""
    full = f"{url}/api/2.0/mlflow/{endpoint}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(full, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def search_runs(url: str, experiment_id: str, flt: str = "") -> list[dict]:
    return rest(url, "runs/search", {"experiment_ids": [experiment_id], "filter": flt, "max_results": 1000})["runs"]


def tags_of(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def study_on_server(url: str, study_dir, trials: int) -> tuple[Study, Tracker]:
    tracker = Tracker(url).connect("served", study_dir)
    study = optimize(parse_space(SPACE), objective, study_name="served", study_dir=study_dir, trials=trials,
                     callbacks=[tracker])
    tracker.finish(study)
    return study, tracker


def test_study_logged_to_a_real_server_reads_back_over_rest(tmp_path):
    store = f"sqlite:///{tmp_path}/server/mlflow.db"
    (tmp_path / "server").mkdir()
    with running_server(store, port=free_port(), log=str(tmp_path / "server.log"), timeout=180) as url:
        study, tracker = study_on_server(url, tmp_path / "studies", trials=4)

        experiment = rest(url, "experiments/get-by-name", experiment_name="served")["experiment"]
        assert experiment["experiment_id"] == tracker.experiment_id
        runs = search_runs(url, experiment["experiment_id"])
        parents = [r for r in runs if tags_of(r).get("pers_search.role") == "study"]
        trials = {int(tags_of(r)["pers_search.trial"]): r for r in runs if "pers_search.trial" in tags_of(r)}
        assert len(runs) == 5 and len(parents) == 1 and sorted(trials) == [0, 1, 2, 3]
        parent_id = parents[0]["info"]["run_id"]
        assert all(tags_of(r)["mlflow.parentRunId"] == parent_id for r in trials.values())
        for number, run in trials.items():
            metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
            params = {p["key"]: p["value"] for p in run["data"]["params"]}
            record = study.trials[number]
            assert metrics["quality"] == pytest.approx(record.values["quality"])
            assert metrics["cost"] == record.values["cost"]
            assert params["mask"] == layer_ranges(record.config["mask"])  # index ranges, as every output shows a mask
            assert params["n_mask"] == str(sum(record.config["mask"]))
            assert run["info"]["status"] == "FINISHED"

        front = search_runs(url, experiment["experiment_id"], 'tags.pareto = "true"')
        assert {int(tags_of(r)["pers_search.trial"]) for r in front} == {t.number for t in study.pareto_trials()}
        history = rest(url, "metrics/get-history", run_id=parent_id, metric_key="hypervolume")["metrics"]
        assert sorted(m["step"] for m in history) == [0, 1, 2, 3]
        fractions = rest(url, "metrics/get-history", run_id=parent_id, metric_key="hypervolume_fraction")["metrics"]
        assert sorted(m["step"] for m in fractions) == [0, 1, 2, 3] and all(0 <= m["value"] <= 1 for m in fractions)
        view = {t["key"]: t["value"] for t in experiment["tags"]}["mlflow.sharedViewState.pers-search-front-quality"]
        assert json.loads(view)["searchFilter"] == 'tags.pareto = "true"', "the front view reaches the server's UI"
        listed = {f["path"] for f in rest(url, "artifacts/list", run_id=parent_id)["files"]}
        assert {"space.yaml", "summary.json", "pareto", "plots"} <= listed
        plots = {f["path"] for f in rest(url, "artifacts/list", run_id=parent_id, path="plots")["files"]}
        assert {"plots/pareto_quality_vs_cost.png", "plots/pareto_3d.html", "plots/hypervolume.png"} <= plots
        with urllib.request.urlopen(f"{url}/get-artifact?path=summary.json&run_uuid={parent_id}", timeout=30) as r:
            assert json.loads(r.read())["front"] == sorted(t.number for t in study.pareto_trials())

        # resume in a new process's shoes: the record brings the same server and parent run back
        study2, tracker2 = study_on_server(url, tmp_path / "studies", trials=6)
        assert tracker2.parent_run_id == parent_id
        runs = search_runs(url, experiment["experiment_id"])
        numbers = sorted(int(tags_of(r)["pers_search.trial"]) for r in runs if "pers_search.trial" in tags_of(r))
        assert numbers == [0, 1, 2, 3, 4, 5], "resume adds the new trials and duplicates none"
