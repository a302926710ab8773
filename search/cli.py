"""The ``pers-search`` command line.

AutoML for personalizing language models: run trials, baselines and multi-objective searches
over LoRA memory, retrieval and Per-Pcs; inspect fronts in MLflow; export configs to serving.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from runners.errors import RunnerError
from search.commands import mlflow_commands, pool, prompt, run, trial
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
    except (SearchError, RunnerError) as err:
        print(f"pers-search: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pers-search: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The parser with every sub-command registered by its module."""
    parser = argparse.ArgumentParser(prog="pers-search", description=__doc__.split("\n\n", 1)[1].strip())
    sub = parser.add_subparsers(dest="command")
    for module in (trial, run, mlflow_commands, pool, prompt):
        module.add_parsers(sub)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
