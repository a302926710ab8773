"""One writer per study, readers that never write, signals that stop a run cleanly, provenance kept:
with real processes on the tiny model (docs/robustness.md, "Concurrency and ownership")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cli import main
from search.study.study import Study
from search.study.lock import LOCK_FILE, holder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--space", "tiny.yaml", "--optimizer", "random", "--no-test"]


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout: float = 400.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _completed(path: Path) -> int:
    try:
        return sum(t["state"] == "completed" for t in json.loads(path.read_text())["trials"])
    except (FileNotFoundError, ValueError):
        return 0


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``directory``: its bytes and modification time (ns)."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _mlflow_trial_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], filter_string="tags.`pers_search.role` = 'trial'",
                              max_results=1000)
    return runs


def test_a_second_run_of_a_study_is_refused_and_the_first_keeps_every_trial(tmp_path):
    first = _cli("run", "twice", *FAST, "--trials", "4", cwd=tmp_path)
    _wait_for(lambda: holder(tmp_path / "studies" / "twice") is not None or first.poll() is not None, what="the lock")
    second = _cli("run", "twice", *FAST, "--trials", "4", cwd=tmp_path)
    out2, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 2, err2
    line = err2.strip().splitlines()[-1]
    assert line.startswith("pers-search: error: study 'twice' in studies is being written by process "
                           f"{first.pid} on "), line
    assert "wait for it to end" in line and f"kill {first.pid}" in line and "pers-search resume twice" in line
    study = json.loads((tmp_path / "studies" / "twice" / "study.json").read_text())
    assert [t["state"] for t in study["trials"]] == ["completed"] * 4
    runs = _mlflow_trial_runs(os.environ["MLFLOW_TRACKING_URI"], "twice")
    assert sorted(r.data.tags["pers_search.trial"] for r in runs) == ["0", "1", "2", "3"]


def test_readers_change_nothing_and_show_trials_in_flight(tmp_path, capsys):
    """``status``, ``pareto`` and the export's reading leave every byte and mtime of the study as it
    was, beside a live run (whose trials show as running) and after one that was killed (stale)."""
    run = _cli("run", "r", *FAST, "--trials", "6", "--set", "training.max_steps=4", cwd=tmp_path)
    study_file = tmp_path / "studies" / "r" / "study.json"
    seen_running = False
    try:
        _wait_for(lambda: _completed(study_file) >= 1 or run.poll() is not None, what="a first trial")
        while run.poll() is None:  # a reader in a loop must not disturb the writer
            capsys.readouterr()
            if main(["status", "r", "--study-dir", str(tmp_path / "studies"), "--json"]) == 0:
                status = json.loads(capsys.readouterr().out)
                running = [t for t in status["trials"] if t["state"] == "running"]
                if running and status["writer"] is not None:
                    assert status["writer"]["pid"] == run.pid and not any(t["stale"] for t in running)
                    seen_running = True
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    assert seen_running
    assert _completed(study_file) == 6
    # A trial left RUNNING by a killed writer is stale, and reading it writes nothing.
    data = json.loads(study_file.read_text())
    data["trials"].append({**data["trials"][-1], "number": 6, "state": "running", "values": {}, "finished_at": None})
    study_file.write_text(json.dumps(data))
    (study_file.parent / ".study.json.abc.tmp").write_text("half")  # a killed writer's temp file
    before = _snapshot(tmp_path / "studies" / "r")
    capsys.readouterr()
    assert main(["status", "r", "--study-dir", str(tmp_path / "studies")]) == 0
    shown = capsys.readouterr().out
    assert "stale" in shown and "pers-search resume r" in shown
    assert main(["pareto", "r", "--study-dir", str(tmp_path / "studies"), "--json"]) == 0
    assert main(["status", "r", "--study-dir", str(tmp_path / "studies"), "--json"]) == 0
    assert Study.load("r", tmp_path / "studies").trials[6].state.value == "running"
    assert _snapshot(tmp_path / "studies" / "r") == before


def test_the_lock_of_a_killed_writer_is_taken_over_with_a_line(tmp_path):
    run = _cli("run", "k", *FAST, "--trials", "30", "--set", "training.max_steps=4", cwd=tmp_path)
    study_file = tmp_path / "studies" / "k" / "study.json"
    _wait_for(lambda: _completed(study_file) >= 1 or run.poll() is not None, what="a first trial")
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    assert json.loads((tmp_path / "studies" / "k" / LOCK_FILE).read_text())["pid"] == run.pid
    assert holder(tmp_path / "studies" / "k") is None  # the kernel released the dead process's lock
    done = _completed(study_file)
    resumed = _cli("resume", "k", "--trials", str(done + 1), cwd=tmp_path)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"taking over the lock left by process {run.pid} on " in err and "no longer running" in err
    assert _completed(study_file) == done + 1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_run_as_ctrl_c_does(tmp_path, signum):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    name = f"sig{int(signum)}"  # one MLflow experiment per study name, in the session's store
    run = _cli("run", name, *FAST, "--trials", "40", "--set", "training.max_steps=6", cwd=tmp_path,
               env={"TMPDIR": str(scratch)})
    study_file = tmp_path / "studies" / name / "study.json"
    _wait_for(lambda: _completed(study_file) >= 2 or run.poll() is not None, what="two trials")
    time.sleep(0.3)  # most likely inside a trial now
    run.send_signal(signum)
    try:
        _, err = run.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        run.kill()
        raise AssertionError(f"{signal.Signals(signum).name} did not stop the run: {run.communicate()[1][-3000:]}")
    assert run.returncode == 128 + signum, err
    signame = signal.Signals(signum).name
    assert f"stopped by {signame}: finished trials are saved; continue with `pers-search resume {name}" in err
    assert "Traceback" not in err
    kept = _completed(study_file)
    assert kept >= 2
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    study_runs = [r for r in runs if r.data.tags.get("pers_search.role") == "study"]
    assert [r.info.status for r in study_runs] == ["KILLED"]
    assert all(r.info.status != "RUNNING" for r in runs)
    assert len([r for r in runs if r.data.tags.get("pers_search.role") == "trial"]) == kept
    assert not list(scratch.glob("pers-search-*")), list(scratch.iterdir())  # scratch removed


def test_a_signal_before_the_first_trial_leaves_nothing_and_no_resume_hint(tmp_path):
    run = _cli("run", "early", *FAST, "--trials", "2", "--no-mlflow", cwd=tmp_path)
    _wait_for(lambda: holder(tmp_path / "studies" / "early") is not None or run.poll() is not None, what="the lock")
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 143, err
    if (tmp_path / "studies" / "early" / "study.json").exists():
        pytest.skip("the first trial was already recorded when the signal came")
    assert "stopped by SIGTERM before the study's first trial; nothing was saved" in err
    assert "resume" not in err
    assert not (tmp_path / "studies" / "early").exists()  # the directory it made, holding only its lock


def test_resume_refuses_other_data_or_budget_and_names_the_difference(tmp_path, capsys):
    studies = str(tmp_path / "studies")
    assert main(["run", "p", *FAST, "--trials", "1", "--study-dir", studies, "--no-mlflow"]) == 0
    capsys.readouterr()
    code = main(["run", "p", *FAST, "--trials", "2", "--study-dir", studies, "--no-mlflow",
                 "--set", "training.max_steps=5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "ran its 1 trials on other settings than this run's (training.max_steps: 2 -> 5)" in err, err
    data = tmp_path / "users.jsonl"
    users = [{"user_id": f"u{i}", "history": [{"text": f"item {j} of user {i}"} for j in range(4)],
              "queries": [{"input": f"q{j}", "output": f"answer {j}"} for j in range(4)]} for i in range(2)]
    data.write_text("".join(json.dumps(u) + "\n" for u in users))
    code = main(["run", "p", *FAST, "--trials", "2", "--study-dir", studies, "--no-mlflow", "--data", str(data)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "data.source: \"demo\" -> " in err and "users.jsonl" in err, err
    assert Study.load("p", studies).provenance["training"]["max_steps"] == 2


def test_a_hand_edited_space_file_is_honoured_by_resume_and_never_overwritten(tmp_path, capsys):
    studies = str(tmp_path / "studies")
    assert main(["run", "e", *FAST, "--trials", "1", "--study-dir", studies, "--no-mlflow"]) == 0
    path = tmp_path / "studies" / "e" / "space.yaml"
    edited = path.read_text().replace("trials: 1\n", "trials: 2\n")
    assert edited != path.read_text()
    path.write_text(edited + "# more trials, said I\n")
    capsys.readouterr()
    code = main(["run", "e", *FAST, "--trials", "3", "--study-dir", studies, "--no-mlflow"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "space.yaml was edited by hand since the study wrote it" in err
    assert main(["resume", "e", "--study-dir", studies, "--no-mlflow", "--no-test"]) == 0
    assert "as edited by hand" in capsys.readouterr().err
    assert path.read_text() == edited + "# more trials, said I\n"
    assert len(Study.load("e", studies).finished()) == 2


DAMAGED = {
    "not-json": lambda d: "{\"trials\": [",
    "trial-value-text": lambda d: _with_trial(d, values={"rougeL": "high"}),
    "trial-state": lambda d: _with_trial(d, state="done"),
    "trial-config-unknown": lambda d: _with_trial(d, config={**d["trials"][0]["config"], "lora.alpha": 3}),
    "trial-config-range": lambda d: _with_trial(d, config={**d["trials"][0]["config"], "rag.k": 99}),
    "trial-number": lambda d: _with_trial(d, number=7),
    "no-trials": lambda d: json.dumps({k: v for k, v in d.items() if k != "trials"}),
    "space-broken": lambda d: json.dumps({**d, "space": {**d["space"], "objectives": {"rougeL": "up"}}}),
}
EXPECTED = {
    "not-json": "is not valid JSON",
    "trial-value-text": "trials[0].values.rougeL: input should be a valid number",
    "trial-state": "trials[0].state: input should be",
    "trial-config-unknown": "trials[0].config: 'lora.alpha' is not a parameter",
    "trial-config-range": "trials[0].config.rag.k: 99 is outside",
    "trial-number": "trials[0].number: 7 but it is trial 0",
    "no-trials": "trials: missing",
    "space-broken": "space: ",
}


def _with_trial(data: dict, **changes) -> str:
    return json.dumps({**data, "trials": [{**data["trials"][0], **changes}, *data["trials"][1:]]})


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    studies = tmp_path_factory.mktemp("damaged") / "studies"
    assert main(["run", "d", *FAST, "--trials", "1", "--study-dir", str(studies), "--no-mlflow"]) == 0
    return studies


@pytest.mark.parametrize("case", sorted(DAMAGED))
@pytest.mark.parametrize("command", ["status", "pareto", "resume"])
def test_a_damaged_study_file_is_one_line_naming_the_field(stored_study, tmp_path, capsys, case, command):
    import shutil

    studies = tmp_path / "studies"
    shutil.copytree(stored_study, studies)
    path = studies / "d" / "study.json"
    path.write_text(DAMAGED[case](json.loads(path.read_text())))
    capsys.readouterr()
    args = [command, "d", "--study-dir", str(studies)] + (["--no-mlflow"] if command == "resume" else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pers-search: error: study 'd': "), err
    assert str(path) in err and EXPECTED[case] in err and "unexpected" not in err, err


@pytest.mark.parametrize("content, expected", [
    ("[1, 2]", "the top level: input should be a valid dictionary"),
    ('{"users": []}', "users: list should have at least 1 item"),
    ('{"users": ["a", "a"]}', "user ids repeat: ['a']"),
    ('{"users": "a,b"}', "users: input should be a valid list"),
])
def test_a_damaged_cohort_file_is_one_line(tmp_path, capsys, content, expected):
    cohort = tmp_path / "studies" / "c"
    cohort.mkdir(parents=True)
    (cohort / "cohort.json").write_text(content)
    for command in ("status", "export"):
        args = [command, "c", "--study-dir", str(tmp_path / "studies")]
        args += ["--out", str(tmp_path / "out")] if command == "export" else []
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and expected in err and "cohort.json" in err, err


def _session_members(sid: int) -> list[int]:
    """Live processes of a session (``start_new_session``: every process the run started, Ray's too)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_sigterm_on_ray_stops_the_run_and_every_ray_process(tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-m", "search.cli", "run", "ray", *FAST, "--no-mlflow", "--trials", "20",
                            "--workers", "2", "--executor", "ray", "--address", "local",
                            "--set", "training.max_steps=6"], cwd=tmp_path, env=env, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study_file = tmp_path / "studies" / "ray" / "study.json"
    try:
        _wait_for(lambda: _completed(study_file) >= 1 or run.poll() is not None, what="a first trial")
        assert len(_session_members(run.pid)) > 3, "Ray's processes run in the run's session"
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 143, err
    assert "stopped by SIGTERM: finished trials are saved" in err
    _wait_for(lambda: not _session_members(run.pid), timeout=60, what="Ray's processes to end")


def test_a_disk_filling_during_export_is_one_line(stored_study, tmp_path):
    """A write that fails half-way through an export (here a file-size limit: ``write`` fails with EFBIG,
    as it fails with ENOSPC on a full disk; safetensors wraps it in its own error) is one line, exit 1."""
    import resource

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails instead of the process dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "-m", "search.cli", "export", "d", "--study-dir", str(stored_study),
                           "--out", str(tmp_path / "bundle")], env=env, preexec_fn=limited, capture_output=True,
                          text=True, timeout=600)
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr[-2000:]
    assert err[-1].startswith("pers-search: error: File too large") and "unexpected" not in err[-1], err[-3:]
    assert "the disk is full" in err[-1]


def test_a_writer_that_ended_cleanly_leaves_nothing_to_take_over(tmp_path):
    """Only a writer that died leaves its name in the lock file; one that ended (or was refused) does not."""
    from search.study.lock import acquire, release

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "study.json").write_text("{}")
    lines: list[str] = []
    release(acquire(tmp_path / "s", "study 's'", "resume", lines.append))
    assert (tmp_path / "s" / LOCK_FILE).read_text() == "" and holder(tmp_path / "s") is None
    release(acquire(tmp_path / "s", "study 's'", "resume", lines.append))
    assert lines == []
