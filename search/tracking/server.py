"""The MLflow UI's server: ``mlflow server`` on a store, started in its own process group, waited for,
and stopped with every process it started (what ``pers-search ui`` runs)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from search.tracking.store import (
    TrackingError,
    TrackingUsageError,
    artifact_root,
    check_reachable,
    open_client,
    sqlite_path,
)
from search.execution.usage_reporting import usage_reporting_off

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
POLL_S = 0.5  # how often a waiting loop looks at the server and the stop event
STOP_GRACE_S = 15.0  # how long a stopped server's process group has after SIGTERM (then after SIGKILL)


def ready_store(uri: str) -> None:
    """Check that the store answers; a new SQLite store is made here, under its lock (the server takes none).

    Raises:
        TrackingError: the store cannot be reached or opened.
    """
    check_reachable(uri)
    if sqlite_path(uri) is not None:
        open_client(uri)


def server_command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for a store (one worker; local artifacts served)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    return cmd


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on ``host:port`` (a bind as the server would do fails)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise TrackingUsageError(f"--host {host} --port {port}: cannot bind ({err}); pass another --host") from err
    return False


def start_server(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **popen: object) -> subprocess.Popen:
    """Start ``mlflow server`` on a store in its own process group (stop it with :func:`stop_server`).

    Raises:
        TrackingError: the port is taken (another server would answer in its place).
    """
    if port_in_use(host, port):
        raise TrackingUsageError(f"port {port} on {host} is in use by another program, so the MLflow UI cannot start "
                            f"there; pass a free --port (e.g. --port {port + 1}) or stop the program on {port}")
    given = popen.pop("env", None)
    env = dict(os.environ if given is None else given)
    usage_reporting_off(env)  # the server imports MLflow afresh: its telemetry is off unless the user set it
    return subprocess.Popen(server_command(uri, host, port), start_new_session=True, env=env, **popen)


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 120.0,
                  stop: threading.Event | None = None) -> None:
    """Wait until the server at ``url`` answers its health check (or ``stop`` is set: then return).

    Raises:
        TrackingError: the server exited, or did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            return
        if proc.poll() is not None:
            raise TrackingError(f"mlflow server for {url} exited with code {proc.returncode}; see its output above")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as response:
                if response.status == 200 and proc.poll() is None:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL_S)
    raise TrackingError(f"mlflow server for {url} did not answer within {timeout:.0f} s; is the port {url} free?")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_server(proc: subprocess.Popen) -> None:
    """Stop a server started by :func:`start_server` and every process it started.

    SIGTERM goes to the server's process group (uvicorn, the job runner and its huey consumers);
    whatever is still there after :data:`STOP_GRACE_S` seconds gets SIGKILL. Returns once the group is
    empty, so no worker outlives the call.
    """
    pgid = proc.pid  # start_new_session: the server leads its own group
    if not _group_alive(pgid):
        proc.poll()
        return
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        proc.poll()
        if not _group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=STOP_GRACE_S)
    while _group_alive(pgid) and time.monotonic() < deadline + STOP_GRACE_S:
        time.sleep(0.1)


@contextmanager
def ui_server(uri: str, host: str, port: int, stdout: int | None = None) -> Iterator[subprocess.Popen]:
    """Run ``mlflow server`` for the ``with`` block (its output to ``stdout``, a file descriptor, default
    inherited); yields the process, not yet answering (:func:`wait_until_up`); always stops it."""
    proc = start_server(uri, host, port, stdout=stdout)
    try:
        yield proc
    finally:
        stop_server(proc)


def wait_while_running(proc: subprocess.Popen, stop: threading.Event) -> None:
    """Return when the server exits or ``stop`` is set."""
    while proc.poll() is None and not stop.is_set():
        stop.wait(POLL_S)
