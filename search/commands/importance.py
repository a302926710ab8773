"""``importance``: which searched parameters drive each objective of a study (or of every user of a
per-user study), as a table, JSON or a plot (:mod:`search.importance`)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from search.commands.common import add_study_dir, study_name
from search.console import status_console, table_console
from search.importance import FRONT, READABLE_TRIALS, Importance, compute
from search.per_user import is_cohort, load_cohort
from search.study import Study


def add_parsers(sub) -> None:
    """Register ``importance`` on the CLI's subparsers."""
    p = sub.add_parser("importance", help="which searched parameters drive each objective (fANOVA per objective, "
                                          "PED-ANOVA for the front), from the study's completed trials")
    p.add_argument("study", type=study_name, help="study name (a per-user study: every user, and the cohort)")
    add_study_dir(p)
    p.add_argument("--json", action="store_true", help="print the importances as JSON")
    p.add_argument("--plot", metavar="PNG", help="also draw them into this PNG file (a new file)")
    p.add_argument("--seed", type=int, default=0, help="the forests' seed (default 0)")
    p.set_defaults(handler=cmd_importance)


def cmd_importance(args) -> int:
    if is_cohort(args.study, args.study_dir):
        return _cohort(args)
    study = Study.load(args.study, args.study_dir)
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
    from search.plots import importance_png  # matplotlib: only when a plot is asked for

    target = Path(path)
    if target.exists():
        raise FileExistsError(17, "the plot file exists already; give a new file name", str(target))
    importance_png(found.groups, target, title=f"parameter importance in {found.study} ({found.trials} trials)")
    status_console().print(f"plot written to {target}")


def _cohort(args) -> int:
    """Every searched user's importances, side by side as each user's top rows, and the JSON of all."""
    cohort = load_cohort(args.study, args.study_dir)
    results, skipped = {}, {}
    for user, study in cohort.studies.items():
        try:
            results[user] = compute(study, seed=args.seed, front=False)
        except Exception as err:  # noqa: BLE001 - a user with too few trials is named, the others shown
            skipped[user] = str(err)
    if args.json:
        print(json.dumps({"study": cohort.name, "users": {u: r.to_json() for u, r in results.items()},
                          "skipped": skipped}, indent=1))
        return 0
    objectives = next((list(s.space.objectives) for s in cohort.studies.values()), [])
    table = Table(title=f"parameter importance per user of {cohort.name}: the top 3 rows of each objective")
    table.add_column("user")
    table.add_column("trials", justify="right")
    for metric in objectives:
        table.add_column(metric)
    for user, found in results.items():
        table.add_row(user, str(found.trials),
                      *(", ".join(f"{row} {v:.2f}" for row, v in found.top(m)) for m in objectives))
    table_console().print(table)
    if skipped:
        status_console().print(f"{len(skipped)} users left out: " + "; ".join(
            f"{u}: {why.split(';')[0]}" for u, why in list(skipped.items())[:5]))
    return 0
