"""Headless Chromium opens the MLflow UI of a finished study the way a user does: the link
``pers-search ui`` prints shows the front's trials with their objectives and parameters, the parent
run holds the hypervolume and the plots, and the 3-D plot renders in the artifact preview.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when it is missing.
The screenshot of the front is kept as ``mlflow-front.png`` in the test's tmp dir, and also
written to ``$PERS_SEARCH_SCREENSHOT`` when that is set (how ``docs/mlflow-front.png`` is made).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from search.api import optimize
from search.commands.mlflow_commands import running_server
from search.space import parse_space
from search.tracking import Tracker, runs_link
from toy_study import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1600,900", "--virtual-time-budget=20000"]
SPACE = """
name: ui-study
objectives: {rougeL: max, persona_f1: max, storage_bytes: min}
parameters:
  lora.layers: {type: layer_mask, size: 4, default: all}
  lora.rank: {type: choice, values: [2, 4, 8, 16]}
  rag.k: {type: int, low: 0, high: 4}
optimizer: {name: random, init_trials: 2, trials: 10, seed: 11}
"""


def objective(config):
    """A model-free stand-in with the real metrics' names and scales: memory buys quality at a
    storage cost, retrieval buys personalization."""
    layers, rank, k = sum(config["lora.layers"]), config["lora.rank"], config["rag.k"]
    return {"rougeL": 0.12 + 0.012 * layers * rank ** 0.5 - 0.004 * k,
            "persona_f1": 4.0 + 2.5 * k + 0.3 * layers,
            "storage_bytes": float(layers * rank * 3 * 576 * 2 * 2 * 1536 // 4)}


def browse(url: str, profile: Path, screenshot: Path | None = None) -> tuple[str, str]:
    """The rendered page: its visible text (scripts and styles dropped) and its DOM, via ``--dump-dom``."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom"]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", done.stdout, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split()), done.stdout


def js_number(value: float) -> str:
    """How the browser prints a metric value (JavaScript's shortest round-trip form)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    store = f"sqlite:///{root}/mlruns/mlflow.db"
    tracker = Tracker(store).connect("ui-study", root / "studies")
    study = optimize(parse_space(SPACE), objective, study_dir=root / "studies", callbacks=[tracker])
    tracker.finish(study)
    with running_server(store, port=free_port(), log=str(root / "server.log"), timeout=180) as url:
        yield url, study, tracker, root


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_link_opens_the_fronts_trials_with_their_values(served, tmp_path):
    url, study, tracker, _ = served
    front = sorted(study.pareto_trials(), key=lambda t: -t.values["rougeL"])
    assert len(front) >= 3
    shot = tmp_path / "mlflow-front.png"
    page, _ = browse(runs_link(url, tracker.experiment_id, study.space.objectives), tmp_path / "profile", shot)
    assert "ui-study" in page and "Observability" not in page, "the model-training pages, not the GenAI overview"
    assert f"{len(front)} matching runs" in page, "the front's trials, listed flat (no collapsed parent)"
    for column in ("rougeL", "persona_f1", "storage_bytes", "lora.layers", "lora.rank", "rag.k"):
        assert f" {column} " in page, f"column {column} is shown without picking it"
    names = re.findall(r"trial-\d{3}", page)
    assert names == [f"trial-{t.number:03d}" for t in front], "sorted by rougeL, best first"
    for trial in front:
        row = page[page.index(f"trial-{trial.number:03d}"):]
        for metric in ("rougeL", "persona_f1", "storage_bytes"):
            assert js_number(trial.values[metric]) in row[:400], (metric, trial.number, row[:400])
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if os.environ.get("PERS_SEARCH_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["PERS_SEARCH_SCREENSHOT"])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_parent_run_holds_the_hypervolume_and_a_previewable_3d_plot(served, tmp_path):
    url, study, tracker, _ = served
    base = f"{url}/#/experiments/{tracker.experiment_id}/runs/{tracker.parent_run_id}"
    page, _ = browse(f"{base}?workflowType=machine_learning", tmp_path / "profile-1")
    assert "ui-study" in page and "hypervolume_fraction" in page
    children = re.search(r"Child runs (.*?) Source", page)
    assert children, page[:2000]
    assert sorted(children.group(1).replace(",", " ").split()) == [f"trial-{n:03d}" for n in range(10)]
    front = sorted(t.number for t in study.pareto_trials())
    assert f"front : {','.join(map(str, front))}" in page

    shot = tmp_path / "preview.png"
    page, dom = browse(f"{base}/artifacts/plots/pareto_3d.png?workflowType=machine_learning",
                       tmp_path / "profile-2", shot)
    assert "plots/pareto_3d.png" in page
    assert re.search(r"<img[^>]+src=\"(blob:|data:|[^\"]*get-artifact)", dom), "the preview shows the PNG as an image"
