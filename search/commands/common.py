"""What the sub-commands share: the space options, the study options and the MLflow options,
and their translation into a :class:`Space` and a :class:`Tracker`.

Everything below ``search/commands`` only reads ``argparse`` namespaces here and hands plain
values to the library modules (``search.study.setup``, ``search.api``, ``search.tracking``).
"""

from __future__ import annotations

import argparse
import re

from runners.files import safe_name
from search.execution.executors import EXECUTORS, Executor, make_executor
from search.space import Space, load_space
from search.tracking.tracker import Tracker

DEFAULT_STUDY_DIR = "studies"
_STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
POOL_HELP = "Per-Pcs pool directory (default: found under $PERS_SEARCH_HOME/pools)"


def add_space_args(p: argparse.ArgumentParser, with_pool: bool = True, space_required: bool = False) -> None:
    """The options every command that reads a space shares (``run`` must name its space)."""
    p.add_argument("--space", required=space_required, default=None if space_required else "milp.yaml",
                   help="space YAML: a path, or a bundled name (quick.yaml, milp.yaml, milp-paper.yaml, tiny.yaml)"
                        + ("" if space_required else "; default milp.yaml"))
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (lora.rank=8) or a setting (training.epochs=2); repeatable")
    p.add_argument("--data", help="data file overriding the space's data.source (or 'demo')")
    p.add_argument("--data-format", choices=["jsonl", "lamp", "meddialogue"],
                   help="data format (default: detected from the file); sets data.format")
    p.add_argument("--outputs", help="LaMP outputs JSON (default: found beside the questions file); sets data.outputs")
    p.add_argument("--users", type=at_least(1), help="number of users in the cohort; sets data.users")
    if with_pool:
        p.add_argument("--pool", metavar="DIR", help=POOL_HELP)


def space_from_args(args: argparse.Namespace) -> Space:
    """The space file with ``--set`` and the data options applied (the data options win)."""
    sets = list(args.sets)
    for option, key in (("data", "source"), ("data_format", "format"), ("outputs", "outputs"), ("users", "users")):
        value = getattr(args, option)
        if value is not None:
            sets.append(f"data.{key}={value}")
    return load_space(args.space).with_overrides(sets)


def add_study_dir(p: argparse.ArgumentParser) -> None:
    """``--study-dir``: the parent directory of studies."""
    p.add_argument("--study-dir", default=DEFAULT_STUDY_DIR, help="parent directory of studies (default ./studies)")


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    """Give ``run``/``resume`` the tracking options ``--tracking-uri``, ``--no-mlflow``, ``--log-adapters``."""
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else the study's "
                                          "recorded store, else sqlite:///mlruns/mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--log-adapters", action="store_true",
                   help="also log each trial's kept adapters as MLflow artifacts (with --keep-adapters; large)")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--executor`` and ``--address``: how many trials run at once, and where."""
    p.add_argument("--workers", type=at_least(1), default=1,
                   help="trials in flight at once (default 1); more than one runs them in worker processes")
    p.add_argument("--executor", choices=EXECUTORS,
                   help="local (this process), process (local worker processes) or ray (Ray tasks); "
                        "default: local for one worker, process for more")
    p.add_argument("--address", default="auto",
                   help="with --executor ray: auto (a running cluster, default), local (start Ray here) or HOST:PORT")


def executor_from_args(args: argparse.Namespace, space: Space) -> Executor:
    """The executor of ``--workers``/``--executor``/``--address`` with the space's trial timeout."""
    return make_executor(args.executor, args.workers, args.address, space.optimizer.trial_timeout_s)


def tracker_from_args(args: argparse.Namespace) -> Tracker | None:
    """The tracker the ``run``/``resume`` options ask for (None with ``--no-mlflow``)."""
    if args.no_mlflow:
        return None
    return Tracker(args.tracking_uri, log_adapters=args.log_adapters)


def study_name(text: str) -> str:
    """An argparse type: a study name that stays a plain directory under ``--study-dir``.

    Raises:
        argparse.ArgumentTypeError: a path (``../escape``, ``a/b``), a leading dot or odd characters.
    """
    if not _STUDY_NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain study name; use letters, digits and . _ - (no '/', no leading '.'), "
            f"e.g. {safe_name(text.replace('/', '-').lstrip('.-'), limit=128, fallback='my-study')!r}; "
            "put studies elsewhere with --study-dir")
    return text


def default_study_name(text: str) -> str:
    """A name derived from the space and optimiser, made safe as a study name."""
    return safe_name(text, limit=128, fallback="study").lstrip(".") or "study"


def at_least(low: int):
    """An argparse type: an integer >= ``low`` (the error names the option, as argparse does)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; pass a whole number >= {low}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}; pass a whole number >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse
