"""What saas-nehvi's layer screen found reaches the user: the study file, the progress lines, `status` and MLflow."""

from __future__ import annotations

import io
import json
import random

from rich.console import Console

from search.api import optimize
from search.cli import main
from search.optimizers import AcquisitionOptions
from search.optimizers.saas.flag_screen import SCREEN_FROM
from search.commands.progress import StudyProgress
from search.space import parse_space
from search.study.study import Study
from search.results.suggest_notes import describe_notes, mlflow_tags
from search.tracking.tracker import Tracker

SPACE = """
name: noted
objectives: {quality: max, storage: min}
parameters:
  layers: {type: layer_mask, size: 8}
  count: {type: int, low: 1, high: 4, default: 1}
optimizer: {name: saas-nehvi, nuts: {warmup: 16, samples: 8, thinning: 2}}
"""
FAST = AcquisitionOptions(num_restarts=2, raw_samples=32, mc_samples=16, maxiter=8)


def quality(config: dict) -> dict:
    layers = config["layers"]
    noise = random.Random(str(config)).gauss(0, 0.01)
    return {"quality": 0.3 * (layers[1] + layers[6]) * config["count"] / 4 + noise}


def storage(config: dict) -> float:
    return float(config["count"] * sum(config["layers"]))


def test_the_layer_screen_is_recorded_printed_shown_by_status_and_tagged_in_mlflow(tmp_path):
    out = io.StringIO()
    progress = StudyProgress(Console(file=out, force_terminal=False, width=200), SCREEN_FROM + 1)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = Tracker(store).connect("noted", tmp_path)
    study = optimize(parse_space(SPACE), quality, study_dir=tmp_path, trials=SCREEN_FROM + 1, init_trials=SCREEN_FROM,
                     known_objectives={"storage": storage}, options=FAST, callbacks=[progress, tracker])
    tracker.finish(study)

    *start, last = Study.load("noted", tmp_path).trials
    assert all(t.suggest_notes == {} for t in start), "the quasi-random start has no model"
    seen = last.suggest_notes["layers_seen"]["layers"]
    assert {1, 6} <= set(seen) <= set(range(8)), "the screen keeps the layers that carry quality"
    [sentence] = describe_notes(last.suggest_notes, study.space)  # its wording: the test below
    assert sentence.startswith("layer screen: ")

    printed = out.getvalue()
    assert f"trial {SCREEN_FROM} suggested; {sentence}" in printed
    assert printed.count("layer screen") == 1

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    [run] = client.search_runs([tracker.experiment_id], filter_string=f"tags.`pers_search.trial` = '{SCREEN_FROM}'")
    assert run.data.tags["layers_seen.layers"] == ",".join(map(str, seen)) == mlflow_tags(last.suggest_notes)["layers_seen.layers"]
    assert client.get_run(tracker.parent_run_id).data.tags["layers_seen.layers"] == ",".join(map(str, seen))


def test_status_prints_the_latest_screen(tmp_path, capsys):
    study = Study.create("old", tmp_path, parse_space(SPACE).bind(8))
    study.add_trial({"layers": [1, 0, 0, 0, 0, 0, 1, 0], "count": 2}, suggest_notes={"layers_seen": {"layers": [0, 6]}})
    study.complete_trial(0, {"quality": 0.2, "storage": 4.0})
    assert main(["status", "old", "--study-dir", str(tmp_path)]) == 0
    assert ("trial 0 suggested; layer screen: the model sees layers 0, 6 one by one (of 8), the other 6 only by how "
            "many are on") in capsys.readouterr().out
    stored = json.loads((tmp_path / "old" / "study.json").read_text())
    assert stored["trials"][0]["suggest_notes"] == {"layers_seen": {"layers": [0, 6]}}
    # a study file written before the notes existed still loads
    del stored["trials"][0]["suggest_notes"]
    (tmp_path / "old" / "study.json").write_text(json.dumps(stored))
    assert Study.load("old", tmp_path).trials[0].suggest_notes == {}


def test_the_screen_is_worded_for_none_some_and_every_layer():
    space = parse_space(SPACE).bind(8)
    assert describe_notes({}, space) == []
    assert describe_notes({"layers_seen": {"layers": []}}, space) == [
        "layer screen: no layer of layers has shown an effect yet; the model sees only how many of its 8 are on"]
    assert describe_notes({"layers_seen": {"layers": list(range(8))}}, space) == [
        "layer screen: every layer of layers (8) has shown an effect; the model sees each one"]
    assert describe_notes({"layers_seen": {"layers": [3]}}, space) == [
        "layer screen: the model sees layers 3 one by one (of 8), the other 7 only by how many are on"]
    assert mlflow_tags({"layers_seen": {"layers": []}}) == {"layers_seen.layers": "none"}


def test_the_live_panel_keeps_the_latest_screen(tmp_path):
    out = io.StringIO()
    progress = StudyProgress(Console(file=out, force_terminal=True, width=200), 2)
    assert progress.live is not None  # a terminal: the panel, not lines
    study = Study.create("panel", tmp_path, parse_space(SPACE).bind(8))
    notes = {"layers_seen": {"layers": [1, 6]}}
    record = study.add_trial({"layers": [0, 1, 0, 0, 0, 0, 1, 0], "count": 2}, suggest_notes=notes)
    with progress:
        progress.trial_started(study, record, 0)
        progress.trial_started(study, study.add_trial({"layers": [0] * 8, "count": 1}, suggest_notes=notes), 1)
        panel = Console(file=io.StringIO(), width=200, record=True)
        panel.print(progress._panel())
    [sentence] = describe_notes(notes, study.space)
    rows = [line.split() for line in panel.export_text().splitlines()]
    assert ["model", *sentence.split()] in rows
    printed = out.getvalue()
    assert "trial 0 suggested; layer screen" in printed
    assert "trial 1 suggested" not in printed, "printed once, not again for the same screen"
