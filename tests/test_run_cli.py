"""Studies of real tiny-model trials through the CLI: run, status, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
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


def test_front_is_shown_on_the_test_queries_its_trials_answered(tmp_path, capsys):
    assert main(["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "3",
                 "--study", "t", "--study-dir", str(tmp_path)]) == 0
    trials = json.loads((tmp_path / "t" / "study.json").read_text())["trials"]
    # Every trial answered its test queries with its own memory, kept out of the optimiser's values...
    assert all(set(t["user_attrs"]["test_metrics"]) >= {"rougeL", "rougeL_se", "storage_bytes", "n_queries"}
               for t in trials)
    assert all(not any(k.startswith("test") for k in t["values"]) for t in trials)
    # ...and only the front's are shown, as they were measured: nothing is trained again.
    front_tested = [t for t in trials if t["test_values"]]
    assert front_tested
    assert all(t["test_values"] == t["user_attrs"]["test_metrics"] for t in front_tested)
    assert "trains again" not in capsys.readouterr().err
    # The figures are those of a separate run on the test split (same seed, same training).
    from search.study.setup import trial_setup
    from search.study.study import Study
    from search.execution.trial_objective import TrialObjective
    study = Study.load("t", tmp_path)
    first = front_tested[0]
    again = TrialObjective(trial_setup(study.space)).test_metrics(first["config"])
    for metric in ("rougeL", "persona_f1", "storage_bytes", "n_queries"):
        assert first["test_values"][metric] == pytest.approx(again[metric], abs=1e-9), metric


def test_a_front_trial_without_test_answers_is_trained_again_on_the_test_queries(tmp_path, capsys):
    assert main(["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "2",
                 "--study", "t", "--study-dir", str(tmp_path), "--no-test"]) == 0
    trials = json.loads((tmp_path / "t" / "study.json").read_text())["trials"]
    assert not any(t["test_values"] or "test_metrics" in t["user_attrs"] for t in trials)
    capsys.readouterr()
    assert main(["resume", "t", "--study-dir", str(tmp_path)]) == 0
    trials = json.loads((tmp_path / "t" / "study.json").read_text())["trials"]
    front_tested = [t for t in trials if t["test_values"]]
    assert front_tested and all("rougeL" in t["test_values"] for t in front_tested)
    said = capsys.readouterr().err  # piped: one line per front trial, not a silent spinner
    n = len(front_tested)
    assert f"evaluating {n} front trial{'s' if n > 1 else ''} on the test queries (each trains again" in said
    for index, trial in enumerate(front_tested, 1):
        assert f"[{index}/{n}] front trial {trial['number']} on the test queries in " in said


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


def _lines_as_they_come(proc: subprocess.Popen, fd: int, timeout: float) -> list[tuple[str, bool]]:
    """Read ``fd`` until it closes: each line, and whether the process was still running when it arrived."""
    import select

    seen, pending, deadline = [], b"", time.time() + timeout
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # a pty whose other end closed
            chunk = b""
        if not chunk:
            break
        running = proc.poll() is None
        *complete, pending = (pending + chunk).split(b"\n")
        seen += [(line.decode(errors="replace").rstrip("\r"), running) for line in complete]
    return seen


@pytest.mark.parametrize("where", ["dumb terminal", "pipe"])
def test_a_dumb_terminal_or_a_pipe_gets_a_line_per_trial_as_it_ends(tmp_path, where):
    """``TERM=dumb`` (rich cannot redraw a panel there) and a pipe both get each trial's line when
    the trial ends, not everything at the end; stdout (the tables) is a pipe either way."""
    import pty

    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE")}
    env.update(PYTHONPATH=str(ROOT), TERM="dumb")
    args = [sys.executable, "-m", "search.cli", "run", "--space", "tiny.yaml", "--optimizer", "sobol",
            "--trials", "3", "d", "--study-dir", str(tmp_path), "--no-test", "--no-mlflow"]
    if where == "dumb terminal":
        reader, writer = pty.openpty()
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=writer)
        os.close(writer)
    else:
        proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = proc.stdout.fileno()
    try:
        lines = _lines_as_they_come(proc, reader, timeout=300)
    finally:
        proc.wait(timeout=60)
        if where == "dumb terminal":
            os.close(reader)
            proc.stdout.close()
    assert proc.returncode == 0, lines
    trial_lines = [(line, running) for line, running in lines if " trial " in line and "] trial" in line]
    assert [line.split(" completed")[0] for line, _ in trial_lines] == [f"[{i}/3] trial {i - 1}" for i in (1, 2, 3)]
    assert trial_lines[0][1], "the first trial's line arrives while the study still runs"
    assert all("HV " in line and "lora." in line for line, _ in trial_lines)
    assert not any("trials " in line and "of 3 finished" in line for line, _ in lines), "no panel on a dumb terminal"


def test_run_ends_with_the_next_commands_and_the_mlflow_link(tmp_path, capsys):
    """After the front, ``run`` prints the commands to go on with (naming a --study-dir that is not the
    default) and the link to the study's front in MLflow, the one ``pareto`` and ``ui`` print."""
    from search.study.study import Study
    from search.tracking.links import study_link

    studies = tmp_path / "runs"
    assert main(["run", "n", "--space", "tiny.yaml", "--trials", "3", "--study-dir", str(studies), "--no-test",
                 "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 0
    said = capsys.readouterr().err
    where = f"--study-dir {studies}"
    steps = said[said.index("next:"):].splitlines()
    assert [line.split("#")[0].strip() for line in steps[1:5]] == [
        f"pers-search pareto n {where}", f"pers-search resume n --trials 10 {where}",
        f"pers-search ui n {where}", f"pers-search export n --out bundles/n {where}"]
    link = study_link(Study.load("n", studies))
    assert link.startswith("http://127.0.0.1:5000/#/experiments/") and link in said
    assert steps[5] == f"the front in MLflow (start the UI first: pers-search ui n {where}):" and steps[6] == link
    assert main(["pareto", "n", "--study-dir", str(studies)]) == 0  # the first next step works as printed
    assert link in capsys.readouterr().out


def test_next_steps_name_importance_once_it_has_enough_trials():
    from search.commands.searching import next_steps
    from search.results.importance import MIN_TRIALS

    assert any(line.split("#")[0].strip() == "pers-search importance s" for line in next_steps("s", "studies", MIN_TRIALS))
    per_user = [line.split("#")[0].strip() for line in next_steps("c", "studies", 2, per_user=True)[1:]]
    assert per_user == ["pers-search pareto c", f"pers-search resume c --trials {MIN_TRIALS}", "pers-search ui",
                        "pers-search export c --out bundles/c"]


def test_a_per_user_run_ends_with_its_next_commands_and_no_link_without_mlflow(tmp_path, capsys):
    assert main(["run", "p", "--space", "tiny.yaml", "--per-user", "--trials", "2", "--study-dir", str(tmp_path),
                 "--no-test", "--no-mlflow"]) == 0
    said = capsys.readouterr().err
    assert f"pers-search pareto p --study-dir {tmp_path}" in said
    assert f"pers-search export p --out bundles/p --study-dir {tmp_path}" in said
    assert "in MLflow" not in said
    assert main(["pareto", "p", "--study-dir", str(tmp_path)]) == 0  # works as printed
    # One user's trial, as the README says: that user's study, found through --study-dir <study>/users.
    user = sorted(path.name for path in (tmp_path / "p" / "users").iterdir())[0]
    assert main(["export", user, "--study-dir", str(tmp_path / "p" / "users"), "--pick", "trial:0",
                 "--out", str(tmp_path / "one")]) == 0
    served = yaml.safe_load((tmp_path / "one" / "serving.yaml").read_text())
    assert list(served["adapters"]) == [user]  # demo ids are plain: the directory name is the user id
