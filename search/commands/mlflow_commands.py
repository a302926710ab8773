"""``ui``, ``pareto`` and ``export``: look at fronts in MLflow and hand configurations to serving."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Iterator

from search.commands.common import POOL_HELP, add_study_dir
from search.commands.tables import front_table
from search.console import status_console, table_console
from search.export import export_bundle
from search.report import front_rows, rows_to_csv
from search.study import Study
from search.tracking import (
    TrackingError,
    artifact_root,
    check_reachable,
    resolve_tracking_uri,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000


def add_parsers(sub) -> None:
    """Register ``ui``, ``pareto`` and ``export`` on the CLI's subparsers."""
    p = sub.add_parser("ui", help="start the MLflow UI on the tracking store and print its URL")
    p.add_argument("--tracking-uri", help="store to show (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.set_defaults(handler=cmd_ui)

    p = sub.add_parser("pareto", help="print a study's Pareto front (table, JSON or CSV)")
    p.add_argument("study", help="study name")
    add_study_dir(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the front as JSON")
    fmt.add_argument("--csv", action="store_true", help="print the front as CSV")
    p.set_defaults(handler=cmd_pareto)

    p = sub.add_parser("export", help="write a serving bundle (PEFT adapters, serving.yaml, vLLM command) "
                                      "for a configuration picked from the front")
    p.add_argument("study", help="study name")
    add_study_dir(p)
    p.add_argument("--pick", default="knee",
                   help="knee (default), max:METRIC, min:METRIC, trial:N; optionally 'where METRIC>=X [and ...]'")
    p.add_argument("--out", required=True, help="bundle directory (must be new or empty unless --force)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing an earlier bundle")
    p.add_argument("--register", metavar="NAME", help="register the bundle as a version of this MLflow model")
    p.add_argument("--tracking-uri", help="MLflow store for --register (default as for run)")
    p.add_argument("--pool", metavar="DIR", help=POOL_HELP)
    p.set_defaults(handler=cmd_export)


def server_command(uri: str, host: str, port: int) -> list[str]:
    """The ``mlflow server`` command line for a store (one worker; local artifacts served)."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    root = artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    return cmd


def start_server(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **popen: object) -> subprocess.Popen:
    """Start ``mlflow server`` on a store in its own process group (stop it with :func:`stop_server`)."""
    return subprocess.Popen(server_command(uri, host, port), start_new_session=True, **popen)


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Wait until the server at ``url`` answers its health check.

    Raises:
        TrackingError: the server exited, or did not answer within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrackingError(f"mlflow server for {url} exited with code {proc.returncode}; see its output above")
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TrackingError(f"mlflow server for {url} did not answer within {timeout:.0f} s; is the port {url} free?")


def stop_server(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Terminate a server started by :func:`start_server` and its workers (its process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass


@contextmanager
def running_server(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log: str | None = None,
                   timeout: float = 120.0) -> Iterator[str]:
    """Run ``mlflow server`` on a store for the ``with`` block; yields its URL; always stops it.

    Args:
        uri: the backend store URI.
        host: interface to bind.
        port: port to listen on.
        log: file that receives the server's output (default: inherited).
        timeout: seconds to wait for the server to answer.
    """
    handle = open(log, "w", encoding="utf-8") if log else None
    try:
        proc = start_server(uri, host, port, stdout=handle, stderr=subprocess.STDOUT if handle else None)
        try:
            url = f"http://{host}:{port}"
            wait_until_up(url, proc, timeout)
            yield url
        finally:
            stop_server(proc)
    finally:
        if handle:
            handle.close()


def cmd_ui(args) -> int:
    console = status_console()
    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith(("http://", "https://")):
        check_reachable(uri)
        console.print(f"the tracking store is an MLflow server already: open {uri}")
        print(uri)
        return 0
    check_reachable(uri)
    url = f"http://{args.host}:{args.port}"
    proc = start_server(uri, args.host, args.port)
    try:
        with console.status(f"starting the MLflow UI on {uri}"):
            wait_until_up(url, proc)
        console.print(f"[bold]MLflow UI[/] on {uri}: {url}  (Ctrl-C stops it; filter the front with "
                      f"tags.pareto = \"true\")")
        print(url, flush=True)
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(proc)


def cmd_pareto(args) -> int:
    study = Study.load(args.study, args.study_dir)
    if args.json:
        print(json.dumps({"study": study.name, "objectives": dict(study.space.objectives),
                          "hypervolume": study.hypervolume(), "front": front_rows(study)}, indent=1, default=str))
    elif args.csv:
        sys.stdout.write(rows_to_csv(front_rows(study)))
    else:
        table_console().print(front_table(study))
    return 0


def cmd_export(args) -> int:
    console = status_console()
    study = Study.load(args.study, args.study_dir)
    with console.status(f"exporting {args.pick} of {study.name}"):
        bundle = export_bundle(study, args.pick, args.out, force=args.force, register=args.register,
                               tracking_uri=args.tracking_uri, pool_dir=args.pool)
    console.print(f"[bold]exported[/] trial {bundle.trial.number} of {study.name} to {bundle.out}")
    if bundle.registered:
        console.print(f"registered as MLflow model {bundle.registered[0]} version {bundle.registered[1]}")
    console.print("serve it with:")
    print(bundle.command)
    return 0
