"""The CLI's rich tables: a trial's metrics, the baselines, a study's trials and its front."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from rich.table import Table

from runners.spec import TrialResult
from search.console import fmt_metric, fmt_value
from search.per_user import CohortStudy
from search.report import beyond_retrieval
from search.study import Study

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
    """The Pareto-optimal trials: validation objectives (± standard error), test objectives,
    whether a PEFT trial is beyond every trial without PEFT (:func:`search.report.beyond_retrieval`),
    configuration."""
    objectives = list(study.space.objectives)
    shown = study.space.shown_metrics  # constrained and reported metrics, beside the objectives
    beyond = beyond_retrieval(study)
    table = Table(title=f"Pareto front of {study.name} ({len(study.completed())} completed trials)",
                  caption=_beyond_caption(beyond) if beyond else None)
    table.add_column("trial", justify="right")
    for metric in objectives:
        table.add_column(f"{metric} (val)", justify="right")
    for metric in objectives:
        table.add_column(f"{metric} (test)", justify="right")
    for metric in shown:
        table.add_column(f"{metric} (val / test)", justify="right")
    if beyond:
        table.add_column("PEFT beyond retrieval")
    table.add_column("configuration")
    for trial in sorted(study.pareto_trials(), key=lambda t: t.number):
        mark = [_beyond_cell(beyond, trial.number)] if beyond else []
        table.add_row(str(trial.number), *(fmt_metric(trial.values, m) for m in objectives),
                      *(fmt_metric(trial.test_values, m) for m in objectives),
                      *(f"{fmt_metric(trial.values, m)} / {fmt_metric(trial.test_values, m)}" for m in shown), *mark,
                      study.space.describe(trial.config))
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
    """Every trial of a study: state, front membership, objectives, seconds, configuration or error."""
    front = {t.number for t in study.pareto_trials()}
    objectives = list(study.space.objectives)
    table = Table(title=f"study {study.name}: {len(study.trials)} trials, hypervolume {study.hypervolume():.4g}")
    for column in ("trial", "state", "front", *objectives, "seconds", "configuration / error"):
        table.add_column(column)
    for t in study.trials:
        table.add_row(str(t.number), t.state.value, "*" if t.number in front else "",
                      *(fmt_metric(t.values, m) for m in objectives), fmt_value(t.seconds),
                      t.error or _pruned(t) or study.space.describe(t.config))
    return table


def cohort_table(cohort: CohortStudy) -> Table:
    """A per-user study: per user its trials and its chosen point (the knee); the cohort's total storage."""
    summary = cohort.summary()
    objectives = next((list(s.space.objectives) for s in cohort.studies.values()), [])
    table = Table(title=f"per-user study {cohort.name}: {len(cohort.users)} users, total storage "
                        f"{fmt_value(summary['total_storage_bytes'])} bytes at the knees")
    for column in ("user", "trials", "knee trial", *objectives):
        table.add_column(column)
    for row in summary["users"]:
        study = cohort.studies.get(row["user"])
        knee = study.trials[row["knee"]] if study is not None and row["knee"] is not None else None
        table.add_row(row["user"], str(row["trials"]), "-" if knee is None else str(knee.number),
                      *(fmt_metric(knee.values, m) if knee else "-" for m in objectives))
    return table


def _pruned(trial) -> str | None:
    info = trial.user_attrs.get("pruned")
    return None if info is None else f"stopped early: {info['reason']}"
