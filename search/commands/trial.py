"""``trial`` and ``baselines``: single trials of a space, outside any study.

Both say where the test queries come from (``data.test_split``); asked for ``--split test`` on data
without test queries, they say so in one line and end (exit 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from runners.data.splits import SplitCounts
from runners.perpcs.pool import find_pool
from runners.session import session_for
from runners.spec import TrialConfig
from runners.trial import run_trial
from search.execution.baselines import baseline_configs
from search.commands.common import add_space_args, space_from_args
from search.commands.searching import no_test_line
from search.commands.tables import baselines_table, metrics_table
from search.results.config_view import describe
from search.commands.console import fmt_metric, status_console, table_console
from search.study.setup import bind_to_model, check_reported


ROW_METRICS = ("rougeL", "persona_f1", "copy_rate", "storage_bytes")


def add_parsers(sub) -> None:
    """Register ``trial`` and ``baselines`` on the CLI's subparsers."""
    p = sub.add_parser("trial", help="run one trial and print its metrics as JSON")
    add_space_args(p)
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--keep-adapters", action="store_true",
                   help="keep each user's exported adapter (under --adapters-dir), as run --keep-adapters does")
    p.add_argument("--adapters-dir", metavar="DIR", default="adapters", help="where --keep-adapters keeps them")
    p.set_defaults(handler=cmd_trial, trains=True)

    p = sub.add_parser("baselines", help="evaluate the standard reference points in one table")
    add_space_args(p)
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=cmd_baselines, trains=True)


def cmd_trial(args: argparse.Namespace) -> int:
    console = status_console(quiet=args.json)
    with console.status("loading model and data"):
        space, setup = bind_to_model(space_from_args(args), args.pool)
    check_reported(space, setup)
    flat = space.defaults()
    config = TrialConfig.from_flat(flat)
    console.print(f"[bold]trial[/] on {setup.model.name}: {describe(space, flat)}")
    if not _split_has_queries(console, setup, args.split):
        if args.json:
            print(json.dumps(None))
        return 0
    result = run_trial(config, setup, split=args.split, adapter_dir=args.adapters_dir if args.keep_adapters else None)
    if not args.json:
        console.print(metrics_table(result))
    print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


def cmd_baselines(args: argparse.Namespace) -> int:
    console = status_console(quiet=args.json)
    with console.status("loading model and data"):
        space, setup = bind_to_model(space_from_args(args), args.pool)
    pool = find_pool(setup, setup.pool_dir)
    if pool is None:
        console.print(f"[yellow]no Per-Pcs pool[/] for this model and data: the per-pcs and peft-retrieval rows "
                      f"need one (`pers-search pool build --space {args.space}`)")
    rows = []
    if not _split_has_queries(console, setup, args.split):
        if args.json:
            print(json.dumps(rows))
        return 0
    for baseline in baseline_configs(space, with_pool=pool is not None):
        with console.status(f"baseline {baseline.name}: {baseline.description}"):
            result = run_trial(baseline.config, setup, split=args.split)
        metrics = dict(result.metrics)
        metrics["seconds_per_user"] = (metrics.get("train_seconds", 0.0) + metrics.get("assembly_seconds", 0.0)) / max(
            metrics.get("n_users", 1), 1)
        rows.append({"name": baseline.name, "description": baseline.description,
                     "config": dataclasses.asdict(baseline.config), "metrics": metrics})
        console.print(f"  {baseline.name}: " + "  ".join(f"{m}={fmt_metric(metrics, m)}" for m in ROW_METRICS)
                      + f"  ({metrics.get('n_users', 0):.0f} users, {metrics.get('n_queries', 0):.0f} queries, "
                      f"{metrics['seconds_per_user']:.1f} s training per user)", highlight=False)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        table_console().print(baselines_table(rows, args.split))
    return 0


def _split_has_queries(console, setup, split: str) -> bool:
    """Print the test split's line; False (after one line saying why) when ``split`` has no queries."""
    counts = SplitCounts.of(session_for(setup).splits)
    console.print(f"test split: {counts.describe()}", highlight=False, soft_wrap=True)
    if split == "test" and not counts.test_queries:
        console.print(f"--split test: {no_test_line(counts, then='nothing to evaluate (use --split val)')}",
                      highlight=False, soft_wrap=True)
        return False
    return True
