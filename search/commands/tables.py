"""The CLI's rich tables: a trial's metrics, the baselines, a study's trials and its front."""

from __future__ import annotations

import os
import time
from typing import Any, Mapping, Sequence

from rich.table import Table

from runners.spec import TrialResult
from search.commands.common import DEFAULT_STUDY_DIR
from search.results.config_view import describe, yes_no
from search.commands.console import fmt_metric, fmt_value, table_console
from search.execution.per_user import CohortStudy
from search.results.report import beyond_retrieval, hv_text
from search.study.study import Study, TrialRecord, TrialState

BASELINE_COLUMNS = ("rougeL", "rouge1", "persona_f1", "copy_rate", "loss", "storage_bytes",
                    "retrieval_index_bytes", "seconds_per_user", "generate_seconds")


def metrics_table(result: TrialResult) -> Table:
    """Every metric of a trial, averaged over its users."""
    table = Table(title=f"trial metrics ({result.split}, mean over {len(result.users)} users)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in sorted(result.metrics.items()):
        table.add_row(key, fmt_value(value))
    return table


def baselines_table(rows: Sequence[Mapping[str, Any]], split: str) -> Table:
    """One row per baseline (``name`` and ``metrics`` of each row): means ± standard errors, users and queries."""
    first = rows[0]["metrics"] if rows else {}
    table = Table(title=f"baselines on the {split} queries: mean ± standard error (bootstrap over users and queries), "
                        f"{fmt_value(first.get('n_users'))} users, {fmt_value(first.get('n_queries'))} queries")
    table.add_column("baseline")
    for column in BASELINE_COLUMNS:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["name"], *(fmt_metric(row["metrics"], c) for c in BASELINE_COLUMNS))
    return table


def front_table(study: Study) -> Table:
    """The Pareto-optimal trials: whether it is the knee (yes/no), validation objectives
    (± standard error), test objectives, whether a PEFT trial is beyond every trial without PEFT
    (:func:`search.results.report.beyond_retrieval`), the configuration (:func:`search.results.config_view.describe`)."""
    objectives = list(study.space.objectives)
    shown = study.space.shown_metrics  # constrained and reported metrics, beside the objectives
    beyond = beyond_retrieval(study)
    knee = study.knee_trial()
    table = Table(title=f"Pareto front of {study.name} ({len(study.completed())} completed trials)",
                  caption=_beyond_caption(beyond) if beyond else None)
    table.add_column("trial", justify="right")
    table.add_column("knee")
    for metric in objectives:
        table.add_column(f"{metric} (val)", justify="right")
    for metric in objectives:
        table.add_column(f"{metric} (test)", justify="right")
    for metric in shown:
        table.add_column(f"{metric} (val / test)", justify="right")
    if beyond:
        table.add_column("PEFT beyond retrieval")
    table.add_column("configuration", overflow="fold")  # fold, never cut, a long mask such as lora.layers=0,2-3
    for trial in sorted(study.pareto_trials(), key=lambda t: t.number):
        mark = [_beyond_cell(beyond, trial.number)] if beyond else []
        table.add_row(str(trial.number), yes_no(knee is not None and knee.number == trial.number),
                      *(fmt_metric(trial.values, m) for m in objectives),
                      *(fmt_metric(trial.test_values, m) for m in objectives),
                      *(f"{fmt_metric(trial.values, m)} / {fmt_metric(trial.test_values, m)}" for m in shown), *mark,
                      describe(study.space, trial.config))
    return table


def _beyond_cell(beyond: Mapping[int, list[str]], number: int) -> str:
    if number not in beyond:
        return "-"
    return ("yes: " + ", ".join(beyond[number])) if beyond[number] else "within noise"


def _beyond_caption(beyond: Mapping[int, list[str]]) -> str:
    wins = sorted(n for n, metrics in beyond.items() if metrics)
    verdict = (f"front trials {', '.join(map(str, wins))} carry PEFT (LoRA memory or shared pieces) and are above "
               "every trial without it" if wins else "no front trial with PEFT is above every trial without it")
    return (f"{verdict} on the metrics named, by more than the two trials' combined standard error "
            "(validation queries)")


def trials_table(study: Study) -> Table:
    """Every trial of a study: state, on the front (yes/no), objectives, seconds, configuration
    (:func:`search.results.config_view.describe`) or error; and when any trial has one, a ``marked`` column
    (``warm start``, ``stopped early``: :attr:`TrialRecord.marks`)."""
    front = {t.number for t in study.pareto_trials()}
    objectives = list(study.space.objectives)
    live = study.in_flight() if any(t.state is TrialState.RUNNING for t in study.trials) else False
    marked = any(t.marks for t in study.trials)
    table = Table(title=f"study {study.name}: {len(study.trials)} trials, {hv_text(study)}",
                  caption=_running_caption(study, live))
    for column in ("trial", "state", *(("marked",) if marked else ()), "front", *objectives, "seconds",
                   "configuration / error"):
        table.add_column(column, overflow="fold" if column.startswith("configuration") else "ellipsis")
    for t in study.trials:
        table.add_row(str(t.number), _state(t, live), *((", ".join(t.marks),) if marked else ()),
                      yes_no(t.number in front), *(fmt_metric(t.values, m) for m in objectives),
                      fmt_value(t.seconds), t.error or _pruned(t) or describe(study.space, t.config))
    return table


COHORT_ROWS = 20  # users shown by ``status COHORT`` (and at the end of a per-user run) unless asked for more


def cohort_summary(overview: Mapping[str, Any]) -> list[str]:
    """A per-user study in a few lines (:meth:`search.execution.per_user.CohortStudy.overview`): users per state,
    trials, storage at the knees, the spread of the users' hypervolumes, the writer."""
    o = overview
    lines = [f"per-user study {o['study']}: {o['users']:,} users: {o['done']:,} done, {o['running']:,} running, "
             f"{o['stopped']:,} stopped part-way, {o['pending']:,} pending",
             f"trials: {o['trials_finished']:,} finished of {o['trials_budget']:,}, {o['trials_running']:,} running"]
    storage = o["storage_per_user"]
    if storage is not None:
        lines.append(f"storage at the knees: {_bytes(o['total_storage_bytes'])} in all; per user median "
                     f"{_bytes(storage['median'])} (min {_bytes(storage['min'])}, max {_bytes(storage['max'])})")
    volume = o["hypervolume_fraction"]
    if volume is not None:
        lines.append(f"HV per user (the share of each user's box from its reference point to the ideal point): "
                     f"median {volume['median']:.3f}, quartiles {volume['q1']:.3f}-{volume['q3']:.3f}, "
                     f"min {volume['min']:.3f}, max {volume['max']:.3f}")
    writer = o["writer"]
    if writer is None:
        lines.append("no process is writing it" + ("; `pers-search resume` continues it" if o["stopped"] or o["pending"]
                                                   else ""))
    elif writer["pid"] != os.getpid():
        lines.append("being written by process {pid} on {host}".format(**writer))
    return lines


def cohort_table(cohort: CohortStudy, rows: Sequence[Mapping[str, Any]] | None = None, first: int = 0,
                 title: str | None = None) -> Table:
    """A per-user study: per user its state, trials, hypervolume and chosen point (the knee).

    Args:
        cohort: the per-user study.
        rows: the users to show (:meth:`~search.execution.per_user.CohortStudy.user_rows`, a page of them);
            default every user.
        first: the 0-based place in the cohort of the first row (the ``#`` column).
        title: default: the users and the total storage at the knees.
    """
    rows = cohort.user_rows() if rows is None else rows
    objectives = next((list(s.space.objectives) for s in cohort.studies.values()), [])
    if title is None:
        summary = cohort.summary()
        title = (f"per-user study {cohort.name}: {len(cohort.users)} users, total storage "
                 f"{fmt_value(summary['total_storage_bytes'])} bytes at the knees")
    table = Table(title=title)
    for column in ("#", "user", "state", "trials", "HV", "knee trial", *objectives):
        table.add_column(column, justify="right" if column == "#" else "left")
    for place, row in enumerate(rows, first + 1):
        knee = row["knee"]
        trials = "-" if row["budget"] is None else f"{row['finished']}/{row['budget']}" + (
            f" (+{row['running']} running)" if row["running"] else "")
        table.add_row(str(place), row["user"], row["state"], trials,
                      "-" if row["hypervolume_fraction"] is None else f"{row['hypervolume_fraction']:.3f}",
                      "-" if knee is None else str(knee.number),
                      *(fmt_metric(knee.values, m) if knee else "-" for m in objectives))
    return table


def print_cohort(cohort: CohortStudy, rows: int = COHORT_ROWS, page: int = 1, command: str = "",
                 one_user: str = "trials and front", every_user: str = "trials") -> None:
    """The cohort's summary lines, then one page of its table, with lines saying how to see more.

    Args:
        cohort: the per-user study.
        rows: users per page.
        page: 1-based.
        command: the command the hint lines build on (``pers-search status NAME``).
        one_user: what ``command --user USER`` shows, for the hint line.
        every_user: what ``command --all`` shows, for the hint line.
    """
    console = table_console()
    every = cohort.user_rows()
    for line in cohort_summary(cohort.overview(every)):
        console.print(line, highlight=False, soft_wrap=True)
    shown, first, page, pages = page_of(every, rows, page)
    title = f"users {first + 1}-{first + len(shown)} of {len(every):,}" if pages > 1 else None
    console.print(cohort_table(cohort, shown, first, title=title))
    for hint in page_hints(command, page, pages, one_user, every_user):
        console.print(hint, highlight=False, soft_wrap=True)


def page_of(items: Sequence[Any], rows: int, page: int) -> tuple[Sequence[Any], int, int, int]:
    """One page of ``rows`` items: ``(the page's items, 0-based place of its first, the page, pages)``;
    a page past the last is the last."""
    pages = max(1, -(-len(items) // rows))
    page = min(max(1, page), pages)
    first = (page - 1) * rows
    return items[first:first + rows], first, page, pages


def page_hints(command: str, page: int, pages: int, one_user: str, every_user: str) -> list[str]:
    """The lines under a page of users: the next page, one user, every user."""
    hints = []
    if page < pages:
        hints.append(f"next page: `{command} --page {page + 1}` (page {page} of {pages}; --rows N for N a page)")
    hints.append(f"one user's {one_user}: `{command} --user USER`; every user's {every_user}: `{command} --all`")
    return hints


def cohort_front_table(cohort: CohortStudy, users: Sequence[str], title: str | None = None) -> Table:
    """The fronts of some users of a per-user study, one under the other in one table: per front trial
    its user, number, whether it is the user's knee, its validation objectives and configuration."""
    objectives = next((list(s.space.objectives) for s in cohort.studies.values()), [])
    table = Table(title=title or f"Pareto front of each user of {cohort.name} (validation queries)")
    for column in ("user", "trial", "knee", *objectives, "configuration"):
        table.add_column(column, justify="right" if column in ("trial", *objectives) else "left")
    for user in users:
        study = cohort.studies.get(user)
        front = sorted(study.pareto_trials(), key=lambda t: t.number) if study is not None else []
        if not front:
            table.add_row(user, "-", "", *("-" for _ in objectives),
                          "not searched yet" if study is None else "no completed feasible trial", end_section=True)
            continue
        knee = study.knee_trial()
        for place, trial in enumerate(front):
            table.add_row(user if place == 0 else "", str(trial.number),
                          "yes" if knee is not None and knee.number == trial.number else "",
                          *(fmt_metric(trial.values, m) for m in objectives), describe(study.space, trial.config),
                          end_section=place == len(front) - 1)
    return table


def status_command(name: str, study_dir: str, verb: str = "status") -> str:
    """``pers-search status NAME`` (another ``verb``: ``pareto``, ``importance``; with ``--study-dir``
    when it is not the default), for hint lines."""
    return f"pers-search {verb} {name}" + ("" if study_dir == DEFAULT_STUDY_DIR else f" --study-dir {study_dir}")


def _bytes(value: float) -> str:
    """Bytes in KB, MB or GB (1024-based), for the summary lines."""
    for unit, size in (("GB", 2 ** 30), ("MB", 2 ** 20), ("KB", 2 ** 10)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} bytes"


def _state(trial: TrialRecord, live: bool) -> str:
    """A trial's state; one in flight as ``running 2m05s``, one that no live process runs as ``stale``."""
    if trial.state is not TrialState.RUNNING:
        return trial.state.value
    if not live:
        return "stale"
    elapsed = int(time.time() - (trial.started_at or time.time()))
    return f"running {elapsed // 60}m{elapsed % 60:02d}s"


def _running_caption(study: Study, live: bool) -> str | None:
    if not any(t.state is TrialState.RUNNING for t in study.trials):
        return None
    if live:
        return "trials in flight are shown as running with their time so far (a live process writes the study)"
    return (f"stale: the process that ran these trials stopped; `pers-search resume {study.name}` runs them again")


def _pruned(trial) -> str | None:
    info = trial.user_attrs.get("pruned")
    return None if info is None else f"stopped early: {info['reason']}"
