"""The ``pers-search`` command line.

AutoML for personalizing language models: run trials, baselines and multi-objective searches
over LoRA memory, retrieval and Per-Pcs; inspect fronts in MLflow; export configs to serving.
"""

from __future__ import annotations

from search.console import fmt_value, status_console, table_console

import argparse
import json
import sys
from typing import Sequence

from search.errors import SearchError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (SearchError, _runner_error()) as err:
        print(f"pers-search: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pers-search: interrupted", file=sys.stderr)
        return 130


def _runner_error():
    from runners.errors import RunnerError

    return RunnerError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pers-search", description=__doc__.split("\n\n", 1)[1].strip())
    sub = parser.add_subparsers(dest="command")
    _add_trial(sub)
    _add_baselines(sub)
    from search.commands.run import add_run_parsers

    add_run_parsers(sub, add_space_args)
    from search.commands.mlflow_commands import add_mlflow_parsers
    from search.commands.pool import add_pool_parser

    add_mlflow_parsers(sub)
    add_pool_parser(sub)
    return parser


def add_space_args(p: argparse.ArgumentParser, with_pool: bool = True) -> None:
    """The options every command that reads a space shares."""
    p.add_argument("--space", default="milp.yaml", help="space YAML: a path, or a bundled name (milp.yaml, tiny.yaml, milp-paper.yaml)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (lora.rank=8) or a setting (training.epochs=2); repeatable")
    p.add_argument("--data", help="data file overriding the space's data.source (or 'demo')")
    p.add_argument("--data-format", choices=["jsonl", "lamp", "meddialogue"], help="data format (default: from the file)")
    p.add_argument("--outputs", help="LaMP outputs JSON (default: found beside the questions file)")
    p.add_argument("--users", type=int, help="number of users in the cohort")
    if with_pool:
        p.add_argument("--pool", metavar="DIR", help="Per-Pcs pool directory (default: found under $PERS_SEARCH_HOME/pools)")


def _add_trial(sub) -> None:
    p = sub.add_parser("trial", help="run one trial and print its metrics as JSON")
    add_space_args(p)
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--json", action="store_true", help="print only the JSON result")
    p.add_argument("--keep-adapters", metavar="DIR", help="keep each user's exported adapter under DIR")
    p.set_defaults(handler=cmd_trial)


def _add_baselines(sub) -> None:
    p = sub.add_parser("baselines", help="evaluate the standard reference points in one table")
    add_space_args(p)
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(handler=cmd_baselines)


def space_from_args(args):
    """The space file with ``--set`` and the data options applied."""
    from search.space import load_space

    sets = list(args.sets)
    if args.data:
        sets.append(f"data.source={args.data}")
    if args.data_format:
        sets.append(f"data.format={args.data_format}")
    if args.outputs:
        sets.append(f"data.outputs={args.outputs}")
    if args.users is not None:
        sets.append(f"data.users={args.users}")
    return load_space(args.space).with_overrides(sets)


def setup_from_space(space, pool_dir: str | None = None):
    """The runner's frozen setup from a space's model/data/training sections."""
    from runners.spec import TrialSetup

    return TrialSetup.from_dicts(_plain(space.model), _plain(space.data), _plain(space.training), pool_dir=pool_dir)


def _plain(section):
    if section is None:
        return {}
    data = section.model_dump(exclude_none=False) if hasattr(section, "model_dump") else dict(section)
    return {k: v for k, v in data.items() if v is not None}


def prepare(args):
    """The bound space (layer masks sized to the model) and the runner setup of ``args``."""
    return bind(space_from_args(args), getattr(args, "pool", None))


def bind(space, pool_dir: str | None = None):
    """Load the space's model and data; return the space bound to the model's layer count and the setup."""
    from runners.session import session_for

    setup = setup_from_space(space, pool_dir)
    return space.bind(session_for(setup).layout.n_layers), setup


def cmd_trial(args) -> int:
    from runners.trial import run_trial

    console = status_console(quiet=args.json)
    with console.status("loading model and data"):
        space, setup = prepare(args)
    config = space.defaults()
    console.print(f"[bold]trial[/] on {setup.model.name}: {space.describe(config)}")
    result = run_trial(config, setup, split=args.split, adapter_dir=args.keep_adapters)
    if not args.json:
        console.print(_metrics_table(result))
    print(json.dumps(result.to_dict(), indent=2, default=str))
    return 0


def cmd_baselines(args) -> int:
    from runners.trial import run_trial
    from search.baselines import baseline_configs

    from runners.perpcs.pool import find_pool

    console = status_console(quiet=args.json)
    with console.status("loading model and data"):
        space, setup = prepare(args)
    pool = find_pool(setup, setup.pool_dir)
    if pool is None:
        console.print(f"[yellow]no Per-Pcs pool[/] for this model and data: the per-pcs and peft-retrieval rows "
                      f"need one (`pers-search pool build --space {args.space}`)")
    rows = []
    for baseline in baseline_configs(space, with_pool=pool is not None):
        with console.status(f"baseline {baseline.name}: {baseline.description}"):
            result = run_trial(baseline.config, setup, split=args.split)
        metrics = dict(result.metrics)
        metrics["seconds_per_user"] = (metrics.get("train_seconds", 0.0) + metrics.get("assembly_seconds", 0.0)) / max(
            metrics.get("n_users", 1), 1)
        rows.append({"name": baseline.name, "description": baseline.description,
                     "config": baseline.config, "metrics": metrics})
        console.print(f"  {baseline.name}: rougeL={result.metrics.get('rougeL', float('nan')):.4f}")
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        table_console().print(_baselines_table(rows, args.split))
    return 0


BASELINE_COLUMNS = ("rougeL", "rouge1", "persona_f1", "loss", "storage_bytes",
                    "retrieval_index_bytes", "seconds_per_user", "generate_seconds")


def _baselines_table(rows, split):
    from rich.table import Table

    table = Table(title=f"baselines on the {split} queries (mean over users)")
    table.add_column("baseline")
    for column in BASELINE_COLUMNS:
        table.add_column(column, justify="right")
    for row in rows:
        m = row["metrics"]
        table.add_row(row["name"], *(fmt_value(m.get(c)) for c in BASELINE_COLUMNS))
    return table


def _metrics_table(result):
    from rich.table import Table

    table = Table(title=f"trial metrics ({result.split}, mean over {len(result.users)} users)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(result.metrics.items()):
        table.add_row(key, fmt_value(value))
    return table


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
