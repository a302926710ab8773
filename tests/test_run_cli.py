"""Studies of real tiny-model trials through the CLI: run, status, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from search.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(study_file: Path) -> list[dict]:
    if not study_file.exists():
        return []
    trials = json.loads(study_file.read_text())["trials"]
    return [t for t in trials if t["state"] in ("completed", "failed")]


def test_run_then_status(tmp_path, capsys):
    code = main(["run", "--space", "tiny.yaml", "--optimizer", "random", "--trials", "3",
                 "--study", "s", "--study-dir", str(tmp_path), "--no-test"])
    assert code == 0
    study = json.loads((tmp_path / "s" / "study.json").read_text())
    assert [t["state"] for t in study["trials"]] == ["completed"] * 3
    assert all("storage_bytes" in t["values"] and "rougeL" in t["values"] for t in study["trials"])
    written = (tmp_path / "s" / "space.yaml").read_text()  # the effective space, overrides named
    assert written.startswith("# the space tiny.yaml as this study runs it\n#   override: optimizer.name=\"random\"\n")
    assert yaml.safe_load(written)["optimizer"]["name"] == "random" and "optimizer.trials=3" in study["space_overrides"]
    capsys.readouterr()
    assert main(["status", "s", "--study-dir", str(tmp_path), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert len(status["trials"]) == 3 and status["pareto"]


def test_front_is_evaluated_on_test_queries(tmp_path, capsys):
    assert main(["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "2",
                 "--study", "t", "--study-dir", str(tmp_path)]) == 0
    trials = json.loads((tmp_path / "t" / "study.json").read_text())["trials"]
    front_tested = [t for t in trials if t["test_values"]]
    assert front_tested, "front trials carry test metrics"
    assert all("rougeL" in t["test_values"] for t in front_tested)
    said = capsys.readouterr().err  # piped: one line per front trial, not a silent spinner
    assert f"evaluating the front's {len(front_tested)} trials on the test queries" in said
    for index, trial in enumerate(front_tested, 1):
        assert f"[{index}/{len(front_tested)}] front trial {trial['number']} on the test queries in " in said


def test_kill_and_resume_redoes_nothing(tmp_path):
    args = ["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "5",
            "--study", "k", "--study-dir", str(tmp_path), "--no-test"]
    study_file = tmp_path / "k" / "study.json"
    proc = _cli(*args, cwd=tmp_path)
    deadline = time.time() + 240
    while len(_finished(study_file)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t["number"]: t for t in _finished(study_file)}
    assert len(before) >= 2, "the study must have finished trials before the kill"
    assert len(before) < 5, "the kill must come before the end"

    resumed = _cli("resume", "k", "--study-dir", str(tmp_path), "--no-test", cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    after = json.loads(study_file.read_text())["trials"]
    done = [t for t in after if t["state"] in ("completed", "failed")]
    assert len(done) == 5
    for number, trial in before.items():  # finished trials are untouched: same values, same times
        assert after[number]["values"] == trial["values"]
        assert after[number]["finished_at"] == trial["finished_at"]
    configs = [json.dumps(t["config"], sort_keys=True) for t in done]
    assert len(set(configs)) == 5, "no configuration is run twice"


def test_status_and_pareto_read_a_study_without_loading_torch(tmp_path):
    """``status``/``pareto`` answer from study.json: no torch, BoTorch or transformers imported."""
    assert main(["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "2", "--study", "quick",
                 "--study-dir", str(tmp_path), "--no-test", "--no-mlflow"]) == 0
    probe = ("import sys; from search.cli import main; code = main(sys.argv[1:]); "
             "heavy = sorted(m for m in ('torch', 'botorch', 'transformers', 'mlflow') if m in sys.modules); "
             "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)")
    for command in (["status", "quick"], ["pareto", "quick", "--json"]):
        done = subprocess.run([sys.executable, "-c", probe, *command, "--study-dir", str(tmp_path)],
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "HEAVY []" in done.stderr, done.stderr
