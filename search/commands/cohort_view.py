"""How ``status``, ``pareto`` and ``importance`` read a per-user study: the same options (``--user U``
for one user, ``--all`` for every user, ``--rows``/``--page`` for a page of users) and the same
refusal of a user that is not there; and ``pareto`` of a per-user study, whose fronts are one per user.

``pareto COHORT`` prints the fronts of a page of users in one table (a block of rows per user, the
knee marked), then the cohort's summary and table as ``status`` does; ``--user U`` the user's own
front as ``pareto`` of a study prints it; ``--json`` every user's front; ``--csv`` one CSV of every
user's front with the user in the first column (one file, so that it loads as one table).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from typing import Any

from search.commands.common import at_least
from search.commands.tables import (
    COHORT_ROWS,
    cohort_front_table,
    front_table,
    page_of,
    print_cohort,
    status_command,
)
from search.commands.console import status_console, table_console
from search.errors import UsageError
from search.execution.per_user import CohortStudy
from search.results.report import box_text, front_rows, hv_text, normalized_hypervolume, rows_to_csv
from search.study.study import Study
from search.tracking.links import study_link
from search.tracking.store import read_record


def add_cohort_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--user``, ``--all``, ``--rows`` and ``--page``: which users of a per-user study a command shows.

    Args:
        p: the command's parser.
        what: what the command shows of a user (``trials and front``), for the help texts.
    """
    p.add_argument("--user", metavar="USER", help=f"a per-user study: that user's {what}")
    p.add_argument("--all", action="store_true", help=f"a per-user study: every user's {what}, and every user's row")
    p.add_argument("--rows", type=at_least(1), default=COHORT_ROWS,
                   help=f"a per-user study: users per page (default {COHORT_ROWS})")
    p.add_argument("--page", type=at_least(1), default=1, help="a per-user study: which page of users")


def refuse_user_option(args: argparse.Namespace, verb: str) -> None:
    """``--user``, ``--all``, ``--rows`` and ``--page`` on a study that is not a per-user study: one line.

    Raises:
        UsageError: naming the option and that the study is one study for the whole cohort.
    """
    given = [f"--user {args.user}" if args.user is not None else "", "--all" if args.all else "",
             f"--rows {args.rows}" if args.rows != COHORT_ROWS else "", f"--page {args.page}" if args.page != 1 else ""]
    given = [g for g in given if g]
    if given:
        raise UsageError(f"{verb} {args.study} {given[0]}: {args.study!r} is one study for the whole cohort, "
                         f"not a per-user study; leave {given[0].split()[0]} out")


def user_study(cohort: CohortStudy, user: str, study_dir: str, verb: str = "status") -> Study:
    """One user's study of a per-user study.

    Raises:
        UsageError: no such user, or one not searched yet.
    """
    if user not in cohort.users:
        near = difflib.get_close_matches(user, cohort.users, n=3)
        shown = f"did you mean {', '.join(near)}?" if near else f"its users are {', '.join(cohort.users[:3])}, ..."
        raise UsageError(f"{verb} {cohort.name} --user {user}: no such user in the per-user study; {shown} "
                         f"(`pers-search status {cohort.name} --all` lists them)")
    if user not in cohort.studies:
        raise UsageError(f"{verb} {cohort.name} --user {user}: that user's search has not started yet; "
                         f"`pers-search resume {cohort.name} --study-dir {study_dir}` runs it")
    return cohort.studies[user]


# ----------------------------------------------------------------------------------------- pareto
def pareto_json(study: Study) -> dict[str, Any]:
    """``pareto --json`` of one study: objectives, hypervolume (raw and the fraction), MLflow link, front rows."""
    return {"study": study.name, "objectives": dict(study.space.objectives), "hypervolume": study.hypervolume(),
            "hypervolume_fraction": normalized_hypervolume(study), "mlflow_link": study_link(study),
            "front": front_rows(study)}


def print_pareto(study: Study) -> None:
    """``pareto`` of one study: its front table, its hypervolume line and, when it was logged, its MLflow link."""
    link = study_link(study)
    table_console().print(front_table(study))
    console = status_console()
    console.print(f"{hv_text(study)}: the share of the box from the reference point to the ideal point "
                  f"that the front covers ({box_text(study)})")
    if link:
        served = read_record(study.directory).get("tracking_uri", "").startswith(("http://", "https://"))
        console.print("in MLflow" + ("" if served else f" (start the UI first: pers-search ui {study.name})") + ":")
        print(link)


def pareto_cohort(cohort: CohortStudy, args: argparse.Namespace) -> int:
    """``pareto`` of a per-user study (see the module's docstring)."""
    if args.user is not None:
        return _pareto_user(cohort, args)
    searched = [u for u in cohort.users if u in cohort.studies]
    if args.json:
        print(json.dumps({**cohort.summary(), "per_user": {u: pareto_json(cohort.studies[u]) for u in searched}},
                         indent=1, default=str))
        return 0
    if args.csv:
        sys.stdout.write(rows_to_csv(_user_rows(cohort, searched)))
        return 0
    command = status_command(args.study, args.study_dir, "pareto")
    users, first, _, pages = (cohort.users, 0, 1, 1) if args.all else page_of(cohort.users, args.rows, args.page)
    title = (f"Pareto front of each user of {cohort.name}, users {first + 1}-{first + len(users)} of "
             f"{len(cohort.users):,} (validation queries)" if pages > 1 else None)
    table_console().print(cohort_front_table(cohort, users, title))
    print_cohort(cohort, rows=len(cohort.users) if args.all else args.rows, page=1 if args.all else args.page,
                 command=command, one_user="front with its test values", every_user="front")
    return 0


def _pareto_user(cohort: CohortStudy, args: argparse.Namespace) -> int:
    study = user_study(cohort, args.user, args.study_dir, "pareto")
    if args.json:
        print(json.dumps(pareto_json(study), indent=1, default=str))
    elif args.csv:
        sys.stdout.write(rows_to_csv(_user_rows(cohort, [args.user])))
    else:
        print_pareto(study)
    return 0


def _user_rows(cohort: CohortStudy, users: list[str]) -> list[dict[str, Any]]:
    """Every front row of these users, each with its ``user`` first (``pareto --csv`` of a per-user study)."""
    return [{"user": user, **row} for user in users for row in front_rows(cohort.studies[user])]
