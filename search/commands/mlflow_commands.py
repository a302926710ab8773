"""``ui``, ``pareto`` and ``export``: look at fronts in MLflow and hand configurations to serving."""

from __future__ import annotations

import json
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

from search.commands.common import POOL_HELP, add_study_dir, at_least, study_name
from search.commands.cohort_view import add_cohort_args, pareto_cohort, pareto_json, print_pareto, refuse_user_option
from search.results.config_view import describe
from search.commands.console import status_console
from search.export import export_bundle, export_cohort, summary_lines
from search.execution.per_user import load_cohort
from search.study.cohort_file import is_cohort
from search.results.report import front_rows, rows_to_csv
from search.study.study import Study
from search.tracking.links import ensure_front_view, experiments_link, run_page, runs_link, runs_page
from search.tracking.server import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    ready_store,
    ui_server,
    wait_until_up,
    wait_while_running,
)
from search.tracking.store import RECORD_FILE, read_record, resolve_tracking_uri, study_store
from search.tracking.tracker import log_read_only
from search.tracking.views import charts_view_key

UI_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # what stops ``ui``'s server cleanly


def add_parsers(sub) -> None:
    """Register ``ui``, ``pareto`` and ``export`` on the CLI's subparsers."""
    p = sub.add_parser("ui", help="start the MLflow UI on the tracking store and print its URL "
                                  "(with a study: the link to its front)")
    p.add_argument("study", nargs="?", type=study_name, help="a study: open the store it was logged to (its mlflow.json) and print "
                                            "the link to its front (a study never logged is logged first)")
    add_study_dir(p)
    p.add_argument("--tracking-uri", help="store to show (default: the study's recorded store, else "
                                          "$MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", type=at_least(1), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.set_defaults(handler=cmd_ui)

    p = sub.add_parser("pareto", help="print a study's Pareto front (table, JSON or CSV); a per-user study: "
                                      "each user's front and the cohort's table")
    p.add_argument("study", type=study_name, help="study name")
    add_study_dir(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the front as JSON (a per-user study: every user's)")
    fmt.add_argument("--csv", action="store_true",
                     help="print the front as CSV (a per-user study: every user's front in one CSV, the user first)")
    add_cohort_args(p, "front")
    p.set_defaults(handler=cmd_pareto)

    p = sub.add_parser("export", help="write a serving bundle (PEFT adapters, serving.yaml, vLLM command) "
                                      "for a configuration picked from the front")
    p.add_argument("study", type=study_name, help="study name")
    add_study_dir(p)
    p.add_argument("--pick", default="knee",
                   help="knee (default), max:METRIC, min:METRIC, trial:N; optionally 'where METRIC>=X [and ...]'; "
                        "a per-user study applies it to each user's own front")
    p.add_argument("--out", required=True, help="bundle directory (must be new or empty unless --force)")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out, replacing an earlier bundle")
    p.add_argument("--register", metavar="NAME", help="register the bundle as a version of this MLflow model "
                                                      "(under the trial's run; a per-user study's whole bundle "
                                                      "as one version, under its cohort run)")
    p.add_argument("--tracking-uri", help="MLflow store for --register (default as for run)")
    p.add_argument("--pool", metavar="DIR", help=POOL_HELP)
    p.add_argument("--base-model", metavar="PATH",
                   help="the base model's directory as serving will see it (checked against the study's model); "
                        "default: copy the base model into the bundle under base/")
    p.add_argument("--json", action="store_true",
                   help="print what was exported (bundle, trials, users, ranks, vLLM command) as JSON")
    p.set_defaults(handler=cmd_export, trains=True)


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """Within the block, SIGINT (Ctrl-C), SIGTERM and SIGHUP (:data:`UI_STOP_SIGNALS`) set the yielded
    event instead of interrupting whatever runs, so the code that stops the server always gets to run."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in UI_STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _ui_study(args, console) -> tuple[Study, dict, str]:
    """The study of ``ui STUDY``, its MLflow record (logging it first if it never was) and store URI."""
    study = Study.load(args.study, args.study_dir)
    record = read_record(study.directory)
    uri = study_store(record, args.tracking_uri)
    if record.get("tracking_uri") != uri or not record.get("experiment_id"):
        console.print(f"logging study {study.name} to {uri} (no {RECORD_FILE} for this store yet; the study "
                      "directory is left as it is)")
        record = log_read_only(study, uri)
    return study, record, uri


def _stderr_fd() -> int | None:
    """The file descriptor of stderr, or None (inherit) when stderr is not a real file."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def cmd_ui(args) -> int:
    console = status_console()
    study, record = None, {}
    if args.study:
        study, record, uri = _ui_study(args, console)
    else:
        uri = resolve_tracking_uri(args.tracking_uri)
    ready_store(uri)
    remote = uri.startswith(("http://", "https://"))
    if study is not None:
        ensure_front_view(uri, study, record["experiment_id"])

    def link(base: str) -> str:
        if study is None:
            return experiments_link(base)
        return runs_link(base, record["experiment_id"], study.space.objectives)

    if remote:
        console.print(f"the tracking store is an MLflow server already: open {uri}")
        print(link(uri.rstrip("/")), flush=True)
        return 0
    url = f"http://{args.host}:{args.port}"
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning[/]: --host {args.host} exposes the MLflow UI, with no login, to every "
                      "machine that can reach this one; leave --host out to keep it on 127.0.0.1")
    # the server's output goes to stderr: stdout carries the link only
    with _stop_on_signals() as stop, ui_server(uri, args.host, args.port, stdout=_stderr_fd()) as proc:
        with console.status(f"starting the MLflow UI on {uri}"):
            wait_until_up(url, proc, stop=stop)
        if stop.is_set():
            return 0
        what = f"the front of {study.name}" if study else "the experiments"
        console.print(f"[bold]MLflow UI[/] on {uri}: {url}  (Ctrl-C stops it); {what}:")
        print(link(url), flush=True)
        if study is not None:
            _print_study_pages(console, url, study, record)
        wait_while_running(proc, stop)
        if stop.is_set():
            return 0
        console.print(f"[red]the MLflow server stopped by itself (exit code {proc.returncode})[/]")
        return proc.returncode or 1


def _print_study_pages(console, url: str, study: Study, record: dict) -> None:
    """The study's charts and its run, on the status console (stdout carries the front link only)."""
    experiment = record["experiment_id"]
    console.print(f"charts: {url}/{runs_page(experiment, charts_view_key(study.space.objectives), charts=True)}")
    if record.get("parent_run_id"):
        console.print(f"the study's run: {url}/{run_page(experiment, record['parent_run_id'])}")


def cmd_pareto(args) -> int:
    """``pareto``: a study's front; a per-user study's fronts, one per user (:func:`pareto_cohort`)."""
    if is_cohort(args.study, args.study_dir):
        return pareto_cohort(load_cohort(args.study, args.study_dir), args)
    refuse_user_option(args, "pareto")
    study = Study.load(args.study, args.study_dir)
    if args.json:
        print(json.dumps(pareto_json(study), indent=1, default=str))
    elif args.csv:
        sys.stdout.write(rows_to_csv(front_rows(study)))
    else:
        print_pareto(study)
    return 0


def cmd_export(args) -> int:
    """``export``: a study's picked trial, or each user's pick of a per-user study, as one serving bundle."""
    if is_cohort(args.study, args.study_dir):
        return _export_cohort(args)
    console = status_console()
    study = Study.load(args.study, args.study_dir)
    with console.status(f"exporting {args.pick} of {study.name}"):
        bundle = export_bundle(study, args.pick, args.out, force=args.force, register=args.register,
                               tracking_uri=args.tracking_uri, pool_dir=args.pool, base_model=args.base_model)
    if args.json:
        _print_export_json(bundle)
        return 0
    console.print(f"[bold]exported[/] trial {bundle.trial.number} of {study.name} to {bundle.out}")
    _print_bundle(console, bundle)
    return 0


SHOWN_USERS = 20  # users listed one a line by ``export`` of a per-user study; serving.yaml has them all


def _export_cohort(args) -> int:
    """``export`` of a per-user study: each user's own pick, one bundle."""
    console = status_console()
    cohort = load_cohort(args.study, args.study_dir)
    with console.status(f"exporting {args.pick} of each user of {cohort.name}"):
        bundle = export_cohort(cohort, args.pick, args.out, force=args.force, register=args.register,
                               tracking_uri=args.tracking_uri, pool_dir=args.pool, base_model=args.base_model)
    if args.json:
        _print_export_json(bundle)
        return 0
    console.print(f"[bold]exported[/] each user's {args.pick} of {cohort.name} to {bundle.out}:")
    for user, trial in list(bundle.trials.items())[:SHOWN_USERS]:
        adapter = bundle.manifest["adapters"].get(user)
        rank = f"rank {adapter['rank']}" if adapter else "no adapter"
        console.print(f"  {user}: trial {trial.number}, {rank}, {describe(cohort.studies[user].space, trial.config)}")
    if len(bundle.trials) > SHOWN_USERS:
        console.print(f"  ... and {len(bundle.trials) - SHOWN_USERS} more users (serving.yaml per_user)")
    _print_bundle(console, bundle)
    return 0


def _print_bundle(console, bundle) -> None:
    """The bundle's summary, its registered version, and how to serve it."""
    for line in summary_lines(bundle.summary):
        console.print(line)
    if bundle.registered:
        console.print(f"registered as MLflow model {bundle.registered[0]} version {bundle.registered[1]}")
    console.print(f"serve it with {bundle.out / 'vllm.sh'}, which runs (from {bundle.out}):")
    print(bundle.command)


def _print_export_json(bundle) -> None:
    """What ``export --json`` prints: the bundle, each trial (per user for a per-user study), the vLLM line,
    the summary and the registered version."""
    manifest, registered = bundle.manifest, bundle.registered
    print(json.dumps({
        "bundle": str(bundle.out), "scope": manifest.get("scope", "cohort"),
        "trials": {user: trial.number for user, trial in bundle.trials.items()},
        "users": manifest.get("users"), "adapters": manifest.get("adapters"),
        "vllm_command": manifest["vllm"]["command"], "summary": bundle.summary,
        "registered": None if registered is None else {"name": registered[0], "version": registered[1]},
    }, indent=1, default=str))
