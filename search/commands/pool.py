"""``pers-search pool build`` and ``pers-search pool show``: the Per-Pcs pool of LoRA pieces.

``pool build`` chooses sharers among the users outside the space's test cohort, trains each
one's LoRA and gates and stores the pool under ``$PERS_SEARCH_HOME/pools`` (or ``--pool DIR``),
where trials with ``perpcs.top_k > 0`` find it. It writes only the pool's own files and removes
nothing else: a ``--pool`` directory holding other files is refused, with or without ``--force``. ``pool show`` describes the pool a space's
trials would use.
"""

from __future__ import annotations

import argparse
import json

from rich.table import Table

from runners.perpcs.pool import PoolSettings, build_pool, require_pool
from runners.session import session_for
from search.execution.baselines import memory_rank
from search.commands.common import add_space_args, space_from_args
from search.commands.console import status_console, table_console
from search.study.setup import trial_setup


def add_parsers(subparsers) -> argparse.ArgumentParser:
    """Add the ``pool`` command (with ``build`` and ``show``) to the CLI's sub-parsers."""
    parser = subparsers.add_parser("pool", help="build or describe the Per-Pcs pool of sharers' LoRA pieces")
    sub = parser.add_subparsers(dest="pool_command")
    build = sub.add_parser("build", help="choose sharers, train their LoRA pieces and gates, store the pool")
    add_space_args(build, with_pool=False)
    build.add_argument("--sharers", type=int, default=8, help="number of sharers K (default 8)")
    build.add_argument("--strategy", choices=["kmeans", "most-active", "random"], default="kmeans",
                       help="sharer selection (default kmeans: most active user of each history cluster)")
    build.add_argument("--rank", type=int, help="LoRA rank of the pieces (default: the space's lora.rank default)")
    build.add_argument("--share-ratio", type=float, default=1.0,
                       help="fraction of its pieces each sharer shares, in (0, 1] (default 1)")
    build.add_argument("--gate-steps", type=int, default=50, help="gate-training steps per sharer (default 50)")
    build.add_argument("--gate-lr", type=float, default=2e-5, help="gate-training learning rate (default 2e-5)")
    build.add_argument("--steps", type=int, help="cap on each sharer's LoRA training steps per phase "
                                                 "(default: the space's training.max_steps)")
    build.add_argument("--seed", type=int, help="seeds sharer selection and sharing (default: training.seed)")
    build.add_argument("--pool", metavar="DIR", help="pool directory (default: under $PERS_SEARCH_HOME/pools)")
    build.add_argument("--force", action="store_true",
                       help="rebuild even if the directory holds a pool (replaces that pool's own files; a "
                            "directory holding other files is refused all the same)")
    build.add_argument("--json", action="store_true", help="print the pool description as JSON")
    build.set_defaults(handler=cmd_pool_build, trains=True)
    show = sub.add_parser("show", help="describe the pool the space's trials use")
    add_space_args(show, with_pool=False)
    show.add_argument("--pool", metavar="DIR", help="pool directory (default: found for the space's model and data)")
    show.add_argument("--json", action="store_true", help="print the description as JSON")
    show.set_defaults(handler=cmd_pool_show)
    parser.set_defaults(handler=lambda args: _usage(parser))
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def settings_from_args(args, space) -> PoolSettings:
    """The :class:`PoolSettings` of ``pool build`` options, with defaults from the space."""
    rank = args.rank if args.rank is not None else memory_rank(space)
    seed = args.seed if args.seed is not None else space.training.seed
    return PoolSettings(sharers=args.sharers, strategy=args.strategy, rank=rank, share_ratio=args.share_ratio,
                        gate_steps=args.gate_steps, gate_lr=args.gate_lr, sharer_steps=args.steps, seed=seed)


def cmd_pool_build(args) -> int:
    """Build (or reuse) the pool and print its description."""
    console = status_console(quiet=args.json)
    space = space_from_args(args)
    settings = settings_from_args(args, space)
    session = session_for(trial_setup(space))
    pool = build_pool(session, settings, pool_dir=args.pool, force=args.force, log=console.print)
    _print(pool.describe(), args.json)
    return 0


def cmd_pool_show(args) -> int:
    """Print the description of the pool the space's trials would use."""
    space = space_from_args(args)
    pool = require_pool(trial_setup(space), args.pool, space=args.space)
    _print(pool.describe(), args.json)
    return 0


def _print(description: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(description, indent=2, default=str))
        return
    table_console().print(describe_table(description))


def describe_table(d: dict) -> Table:
    """A rich table of a pool description (one row per sharer, the pool's facts in the caption)."""
    table = Table(title=f"Per-Pcs pool {d['key']}")
    for column in ("sharer", "user", "history items", "cluster", "pieces shared"):
        table.add_column(column, justify="left" if column == "user" else "right")
    for i, s in enumerate(d["sharers"]):
        table.add_row(str(i), s["user_id"], str(s["history_items"]), str(s["cluster"]), f"{s['pieces']}/{d['modules']}")
    table.caption = (f"base model {d['base_model']}, {d['n_layers']} layers x {', '.join(d['targets'])}, "
                     f"rank {d['rank']}, {d['strategy']} sharers, share ratio {d['share_ratio']}, "
                     f"{d['pieces']} pieces, {d['size_bytes']:,} bytes on disk at {d['directory']}")
    return table
