"""MLflow of a per-user study: beside one parent run per user (each with its trials, front and plots,
logged by :class:`search.tracking.Tracker`), one ``cohort`` run with the summary: per user the
chosen point (the knee of its front) and its storage, and the cohort's total storage.

The cohort run's id is kept in ``<study>/mlflow.json``, so a resumed cohort updates the same run.
"""

from __future__ import annotations

import json
import time

from runners.scratch import scratch_dir
from search.per_user import CohortStudy
from search.report import rows_to_csv
from search.tracking import ROLE_TAG, RUN_NAME_TAG, Tracker, read_record, write_record

COHORT_RUN = "cohort"


def log_cohort(tracker: Tracker, cohort: CohortStudy) -> str:
    """Create or update the cohort summary run; return its id."""
    from mlflow.entities import Metric, RunTag

    client = tracker.client
    run_id = _cohort_run(tracker, cohort)
    summary = cohort.summary()
    stamp = int(time.time() * 1000)
    metrics = [Metric("total_storage_bytes", float(summary["total_storage_bytes"]), stamp, 0),
               Metric("n_users", float(len(cohort.users)), stamp, 0),
               Metric("n_users_searched", float(sum(1 for r in summary["users"] if r["knee"] is not None)), stamp, 0)]
    tags = [RunTag("users", ",".join(cohort.users)[:5000])]
    client.log_batch(run_id, metrics=metrics, tags=tags)
    with scratch_dir(prefix="pers-search-cohort-") as tmp:
        (tmp / "cohort_summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        (tmp / "cohort_summary.csv").write_text(rows_to_csv(summary["users"]), encoding="utf-8")
        client.log_artifacts(run_id, str(tmp))
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _cohort_run(tracker: Tracker, cohort: CohortStudy) -> str:
    record = read_record(cohort.directory)
    run_id = record.get("cohort_run_id") if record.get("tracking_uri") == tracker.uri else None
    if run_id is not None:
        tracker.client.update_run(run_id, status="RUNNING")
        return run_id
    run = tracker.client.create_run(tracker.experiment_id, tags={RUN_NAME_TAG: f"{cohort.name} ({COHORT_RUN})",
                                                                 ROLE_TAG: COHORT_RUN})
    write_record(cohort.directory, {**record, "tracking_uri": tracker.uri, "experiment_id": tracker.experiment_id,
                                    "cohort_run_id": run.info.run_id})
    return run.info.run_id
