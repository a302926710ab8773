"""Headless Chromium opens the MLflow UI of a finished study the way a user does: the link
``pers-search ui`` prints shows the front's trials with their objectives, parameters and the knee;
the charts link shows the objectives' scatter plots, the hypervolume curve and parallel coordinates
on readable parameters; the study's run opens in the Model-training pages with the hypervolume and
the plots, and the 3-D plot renders in the artifact preview.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when it is missing.
Screenshots are kept in the test's tmp dirs (``mlflow-front.png``, ``mlflow-charts.png``,
``mlflow-study-run.png``); the first two are also copied into the directory ``$PERS_SEARCH_SCREENSHOTS``
when that is set (how the ones in ``docs/`` are made: ``PERS_SEARCH_SCREENSHOTS=docs pytest -m browser
tests/test_browser_ui.py``); the study run's is not, its tags show a path of the machine.
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
from search.space import parse_space
from search.tracking.links import run_page, runs_link, runs_page
from search.tracking.tracker import Tracker
from search.tracking.views import charts_view_key
from live_server import running_server
from toy_study import free_port

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=20000"]
TALL = "1600,2300"  # every chart section of the charts view on screen (MLflow draws a card once it is visible)
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


def browse(url: str, profile: Path, screenshot: Path | None = None, size: str = "1600,900") -> tuple[str, str]:
    """The rendered page: its visible text (scripts and styles dropped) and its DOM, via ``--dump-dom``."""
    cmd = [CHROMIUM, *FLAGS, f"--window-size={size}", f"--user-data-dir={profile}", "--dump-dom"]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", done.stdout, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split()), done.stdout


def browse_until(needle: str, url: str, profile: Path, screenshot: Path | None = None, size: str = "1600,900",
                 tries: int = 3) -> tuple[str, str]:
    """:func:`browse` again (same profile: the scripts are cached) until the page shows ``needle``: a
    server's first chart view can end its time budget while the chart scripts still load."""
    for _ in range(tries):
        page, dom = browse(url, profile, screenshot, size)
        if needle in page:
            break
    return page, dom


def keep_screenshot(shot: Path, publish: bool = True) -> None:
    """Check ``shot`` is a PNG of a drawn page; with ``publish``, copy it into ``$PERS_SEARCH_SCREENSHOTS``
    when that is set."""
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    if publish and os.environ.get("PERS_SEARCH_SCREENSHOTS"):
        shutil.copyfile(shot, Path(os.environ["PERS_SEARCH_SCREENSHOTS"]) / shot.name)


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
    for column in ("rougeL", "persona_f1", "storage_bytes", "lora.layers", "lora.n_layers", "lora.rank", "rag.k",
                   "knee"):
        assert f" {column} " in page, f"column {column} is shown without picking it"
    names = re.findall(r"trial-\d{3}", page)
    assert names == [f"trial-{t.number:03d}" for t in front], "sorted by rougeL, best first"
    for trial in front:
        row = page[page.index(f"trial-{trial.number:03d}"):]
        for metric in ("rougeL", "persona_f1", "storage_bytes"):
            assert js_number(trial.values[metric]) in row[:400], (metric, trial.number, row[:400])
    knee = study.knee_trial().number
    cells = page[page.rindex(names[-1]):page.index("matching runs")]  # the table's cells, row by row
    flags = re.findall(r"\b(true|false)\b", cells)  # the knee column (the last one) of each row
    assert flags == ["true" if t.number == knee else "false" for t in front], "the knee is marked in its row"
    keep_screenshot(shot)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_charts_link_shows_the_objectives_the_hypervolume_and_readable_parallel_axes(served, tmp_path):
    url, study, tracker, _ = served
    link = f"{url}/{runs_page(tracker.experiment_id, charts_view_key(study.space.objectives), charts=True)}"
    shot = tmp_path / "mlflow-charts.png"
    page, dom = browse_until("Parallel Coordinates", link, tmp_path / "profile", shot, size=TALL)
    titles = ["Pareto front (2)", "storage_bytes vs. rougeL", "storage_bytes vs. persona_f1", "Search progress (1)",
              "hypervolume_fraction", "Parameters (1)", "Parallel Coordinates", "Objectives (3)", "Model metrics ("]
    assert all(t in page for t in titles), [t for t in titles if t not in page]
    assert [page.index(t) for t in titles] == sorted(page.index(t) for t in titles), "the front's charts first"
    assert "trial_seconds" not in page, "the other metrics wait, folded, in Model metrics (not 39 bar charts)"
    assert f"{study.name} (hypervolume_fraction)" in page, "the curve is drawn from the study's run"
    assert dom.count('class="point"') >= 2 * len(study.completed()), "both scatter plots have every trial"
    colors = dict((name, color) for color, name in re.findall(r"(#[0-9a-f]{6}) (trial-\d{3})", page))
    front, knee = {t.number for t in study.pareto_trials()}, study.knee_trial().number
    assert colors == {f"trial-{t.number:03d}": "#2272b4" if t.number == knee else "#c83243" if t.number in front
                      else "#8396a5" for t in study.completed()}, "the front red, the knee blue, the rest grey"

    axes = re.search(r"Parallel Coordinates Showing all runs (.*?) Objectives \(3\)", page).group(1)
    names = [word for word in axes.split() if re.search(r"[A-Za-z]", word)]
    assert names == ["lora.n_layers", "lora.rank", "rag.k", "rougeL", "persona_f1", "storage_bytes"]
    assert not re.search(r"\de\+\d", axes), "no axis in scientific notation (a layer mask read as a number)"
    keep_screenshot(shot)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_study_run_opens_in_model_training_with_the_hypervolume_and_a_previewable_3d_plot(served, tmp_path):
    url, study, tracker, _ = served
    base = f"{url}/#/experiments/{tracker.experiment_id}/runs/{tracker.parent_run_id}"
    own_link = run_page(tracker.experiment_id, tracker.parent_run_id)
    page, dom = browse(base, tmp_path / "profile-0")  # as MLflow's own tables link it (a new browser: GenAI)
    assert re.search(rf'<a[^>]+href="{re.escape(html.escape(own_link))}"[^>]*>this run in the Model-training view</a>',
                     dom), "the description links the run in the Model-training pages"

    shot = tmp_path / "mlflow-study-run.png"
    page, _ = browse(f"{url}/{own_link}", tmp_path / "profile-1", shot)
    assert f"{study.name} Runs {study.name} Overview" in page, "breadcrumb: the experiment's Runs"
    assert "Evaluation runs" not in page and "Model registry" in page, "the Model-training pages, not GenAI"
    assert "ui-study" in page and "hypervolume_fraction" in page
    children = re.search(r"Child runs (.*?) Source", page)
    assert children, page[:2000]
    assert sorted(children.group(1).replace(",", " ").split()) == [f"trial-{n:03d}" for n in range(10)]
    front = sorted(t.number for t in study.pareto_trials())
    assert f"front : {','.join(map(str, front))}" in page
    keep_screenshot(shot, publish=False)  # its tags show the study's directory, a path of this machine

    shot = tmp_path / "preview.png"
    page, dom = browse(f"{base}/artifacts/plots/pareto_3d.png?workflowType=machine_learning",
                       tmp_path / "profile-2", shot)
    assert "plots/pareto_3d.png" in page
    assert re.search(r"<img[^>]+src=\"(blob:|data:|[^\"]*get-artifact)", dom), "the preview shows the PNG as an image"
