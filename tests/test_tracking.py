"""MLflow tracking of studies: experiment, parent and nested runs, metrics, pareto tags, artifacts, resume."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from runners.spec import index_ranges
from search.api import optimize
from search.results.report import hypervolume_curve, hypervolume_fraction_curve, normalized_hypervolume
from search.space import parse_space
from search.study.study import Study
from search.tracking.links import SHARED_VIEW_TAG, runs_link
from search.tracking.store import RECORD_FILE, TrackingError, read_record, resolve_tracking_uri
from search.tracking.tracker import Tracker
from search.tracking.views import front_view_key

SPACE = """
name: toy
objectives: {quality: max, cost: min}
parameters:
  mask: {type: layer_mask, size: 3, default: all}
  x: {type: float, low: 0.0, high: 1.0}
  k: {type: int, low: 0, high: 4}
optimizer: {name: random, init_trials: 2, trials: 6, seed: 3}
"""


def toy_objective(config):
    """quality grows with x and the layers used; cost with k and the layers used."""
    layers = sum(config["mask"])
    return {"quality": config["x"] + 0.5 * layers, "cost": float(config["k"] + layers), "aux": 1.0}


def dominates(a, b):
    return a["quality"] >= b["quality"] and a["cost"] <= b["cost"] and (
        a["quality"] > b["quality"] or a["cost"] < b["cost"])


def brute_front(study):
    done = study.completed()
    return {t.number for t in done if not any(dominates(o.values, t.values) for o in done if o is not t)}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating the schema takes seconds)."""
    root = tmp_path_factory.mktemp("mlstore")
    return f"sqlite:///{root}/mlflow.db"


@pytest.fixture(scope="module")
def client(store):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=store)


def _run_toy(tmp_path, store, name, trials=6):
    tracker = Tracker(store).connect(name, tmp_path)
    study = optimize(parse_space(SPACE), toy_objective, study_name=name, study_dir=tmp_path,
                     trials=trials, callbacks=[tracker])
    tracker.finish(study)
    return study, tracker


def _children(client, tracker):
    runs = client.search_runs([tracker.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")
    return {int(r.data.tags["pers_search.trial"]): r for r in runs}


def test_default_uri_is_sqlite_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example.org:5000")
    assert resolve_tracking_uri() == "http://example.org:5000"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"


def test_study_is_logged_with_front_tags_metrics_and_artifacts(tmp_path, store, client):
    study, tracker = _run_toy(tmp_path, store, "toy-logged")
    experiment = client.get_experiment_by_name("toy-logged")
    assert experiment.experiment_id == tracker.experiment_id
    assert experiment.artifact_location.endswith("/artifacts/toy-logged")
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.run_name == "toy-logged" and parent.info.status == "FINISHED"
    assert parent.data.tags["optimizer"] == "random"
    assert parent.data.tags["objectives"] == "quality:max,cost:min"

    children = _children(client, tracker)
    assert sorted(children) == [0, 1, 2, 3, 4, 5]
    front = brute_front(study)
    assert front and {t.number for t in study.pareto_trials()} == front
    flagged = client.search_runs([tracker.experiment_id], filter_string='tags.pareto = "true"')
    assert {int(r.data.tags["pers_search.trial"]) for r in flagged} == front
    for trial in study.trials:
        run = children[trial.number]
        assert run.info.run_name == f"trial-{trial.number:03d}" and run.info.status == "FINISHED"
        assert run.data.metrics["quality"] == pytest.approx(trial.values["quality"])
        assert run.data.metrics["cost"] == trial.values["cost"]
        on = [i for i, flag in enumerate(trial.config["mask"]) if flag]
        assert run.data.params["mask"] == (index_ranges(on) or "-")  # index ranges: 0-2, 0,2, ... or -
        assert run.data.params["n_mask"] == str(len(on)) and "mask.1" not in run.data.params
        assert run.data.params["k"] == str(trial.config["k"])
        assert run.data.tags["state"] == "completed" and run.data.tags["optimizer"] == "random"
        assert run.data.tags["pareto"] == ("true" if trial.number in front else "false")
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
    knee = study.knee_trial()
    assert parent.data.tags["knee_trial"] == str(knee.number)

    history = client.get_metric_history(tracker.parent_run_id, "hypervolume")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4, 5]
    assert max(history, key=lambda m: m.step).value == pytest.approx(study.hypervolume())
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert values == pytest.approx(list(hypervolume_curve(study).values()))

    fractions = [m.value for m in sorted(client.get_metric_history(tracker.parent_run_id, "hypervolume_fraction"),
                                         key=lambda m: m.step)]
    assert fractions == pytest.approx(list(hypervolume_fraction_curve(study).values()))
    assert fractions[-1] == pytest.approx(normalized_hypervolume(study)) and 0 < fractions[-1] <= 1

    local = Path(client.download_artifacts(tracker.parent_run_id, "", str(tmp_path / "dl")))
    names = {str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()}
    assert {"space.yaml", "summary.json", "pareto/front.csv", "pareto/front.json", "plots/pareto_3d.html",
            "plots/pareto_quality_vs_cost.png", "plots/hypervolume.png"} <= names
    assert (local / "plots/pareto_quality_vs_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (local / "plots/pareto_3d.html").read_text()
    assert "Plotly.newPlot" in html and len(html) > 1_000_000, "plotly.js must be inlined for offline use"
    rows = json.loads((local / "pareto/front.json").read_text())
    assert [r["trial"] for r in rows] == sorted(front)
    assert (local / "pareto/front.csv").read_text().splitlines()[0].startswith("trial,knee,quality,cost,")
    summary = json.loads((local / "summary.json").read_text())
    assert summary["front"] == sorted(front) and summary["trials"]["completed"] == 6
    assert summary["hypervolume_fraction"] == pytest.approx(normalized_hypervolume(study))

    one = client.download_artifacts(children[0].info.run_id, "trial.json", str(tmp_path / "t0"))
    assert json.loads(Path(one).read_text())["values"] == study.trials[0].values


def test_resume_reuses_the_runs(tmp_path, store, client):
    study, tracker = _run_toy(tmp_path, store, "toy-resume", trials=4)
    record = read_record(study.directory)
    assert record["parent_run_id"] == tracker.parent_run_id and record["tracking_uri"] == store
    first = {n: r.info.run_id for n, r in _children(client, tracker).items()}

    # resume with a larger budget: the tracker is found again through mlflow.json
    study2, tracker2 = _run_toy(tmp_path, store, "toy-resume", trials=7)
    assert tracker2.parent_run_id == tracker.parent_run_id
    runs = _children(client, tracker2)
    assert sorted(runs) == list(range(7))
    assert {n: runs[n].info.run_id for n in first} == first
    assert len(client.search_runs([tracker.experiment_id])) == 8, "1 parent + 7 trials, nothing duplicated"
    steps = [m.step for m in client.get_metric_history(tracker.parent_run_id, "hypervolume")]
    assert sorted(steps) == list(range(7))

    # a tracker that lost its memory (a new process) logs nothing twice either
    again = Tracker(store)
    again.sync(Study.load("toy-resume", tmp_path))
    assert len(client.search_runs([tracker.experiment_id])) == 8


def test_pareto_tags_follow_the_front(tmp_path, store, client):
    study = Study.create("moving", tmp_path, parse_space(SPACE))
    tracker = Tracker(store).connect("moving", tmp_path)
    a = study.add_trial({"mask": [1, 0, 0], "x": 0.1, "k": 1})
    study.complete_trial(a.number, {"quality": 1.0, "cost": 2.0})
    b = study.add_trial({"mask": [0, 1, 0], "x": 0.2, "k": 2})
    study.complete_trial(b.number, {"quality": 2.0, "cost": 3.0})
    tracker.sync(study)
    tags = {n: r.data.tags["pareto"] for n, r in _children(client, tracker).items()}
    assert tags == {0: "true", 1: "true"}
    c = study.add_trial({"mask": [0, 0, 1], "x": 0.3, "k": 0})
    study.complete_trial(c.number, {"quality": 2.5, "cost": 1.0})  # dominates both
    tracker.sync(study)
    tags = {n: r.data.tags["pareto"] for n, r in _children(client, tracker).items()}
    assert tags == {0: "false", 1: "false", 2: "true"}
    d = study.add_trial({"mask": [1, 1, 1], "x": 0.9, "k": 4})
    study.fail_trial(d.number, "MemoryError: out of memory")
    study.set_test_values(c.number, {"quality": 2.25, "cost": 1.0})
    tracker.finish(study)
    runs = _children(client, tracker)
    assert runs[3].info.status == "FAILED" and runs[3].data.tags["error"].startswith("MemoryError")
    assert runs[3].data.tags["pareto"] == "false"
    assert runs[2].data.metrics["test_quality"] == 2.25
    assert "test_quality" not in runs[0].data.metrics
    history = {m.step: m.value for m in client.get_metric_history(tracker.parent_run_id, "hypervolume")}
    assert set(history) == {0, 1, 2, 3}
    assert history[2] == history[3], "a failed trial leaves the hypervolume as it was"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_fails_fast_naming_the_uri(tmp_path):
    uri = f"http://127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(TrackingError, match=f"tracking server {uri} is unreachable"):
        Tracker(uri).connect("nothing", tmp_path)
    assert time.monotonic() - started < 10
    assert not (tmp_path / "nothing" / RECORD_FILE).exists()


def test_cli_run_logs_a_real_tiny_study(tmp_path, store, client):
    from search.cli import main

    code = main(["run", "--space", "tiny.yaml", "--optimizer", "random", "--trials", "2", "--study", "tiny-cli",
                 "--study-dir", str(tmp_path), "--tracking-uri", store])
    assert code == 0
    study = Study.load("tiny-cli", tmp_path)
    experiment = client.get_experiment_by_name("tiny-cli")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("pers_search.role") == "trial"]
    assert len(runs) == 3 and len(trials) == 2
    front = {t.number for t in study.pareto_trials()}
    for run in trials:
        trial = study.trials[int(run.data.tags["pers_search.trial"])]
        assert run.data.metrics["rougeL"] == pytest.approx(trial.values["rougeL"])
        assert run.data.metrics["storage_bytes"] == trial.values["storage_bytes"]
        for key in ("copy_rate", "copy_rate_se"):  # every metric the trial reports is logged
            assert run.data.metrics[key] == pytest.approx(trial.values[key])
        on = [i for i, flag in enumerate(trial.config["lora.layers"]) if flag]
        if trial.config["lora.count"] > 0:  # layers as index ranges beside their count
            assert run.data.params["lora.layers"] == (index_ranges(on) or "-")
            assert run.data.params["lora.n_layers"] == str(len(on)) and "lora.layers.0" not in run.data.params
        else:  # no memory: the mask, rank and learning-rate scale did nothing, and are not logged
            assert not {"lora.layers", "lora.n_layers", "lora.rank"} & set(run.data.params)
            assert run.data.params["lora.count"] == "0"
        assert run.data.tags["pareto"] == ("true" if trial.number in front else "false")
        if trial.number in front:  # the front was evaluated on the test queries
            assert run.data.metrics["test_rougeL"] == pytest.approx(trial.test_values["rougeL"])


# --------------------------------------------------------------------------- what a user sees (issue 17)
def test_plots_and_summary_are_logged_after_every_trial_not_only_at_the_end(tmp_path, store, client):
    tracker = Tracker(store, artifact_budget=1.0).connect("toy-live", tmp_path)
    seen = []

    def probe(study, trial):  # runs after the tracker's callback, before the next trial
        run = client.get_run(tracker.parent_run_id)
        root = Path(run.info.artifact_uri.removeprefix("file://"))
        summary = json.loads((root / "summary.json").read_text())
        seen.append((summary["trials"]["completed"], (root / "plots" / "pareto_quality_vs_cost.png").is_file(),
                     (root / "plots" / "hypervolume.png").is_file(), (root / "plots" / "pareto_3d.html").exists()))

    study = optimize(parse_space(SPACE), toy_objective, study_name="toy-live", study_dir=tmp_path, trials=4,
                     callbacks=[tracker, probe])
    # PNGs and summary every trial, the HTML at the end; the HV curve once the quasi-random start
    # (2 trials) has fixed the reference point, from then on with every step
    assert seen == [(1, True, False, False)] + [(n, True, True, False) for n in (2, 3, 4)]
    assert tracker.artifact_writes == 4
    tracker.finish(study)
    root = Path(client.get_run(tracker.parent_run_id).info.artifact_uri.removeprefix("file://"))
    assert (root / "plots" / "pareto_3d.html").is_file()


def test_artifact_budget_rate_limits_the_updates(tmp_path, store):
    tracker = Tracker(store, artifact_budget=0.01).connect("toy-budget", tmp_path)
    optimize(parse_space(SPACE), toy_objective, study_name="toy-budget", study_dir=tmp_path, trials=6,
             callbacks=[tracker])
    assert tracker.artifact_writes == 1, "millisecond trials: one update, then 99x its cost must pass"
    with pytest.raises(TrackingError, match="artifact_budget=2 must be in"):
        Tracker(store, artifact_budget=2)


def test_normalized_hypervolume_is_the_share_of_a_fixed_box(tmp_path):
    space = parse_space(SPACE.replace("seed: 3}", "seed: 3, ref_point: {quality: 0.0, cost: 10.0}, "
                                                  "ideal_point: {quality: 4.0, cost: 0.0}}"))
    study = Study.create("box", tmp_path, space)
    assert normalized_hypervolume(study) == 0.0
    for quality, cost in ((1.0, 5.0), (2.0, 8.0), (0.5, 9.0), (5.0, 1.0)):
        t = study.add_trial({"mask": [1, 0, 0], "x": 0.1, "k": 1})
        study.complete_trial(t.number, {"quality": quality, "cost": cost})
    # box: quality 0..4 x cost 10..0 = 40; trials 0-2 cover 5 + 4 - 2 = 7; trial 3 dominates them
    # and lies past the ideal in quality (5 > 4): it counts as 4, covering 4 x 9 = 36
    assert normalized_hypervolume(study, best_known=72.0) == pytest.approx(study.hypervolume() / 72.0)
    assert list(hypervolume_fraction_curve(study).values()) == pytest.approx([5 / 40, 7 / 40, 7 / 40, 36 / 40])
    assert normalized_hypervolume(study) == pytest.approx(0.9)


def test_experiment_opens_on_the_fronts_runs_table(tmp_path, store, client):
    study, tracker = _run_toy(tmp_path, store, "toy-view", trials=3)
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    key = front_view_key(study.space.objectives)
    assert key == "pers-search-front-quality"
    view = json.loads(experiment.tags[SHARED_VIEW_TAG + key])
    assert view["searchFilter"] == 'tags.pareto = "true"'
    assert (view["orderByKey"], view["orderByAsc"]) == ("metrics.`quality`", False)
    assert view["selectedColumns"] == ["metrics.`quality`", "metrics.`cost`", "metrics.`test_quality`",
                                       "metrics.`test_cost`", "params.`mask`", "params.`n_mask`", "params.`x`",
                                       "params.`k`", "tags.`knee`"]
    assert view["columnOrder"] == view["selectedColumns"]
    assert tracker.link("http://127.0.0.1:5000") == runs_link("http://127.0.0.1:5000", tracker.experiment_id,
                                                              study.space.objectives)
    assert runs_link("http://h:1/", "7", {"rougeL": "max", "storage_bytes": "min"}) == (
        "http://h:1/#/experiments/7/runs?viewStateShareKey=pers-search-front-rougeL&workflowType=machine_learning")


def test_cli_per_user_study_logs_a_parent_run_per_user_and_the_cohort(tmp_path, store, client):
    from search.cli import main
    from search.execution.per_user import load_cohort

    args = ["run", "pu", "--space", "tiny.yaml", "--optimizer", "random", "--trials", "2", "--per-user",
            "--study-dir", str(tmp_path), "--tracking-uri", store, "--no-test"]
    assert main(args) == 0
    cohort = load_cohort("pu", tmp_path)
    experiment = client.get_experiment_by_name("pu")
    runs = client.search_runs([experiment.experiment_id])
    roles = {}
    for run in runs:
        roles.setdefault(run.data.tags.get("pers_search.role"), []).append(run)
    assert len(roles["cohort"]) == 1 and len(roles["trial"]) == 2 * len(cohort.users)
    cohort_run = roles["cohort"][0]
    assert cohort_run.info.status == "FINISHED" and cohort_run.data.metrics["n_users"] == len(cohort.users)
    summary = cohort.summary()
    assert cohort_run.data.metrics["total_storage_bytes"] == pytest.approx(summary["total_storage_bytes"])
    parents = [r for r in runs if r.data.tags.get("pers_search.role") not in ("trial", "cohort")]
    assert len(parents) == len(cohort.users), "one parent run per user"
    by_parent = {p.info.run_id: [t for t in roles["trial"] if t.data.tags.get("mlflow.parentRunId") == p.info.run_id]
                 for p in parents}
    assert sorted(len(v) for v in by_parent.values()) == [2] * len(cohort.users), "each user's trials nest under it"
    assert main(args) == 0, "running it again resumes: nothing new"
    assert len(client.search_runs([experiment.experiment_id])) == len(runs)


def test_a_stop_while_a_trial_run_is_logged_leaves_no_running_run_and_one_run_per_trial(tmp_path, store, client):
    """A signal (Ctrl-C, SIGTERM) inside the logging of a trial run: the half-logged run is closed and
    deleted, and ``stop`` logs the trial whole (seen under load in tests/test_concurrency.py)."""
    study = optimize(parse_space(SPACE), toy_objective, study_name="toy-stop", study_dir=tmp_path, trials=3)
    tracker = Tracker(store).connect("toy-stop", tmp_path)
    real, calls = tracker.client.log_text, []

    def interrupted(run_id, text, path):
        calls.append(run_id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what search.execution.signals raises for SIGTERM
        return real(run_id, text, path)

    tracker.client.log_text = interrupted
    with pytest.raises(KeyboardInterrupt):
        tracker.sync(study)
    tracker.client.log_text = real
    tracker.stop()
    runs = client.search_runs([tracker.experiment_id])
    assert [r.info.run_name for r in runs if r.info.status == "RUNNING"] == []
    trials = [int(r.data.tags["pers_search.trial"]) for r in runs if r.data.tags.get("pers_search.role") == "trial"]
    assert sorted(trials) == [0, 1, 2]  # the deleted half-logged run is not listed


def test_runs_beside_the_study_are_made_logged_and_ended_by_the_tracker(tmp_path, store, client, capfd):
    """The cohort run and the registry's runs go through the tracker: create, log, tag, end (quietly), find."""
    tracker = Tracker(store).connect("beside", tmp_path)
    first = tracker.create_run({"mlflow.runName": "beside (cohort)", "pers_search.role": "cohort"},
                               start_time=int(time.time() * 1000) - 60_000)
    second = tracker.create_run({"pers_search.role": "cohort"})
    tracker.log_values(first, metrics={"n_users": 3, "total_storage_bytes": 1.5e6}, tags={"users": "u" * 6000})
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "summary.json").write_text("{}", encoding="utf-8")
    tracker.log_files(first, tmp_path / "files", "serving")
    tracker.set_run_tag(first, "registered_model", "m/1")
    tracker.end_run(first, "FINISHED")
    run = client.get_run(first)
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    assert run.data.metrics == {"n_users": 3.0, "total_storage_bytes": 1.5e6}
    assert run.data.tags["users"] == "u" * 5000, "a tag is cut to MLflow's length"
    assert run.data.tags["registered_model"] == "m/1"
    assert [f.path for f in client.list_artifacts(first, "serving")] == ["serving/summary.json"]
    assert tracker.artifact_uri(first) == run.info.artifact_uri
    assert "View run" not in capfd.readouterr().out, "ending a run prints nothing on stdout"
    assert tracker.find_run("cohort") == first, "the first-started run of the role"
    assert tracker.find_run("nobody") is None
    tracker.reopen(first)
    assert client.get_run(first).info.status == "RUNNING"
    client.delete_run(second)
    assert tracker.is_usable(first) and not tracker.is_usable(second) and not tracker.is_usable("0" * 32)
