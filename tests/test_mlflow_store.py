"""The MLflow store: no usage reporting leaves the machine, two studies may create one store at
once, and a ``file://`` store is refused in one line unless the user opts in to it (issue 33).

The offline checks run the real commands in subprocesses under a ``sitecustomize`` that records
and refuses every attempt to reach another machine (name lookups and connections), with the
markers by which MLflow switches its telemetry off by itself in CI and under pytest removed, so
that what is checked is what a user's run does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from search.api import optimize
from search.space import parse_space
from search.tracking.store import TrackingUsageError, check_reachable
from search.tracking.tracker import Tracker
from search.execution.usage_reporting import SWITCHES, usage_reporting_off
from toy_study import free_port, objective, toy_space_text

ROOT = Path(__file__).resolve().parents[1]
NET_LOG = "PERS_SEARCH_TEST_NET_LOG"
# What makes MLflow switch its telemetry off by itself (mlflow/telemetry/utils.py), and the user's
# own switches: all removed, so that a child process sees what a user's terminal would give it.
AUTO_OFF = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL", "TRAVIS",
            "TF_BUILD", "BITBUCKET_BUILD_NUMBER", "CODEBUILD_BUILD_ARN", "BUILDKITE", "TEAMCITY_VERSION",
            "CLOUD_RUN_EXECUTION", "RUNBOT_HOST_URL", "RUNBOT_BUILD_NAME", "RUNBOT_WORKER_ID", "DO_NOT_TRACK",
            "TRANSFORMERS_OFFLINE", *(s.variable for s in SWITCHES))

NETWORK_GUARD = '''
"""Test hook: record and refuse every attempt to reach a host other than this machine."""
import os, socket, traceback

_LOCAL = {"", "localhost", "::1", "0.0.0.0", "::", socket.gethostname()}


def _local(host):
    host = host.decode() if isinstance(host, bytes) else str(host)
    return host in _LOCAL or host.startswith("127.") or host.startswith("/")


def _refuse(what):
    record = f"pid {os.getpid()}: {what}\\n{''.join(traceback.format_stack(limit=10))}\\n".encode()
    fd = os.open(os.environ["%(log)s"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, record)  # one write: a reader never sees half a record
    finally:
        os.close(fd)
    raise socket.gaierror(socket.EAI_NONAME, f"network refused by the test: {what}")


_getaddrinfo, _gethostbyname, _connect, _connect_ex = (socket.getaddrinfo, socket.gethostbyname,
                                                        socket.socket.connect, socket.socket.connect_ex)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local(host):
        _refuse(f"lookup {host}")
    return _getaddrinfo(host, *args, **kwargs)


def gethostbyname(host):
    if not _local(host):
        _refuse(f"lookup {host}")
    return _gethostbyname(host)


def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address}")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        _refuse(f"connect {address}")
    return _connect_ex(self, address)


socket.getaddrinfo, socket.gethostbyname = getaddrinfo, gethostbyname
socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
''' % {"log": NET_LOG}

# The tracker connected as `run` connects it (creating an experiment, an event MLflow reports),
# then MLflow asked whether it reports; with a telemetry client, time for its config lookup (made
# in a thread), and the client's state on a second line for the failure message.
TELEMETRY_PROBE = """
import json, os, sys, time
from search.tracking.tracker import Tracker
Tracker(sys.argv[1]).connect("probe", sys.argv[2])
from mlflow.telemetry import get_telemetry_client
from mlflow.telemetry.utils import is_telemetry_disabled
client = get_telemetry_client()
print(json.dumps({"disabled": is_telemetry_disabled(), "client": client is not None}), flush=True)
deadline = time.monotonic() + 60
log = os.environ["%(log)s"]
while client is not None and not (os.path.exists(log) and os.path.getsize(log)) and time.monotonic() < deadline:
    time.sleep(0.1)
import socket
print({"guard": socket.getaddrinfo.__module__,
       **{k: getattr(client, k, None) for k in ("is_active", "_is_stopped", "config", "_config_thread")}}, flush=True)
""" % {"log": NET_LOG}


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A child's environment: the network guard first on the path, no CI markers, no user switches."""
    guard = tmp_path / "guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in AUTO_OFF and not k.startswith("RUNBOT_")}
    env.update(PYTHONPATH=f"{guard}{os.pathsep}{ROOT}", OMP_NUM_THREADS="1",
               **{NET_LOG: str(tmp_path / "net.log")}, **extra)
    return env


def attempts(tmp_path: Path) -> str:
    """What the guard recorded (empty: nothing tried to leave the machine)."""
    log = tmp_path / "net.log"
    if not log.exists():
        return ""
    return log.read_text(encoding="utf-8") or "an attempt, cut off while it was recorded (its process ended)"


def network_denied(command: list[str]) -> list[str]:
    """``command`` in a network namespace of its own (no interface but a down loopback) when this
    machine lets an unprivileged user make one (``unshare -rn``), else ``command`` as it is."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn", *command]
    return command


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.cli", *args]


# --------------------------------------------------------------------------- the switches
def test_usage_reporting_is_switched_off_where_the_user_has_not_decided(tmp_path):
    no_ray_config = {"RAY_USAGE_STATS_CONFIG_PATH": str(tmp_path / "none.json")}
    env = dict(no_ray_config)
    assert usage_reporting_off(env) == {"MLFLOW_DISABLE_TELEMETRY": "true", "RAY_USAGE_STATS_ENABLED": "0",
                                        "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    assert usage_reporting_off(env) == {}, "a second call changes nothing"

    chosen = {**no_ray_config, "MLFLOW_DISABLE_TELEMETRY": "false", "RAY_USAGE_STATS_ENABLED": "1",
              "HF_HUB_OFFLINE": "0"}
    assert usage_reporting_off(chosen) == {"HF_HUB_DISABLE_TELEMETRY": "1"}
    assert chosen["MLFLOW_DISABLE_TELEMETRY"] == "false" and chosen["RAY_USAGE_STATS_ENABLED"] == "1"
    assert chosen["HF_HUB_OFFLINE"] == "0"

    do_not_track = {**no_ray_config, "DO_NOT_TRACK": "false"}  # MLflow and the HF hub read it too
    assert set(usage_reporting_off(do_not_track)) == {"RAY_USAGE_STATS_ENABLED", "HF_HUB_OFFLINE"}

    (tmp_path / "ray.json").write_text('{"usage_stats": true}')  # what `ray enable-usage-stats` writes
    ray_enabled = {"RAY_USAGE_STATS_CONFIG_PATH": str(tmp_path / "ray.json")}
    assert "RAY_USAGE_STATS_ENABLED" not in usage_reporting_off(ray_enabled)


def test_mlflow_reports_nothing_unless_the_user_turns_telemetry_on(tmp_path):
    """MLflow's own answer after the switch (its telemetry client is off), and the control: with
    ``MLFLOW_DISABLE_TELEMETRY=false`` the user's choice stands and the guard sees MLflow's lookup,
    which shows the guard would catch it."""
    def probe(case: str, **env: str) -> subprocess.CompletedProcess:
        (tmp_path / case).mkdir()
        return subprocess.run([sys.executable, "-c", TELEMETRY_PROBE, f"sqlite:///{tmp_path}/{case}/mlflow.db",
                               str(tmp_path / case / "studies")], env=offline_env(tmp_path / case, **env),
                              capture_output=True, text=True, timeout=300)

    off = probe("off")
    assert off.returncode == 0, off.stderr[-2000:]
    assert json.loads(off.stdout.splitlines()[0]) == {"disabled": True, "client": False}
    assert attempts(tmp_path / "off") == ""

    on = probe("on", MLFLOW_DISABLE_TELEMETRY="false", _MLFLOW_TELEMETRY_LOGGING="true")  # its errors on stderr
    assert on.returncode == 0, on.stderr[-2000:]
    assert json.loads(on.stdout.splitlines()[0]) == {"disabled": False, "client": True}
    assert "lookup config.mlflow-telemetry.io" in attempts(tmp_path / "on"), on.stdout + on.stderr[-3000:]


def _first_line(proc: subprocess.Popen, timeout: float) -> str:
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=timeout)
    return lines[0].strip() if lines else ""


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def _descendants(pid: int) -> list[int]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            tree.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        children = tree.get(todo.pop(), [])
        out += children
        todo += children
    return out


def test_the_ui_server_runs_with_telemetry_off_and_tries_no_network(tmp_path):
    """``ui`` on a new store: the MLflow server it starts (and its workers) get
    ``MLFLOW_DISABLE_TELEMETRY=true``, tell the browser UI not to report, and reach no other host."""
    port = free_port()
    proc = subprocess.Popen(cli("ui", "--tracking-uri", f"sqlite:///{tmp_path}/mlruns/mlflow.db", "--port", str(port)),
                            cwd=tmp_path, env=offline_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "ui.err", "w"), text=True)
    try:
        link = _first_line(proc, timeout=300)
        assert link.startswith(f"http://127.0.0.1:{port}/"), (tmp_path / "ui.err").read_text()[-3000:]
        server_envs = [env for env in map(_environ, _descendants(proc.pid)) if env]
        assert server_envs, "the mlflow server runs under ui"
        assert {env.get("MLFLOW_DISABLE_TELEMETRY") for env in server_envs} == {"true"}
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30) as answer:
            assert json.load(answer)["disable_ui_telemetry"] is True
        assert (tmp_path / "mlruns" / "mlflow.db.lock").exists(), "ui made the new store under its lock"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 0
    assert attempts(tmp_path) == ""


# --------------------------------------------------------------------------- store creation
CONNECT = "import sys; from search.tracking.tracker import Tracker; Tracker(sys.argv[1]).connect(sys.argv[2], sys.argv[3])"


def _together(commands: list[list[str]], cwd: Path, env: dict[str, str] | None = None) -> list[tuple[int, str]]:
    """Start the commands at once; their exit codes and the ends of their stderr."""
    env = env or {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    logs = [cwd / f"proc-{i}.err" for i in range(len(commands))]
    procs = [subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
             for c, log in zip(commands, logs)]
    codes = [p.wait(timeout=900) for p in procs]
    return [(code, log.read_text()[-2000:]) for code, log in zip(codes, logs)]


def _experiments(store: str) -> set[str]:
    from mlflow.tracking import MlflowClient

    return {e.name for e in MlflowClient(tracking_uri=store).search_experiments()}


def test_two_studies_started_at_once_create_one_new_store(tmp_path):
    """Before the lock, the second of two processes opening a new SQLite store failed in MLflow's
    migration (5 of 5 pairs: ``duplicate column name`` or ``Online migration expected to match one
    row``). Three pairs of processes connecting the tracker as ``run`` does: both exit 0 and both
    experiments are there."""
    for round_ in range(3):
        store = f"sqlite:///{tmp_path}/round{round_}/mlflow.db"
        results = _together([[sys.executable, "-c", CONNECT, store, name, str(tmp_path / "studies")]
                             for name in ("a", "b")], tmp_path)
        assert [code for code, _ in results] == [0, 0], results
        assert _experiments(store) >= {"a", "b"}


def test_two_studies_run_at_once_on_a_new_store_offline(tmp_path):
    """Two real ``pers-search run`` on the tiny space, started together on one new SQLite store,
    cut off from the network where the machine allows it (``unshare -rn``) and under the guard:
    both complete, both experiments hold their trial runs, and nothing they started (worker
    processes included) looked up or reached another host."""
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = offline_env(tmp_path)
    results = _together([network_denied(cli("run", name, "--space", "tiny.yaml", "--trials", "2", "--no-test",
                                             "--tracking-uri", store, "--study-dir", str(tmp_path / "studies")))
                         for name in ("a", "b")], tmp_path, env)
    assert [code for code, _ in results] == [0, 0], results
    assert attempts(tmp_path) == ""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    for name in ("a", "b"):
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], filter_string="tags.`pers_search.role` = 'trial'")
        assert sorted(r.data.tags["pers_search.trial"] for r in runs) == ["0", "1"]
        assert [t["state"] for t in json.loads((tmp_path / "studies" / name / "study.json").read_text())["trials"]] \
            == ["completed", "completed"]


# --------------------------------------------------------------------------- file:// stores
def test_a_file_store_is_refused_with_the_sqlite_uri_to_use(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    with pytest.raises(TrackingUsageError) as caught:
        check_reachable(f"file://{tmp_path}/mlruns")
    assert caught.value.exit_code == 2
    assert f"use a SQLite store, e.g. --tracking-uri sqlite:///{tmp_path}/mlruns/mlflow.db" in str(caught.value)
    assert "MLFLOW_ALLOW_FILE_STORE=true" in str(caught.value)


def test_a_file_store_works_when_the_user_opts_in(tmp_path, monkeypatch):
    """With ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow's own opt-in) a study logs to a file store."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = f"file://{tmp_path}/mlruns"
    tracker = Tracker(store, artifact_budget=0.0).connect("fs", tmp_path / "studies")
    study = optimize(parse_space(toy_space_text("fs", trials=3, seed=1)), objective, study_name="fs",
                     study_dir=tmp_path / "studies", callbacks=[tracker])
    tracker.finish(study)
    from mlflow.tracking import MlflowClient

    runs = MlflowClient(tracking_uri=store).search_runs([tracker.experiment_id])
    assert sorted(r.data.tags.get("pers_search.trial", "parent") for r in runs) == ["0", "1", "2", "parent"]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert (tmp_path / "mlruns" / tracker.experiment_id).is_dir()
