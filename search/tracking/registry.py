"""Registering an exported bundle as a version of an MLflow registered model.

A version's source is the ``serving/`` artifacts folder of one run, which holds the whole bundle:
the trial's run for a study's bundle (:func:`trial_run`), the per-user study's ``cohort`` run for a
cohort's bundle (:func:`cohort_run`). The bundle writer reserves the version first
(:func:`reserve_version`), so that ``serving.yaml`` names it when it is written, once, and then logs
the finished bundle there (:func:`log_bundle`), withdrawing the version if that fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from search.study.study import Study, TrialRecord
from search.tracking.cohort import COHORT_RUN, cohort_run_tags
from search.tracking.store import TrackingError, read_record
from search.tracking.tracker import Tracker

SERVING_ARTIFACTS = "serving"  # the run's artifact folder that holds the bundle


@dataclass(frozen=True)
class Registration:
    """A reserved model version: the registered model, its version, the run whose ``serving/`` it is."""

    name: str
    version: str
    run_id: str

    def entry(self) -> dict[str, str]:
        """The ``mlflow`` entry of ``serving.yaml``."""
        return {"run_id": self.run_id, "registered_model": self.name, "version": self.version}


def connect_tracker(name: str, study_dir: str | Path, tracking_uri: str | None) -> Tracker:
    """A tracker on the study's experiment (``name``: a study's or a per-user study's name).

    Raises:
        TrackingError: the store is unreachable.
    """
    tracker = Tracker(tracking_uri)
    tracker.connect(name, study_dir)
    return tracker


def trial_run(tracker: Tracker, study: Study, trial: TrialRecord) -> str:
    """The trial's run id, the study logged first where it was not (or not fully)."""
    tracker.sync(study)
    return tracker.trial_run_id(trial.number)


def cohort_run(tracker: Tracker, name: str, directory: Path) -> str:
    """The ``cohort`` run of a per-user study: the one its ``mlflow.json`` names, else one tagged in its
    experiment, else a new one (the study's directory is only read: an export never writes there)."""
    record = read_record(directory)
    recorded = record.get("cohort_run_id") if record.get("tracking_uri") == tracker.uri else None
    if recorded is not None and tracker.is_usable(recorded):
        return recorded
    found = tracker.find_run(COHORT_RUN)
    if found is not None:
        return found
    run_id = tracker.create_run(cohort_run_tags(name))
    tracker.end_run(run_id, "FINISHED")
    return run_id


def reserve_version(tracker: Tracker, run_id: str, name: str, tags: Mapping[str, str], description: str,
                    model_description: str) -> Registration:
    """Create registered model ``name`` if it is new and a version of it whose source is the run's
    ``serving/`` folder (filled by :func:`log_bundle`).

    Raises:
        TrackingError: the registry refused (named, with MLflow's reason).
    """
    from mlflow.exceptions import MlflowException

    client = tracker.client  # the model registry: this module's job, on the tracker's connection
    try:
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description=model_description)
        source = tracker.artifact_uri(run_id).rstrip("/") + f"/{SERVING_ARTIFACTS}"
        version = client.create_model_version(name, source=source, run_id=run_id, tags=dict(tags),
                                              description=description)
    except MlflowException as err:
        raise TrackingError(f"--register {name}: the model registry of {tracker.uri} refused it ({err.message}); "
                            "check the name, or register into another store with --tracking-uri") from err
    return Registration(name, str(version.version), run_id)


def log_bundle(tracker: Tracker, registration: Registration, bundle: Path) -> None:
    """Log the written bundle under the run's ``serving/`` and tag the run with the version.

    Raises:
        TrackingError: the artifacts could not be logged (the caller withdraws the version).
    """
    from mlflow.exceptions import MlflowException

    try:
        tracker.log_files(registration.run_id, bundle, SERVING_ARTIFACTS)
        tracker.set_run_tag(registration.run_id, "registered_model", f"{registration.name}/{registration.version}")
    except (MlflowException, OSError) as err:
        raise TrackingError(f"--register {registration.name}: logging the bundle to run {registration.run_id} failed "
                            f"({err}); the version is withdrawn; export again with --force") from err


def withdraw(tracker: Tracker, registration: Registration) -> None:
    """Delete a reserved version again (an export that failed after reserving it), as far as the store lets."""
    from mlflow.exceptions import MlflowException

    try:
        tracker.client.delete_model_version(registration.name, registration.version)  # the model registry
    except MlflowException:  # the store is gone too: nothing more to undo from here
        pass
