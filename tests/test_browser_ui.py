"""Headless Chromium opens the MLflow UI of a finished study: the experiment, its runs and the front.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped when it is missing.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from search.api import optimize
from search.commands.mlflow_commands import running_server
from search.space import parse_space
from search.tracking import Tracker
from toy_study import free_port, objective, toy_space_text

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", "--virtual-time-budget=20000"]
SPACE = toy_space_text("ui-study", trials=5, seed=11)


def browse(url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The rendered page's visible text (scripts and styles dropped), via ``--dump-dom``."""
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--dump-dom"]
    if screenshot is not None:
        cmd.append(f"--screenshot={screenshot}")
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", done.stdout, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_ui_shows_the_experiment_its_runs_and_the_front(tmp_path):
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    tracker = Tracker(store).connect("ui-study", tmp_path / "studies")
    study = optimize(parse_space(SPACE), objective, study_dir=tmp_path / "studies", callbacks=[tracker])
    tracker.finish(study)
    front = {t.number for t in study.pareto_trials()}
    exp = tracker.experiment_id
    with running_server(store, port=free_port(), log=str(tmp_path / "server.log"), timeout=180) as url:
        shot = tmp_path / "front.png"
        page = browse(f"{url}/#/experiments/{exp}/runs?searchFilter=tags.pareto%20%3D%20%22true%22",
                      tmp_path / "profile-1", screenshot=shot)
        assert "ui-study" in page and "Training runs" in page
        assert f"{len(front) + 1} matching runs" in page, "the front's trials and their parent run"
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000

        page = browse(f"{url}/#/experiments/{exp}/runs/{tracker.parent_run_id}", tmp_path / "profile-2")
        assert "ui-study" in page and "hypervolume" in page
        children = re.search(r"Child runs (.*?) Source", page)
        assert children, page[:2000]
        assert sorted(children.group(1).replace(",", " ").split()) == [f"trial-{n:03d}" for n in range(5)]
        assert f"front : {','.join(map(str, sorted(front)))}" in page
