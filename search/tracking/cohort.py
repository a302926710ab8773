"""MLflow of a per-user study: beside one parent run per user (each with its trials, front and plots,
logged by :class:`search.tracking.tracker.Tracker`), one ``cohort`` run with the summary: per user the
chosen point (the knee of its front) and its storage, and the cohort's total storage.

The cohort run's id is kept in ``<study>/mlflow.json``, so a resumed cohort updates the same run.
"""

from __future__ import annotations

import json

from runners.scratch import scratch_dir
from search.execution.per_user import CohortStudy
from search.results.report import rows_to_csv
from search.tracking.store import read_record, write_record
from search.tracking.tracker import ROLE_TAG, RUN_NAME_TAG, Tracker

COHORT_RUN = "cohort"


def log_cohort(tracker: Tracker, cohort: CohortStudy) -> str:
    """Create or update the cohort summary run; return its id."""
    run_id = _cohort_run(tracker, cohort)
    summary = cohort.summary()
    metrics = {"total_storage_bytes": summary["total_storage_bytes"], "n_users": len(cohort.users),
               "n_users_searched": sum(1 for r in summary["users"] if r["knee"] is not None)}
    tracker.log_values(run_id, metrics=metrics, tags={"users": ",".join(cohort.users)})
    with scratch_dir(prefix="pers-search-cohort-") as tmp:
        (tmp / "cohort_summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        (tmp / "cohort_summary.csv").write_text(rows_to_csv(summary["users"]), encoding="utf-8")
        tracker.log_files(run_id, tmp)
    tracker.end_run(run_id, "FINISHED")
    return run_id


def cohort_run_tags(name: str) -> dict[str, str]:
    """The tags of a per-user study's ``cohort`` run: its name ``<study> (cohort)`` and its role."""
    return {RUN_NAME_TAG: f"{name} ({COHORT_RUN})", ROLE_TAG: COHORT_RUN}


def _cohort_run(tracker: Tracker, cohort: CohortStudy) -> str:
    record = read_record(cohort.directory)
    run_id = record.get("cohort_run_id") if record.get("tracking_uri") == tracker.uri else None
    if run_id is not None:
        tracker.reopen(run_id)
        return run_id
    run_id = tracker.create_run(cohort_run_tags(cohort.name))
    write_record(cohort.directory, {**record, "tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id,
                                    "cohort_run_id": run_id})
    return run_id
