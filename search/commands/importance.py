"""``importance``: which searched parameters drive each objective of a study, as a table, JSON or a
plot (:mod:`search.results.importance`).

A per-user study is read as ``status`` and ``pareto`` read it (:mod:`search.commands.cohort_view`):
a page of users, each user's top rows per objective (computed for the users shown only: a forest
per user and objective); ``--user U`` that user's whole table (and ``--plot``); ``--all`` every
user; ``--json`` every user's importances.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from search.commands.cohort_view import add_cohort_args, refuse_user_option, user_study
from search.commands.common import add_study_dir, study_name
from search.commands.tables import page_hints, page_of, status_command
from search.commands.console import status_console, table_console
from search.errors import UsageError
from search.results.importance import FRONT, READABLE_TRIALS, Importance, compute
from search.execution.per_user import load_cohort
from search.study.cohort_file import is_cohort
from search.study.study import Study


def add_parsers(sub) -> None:
    """Register ``importance`` on the CLI's subparsers."""
    p = sub.add_parser("importance", help="which searched parameters drive each objective (fANOVA per objective, "
                                          "PED-ANOVA for the front), from the study's completed trials")
    p.add_argument("study", type=study_name, help="study name (a per-user study: each user's importances)")
    add_study_dir(p)
    p.add_argument("--json", action="store_true", help="print the importances as JSON")
    p.add_argument("--plot", metavar="PNG", help="also draw them into this PNG file (a new file; a per-user study: "
                                                   "with --user)")
    p.add_argument("--seed", type=int, default=0, help="the forests' seed (default 0)")
    add_cohort_args(p, "importances")
    p.set_defaults(handler=cmd_importance)


def cmd_importance(args) -> int:
    if is_cohort(args.study, args.study_dir):
        return _cohort(args)
    refuse_user_option(args, "importance")
    return _study(Study.load(args.study, args.study_dir), args)


def _study(study: Study, args) -> int:
    """One study's importances (a per-user study's ``--user U``: that user's)."""
    found = compute(study, seed=args.seed)
    if args.json:
        print(json.dumps(found.to_json(), indent=1))
    else:
        table_console().print(importance_table(found))
        if not found.readable:
            status_console().print(f"[yellow]{found.trials} trials[/]: the ranking is rough below {READABLE_TRIALS} "
                                   "(bench/importance_accuracy.py); read the top rows only")
    if args.plot:
        _plot(found, args.plot)
    return 0


def importance_table(found: Importance) -> Table:
    """Rows: the searched parameters (layer masks as how many and which); columns: objectives and the front."""
    columns = list(found.groups)
    table = Table(title=f"parameter importance in {found.study} ({found.trials} completed trials; share of each "
                        "objective's variance, fANOVA; front: PED-ANOVA)", caption=_layers_caption(found))
    table.add_column("parameter")
    for column in columns:
        table.add_column(column if column != FRONT else "the front", justify="right")
    rows = list(found.groups[columns[0]]) if columns else []
    for row in rows:
        table.add_row(row, *(_cell(found, c, row) for c in columns))
    return table


def _cell(found: Importance, column: str, row: str) -> str:
    value = found.groups[column][row]
    top = found.top(column, 1)
    mark = " *" if top and top[0][0] == row and value > 0 else ""
    return f"{value:.2f}{mark}"


def _layers_caption(found: Importance) -> str | None:
    parts = [f"{c}: " + ", ".join(f"{i} ({v:.2f})" for i, v in layers)
             for c, layers in found.layers.items() if layers]
    if not parts:
        return None
    return "* the top row of each column; the layers that matter most, one by one: " + "; ".join(parts)


def _plot(found: Importance, path: str) -> None:
    from search.tracking.plots import importance_png  # matplotlib: only when a plot is asked for

    target = Path(path)
    if target.exists():
        raise FileExistsError(17, "the plot file exists already; give a new file name", str(target))
    importance_png(found.groups, target, title=f"parameter importance in {found.study} ({found.trials} trials)")
    status_console().print(f"plot written to {target}")


def _cohort(args) -> int:
    """A per-user study: a page of users (or ``--all``), each user's top rows side by side; ``--user U``:
    that user's whole table; ``--json``: every user's importances."""
    cohort = load_cohort(args.study, args.study_dir)
    if args.user is not None:
        return _study(user_study(cohort, args.user, args.study_dir, "importance"), args)
    if args.plot:
        raise UsageError(f"importance {args.study} --plot {args.plot}: {args.study!r} is a per-user study, with one "
                         "set of importances per user; add --user USER to plot that user's")
    searched = [u for u in cohort.users if u in cohort.studies]
    users, first, page, pages = (searched, 0, 1, 1) if args.all or args.json else page_of(searched,
                                                                                           args.rows, args.page)
    results, skipped = _per_user(cohort, users, args.seed)
    if args.json:
        print(json.dumps({"study": cohort.name, "users": {u: r.to_json() for u, r in results.items()},
                          "skipped": skipped}, indent=1))
        return 0
    table = _cohort_table(cohort, results, f"parameter importance per user of {cohort.name}: the top 3 rows of "
                                           "each objective")
    table.caption = f"users {first + 1}-{first + len(users)} of {len(searched):,} searched" if pages > 1 else None
    table_console().print(table)
    console = status_console()
    if skipped:
        console.print(f"{len(skipped)} users left out: " + "; ".join(
            f"{u}: {why.split(';')[0]}" for u, why in list(skipped.items())[:5]), highlight=False, soft_wrap=True)
    if len(searched) < len(cohort.users):
        console.print(f"{len(cohort.users) - len(searched)} users not searched yet", highlight=False)
    for hint in page_hints(status_command(args.study, args.study_dir, "importance"), page, pages,
                           "whole table (and --plot)", "top rows"):
        console.print(hint, highlight=False, soft_wrap=True)
    return 0


def _per_user(cohort, users: list[str], seed: int) -> tuple[dict[str, Importance], dict[str, str]]:
    """The importances of these users, and why the others could not have any (too few trials)."""
    results, skipped = {}, {}
    for user in users:
        try:
            results[user] = compute(cohort.studies[user], seed=seed, front=False)
        except Exception as err:  # noqa: BLE001 - a user with too few trials is named, the others shown
            skipped[user] = str(err)
    return results, skipped


def _cohort_table(cohort, results: dict[str, Importance], title: str) -> Table:
    objectives = next((list(s.space.objectives) for s in cohort.studies.values()), [])
    table = Table(title=title)
    table.add_column("user")
    table.add_column("trials", justify="right")
    for metric in objectives:
        table.add_column(metric)
    for user, found in results.items():
        table.add_row(user, str(found.trials),
                      *(", ".join(f"{row} {v:.2f}" for row, v in found.top(m)) for m in objectives))
    return table
