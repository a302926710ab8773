"""``pers-search ui``: a taken port is an error, signals reach the MLflow server, nothing is left
running, and ``ui STUDY`` opens the study's store and prints the link to its front."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from search.api import optimize
from search.cli import main
from search.space import parse_space
from search.study.study import Study
from search.tracking.links import runs_link
from search.tracking.server import port_in_use
from search.tracking.store import read_record
from toy_study import free_port, objective, toy_space_text

ROOT = Path(__file__).resolve().parents[1]


def children_of() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, out, todo = children_of(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ui_refuses_a_port_another_program_holds(tmp_path, capsys):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        code = main(["ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use by another program" in err and "pass a free --port" in err
    assert not port_in_use("127.0.0.1", port)


@pytest.fixture(scope="module")
def unlogged_study(tmp_path_factory):
    """A finished toy study that was never logged to MLflow."""
    root = tmp_path_factory.mktemp("ui")
    study = optimize(parse_space(toy_space_text("ui-cmd", trials=4, seed=2)), objective, study_dir=root / "studies")
    return study, root


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ui_study_prints_its_link_forwards_the_signal_and_leaves_nothing(unlogged_study, stop, capsys):
    study, root = unlogged_study
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(study.directory.rglob("*")) if p.is_file()}
    store = f"sqlite:///{root}/mlruns/mlflow.db"
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", "ui", study.name, "--study-dir", str(root / "studies"),
                             "--tracking-uri", store, "--port", str(port)], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=open(root / f"ui-{stop.name}.err", "w"), text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=240)
    try:
        assert lines and lines[0].strip(), (root / f"ui-{stop.name}.err").read_text()[-3000:]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=store)
        experiment = client.get_experiment_by_name(study.name)  # the study was logged to the store first
        assert lines[0].strip() == runs_link(f"http://127.0.0.1:{port}", experiment.experiment_id,
                                             study.space.objectives)
        runs = client.search_runs([experiment.experiment_id], max_results=100)
        roles = sorted(r.data.tags.get("pers_search.role") for r in runs)
        assert roles == ["study"] + ["trial"] * 4, "a second `ui` finds the runs the first one logged"
        workers = descendants(proc.pid)
        assert len(workers) >= 2, "mlflow server and its uvicorn worker"
    finally:
        proc.send_signal(stop)
        code = proc.wait(timeout=90)
    assert code == 0
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in workers if alive(pid)], "no process of the MLflow server outlives `ui`"
    assert not port_in_use("127.0.0.1", port)

    # `ui` reads the study: nothing in its directory changed (no mlflow.json, no run ids written)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(study.directory.rglob("*")) if p.is_file()}
    assert after == before and read_record(study.directory) == {}
    assert "mlflow_run_id" not in Study.load(study.name, root / "studies").trials[0].user_attrs
