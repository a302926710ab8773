"""Registering an exported bundle as a version of an MLflow registered model, linked to the trial's run."""

from __future__ import annotations

from pathlib import Path

from search.export.manifest import write_yaml
from search.study import Study, TrialRecord
from search.tracking import Tracker


def connect_tracker(study: Study, tracking_uri: str | None):
    tracker = Tracker(tracking_uri)
    tracker.connect(study.name, study.directory.parent)
    return tracker


def register_bundle(tracker, study: Study, trial: TrialRecord, out: Path, name: str, manifest: dict) -> tuple[str, str]:
    """Log the bundle to the trial's run (``serving/``) and register it as a model version."""
    from mlflow.exceptions import MlflowException

    tracker.sync(study)
    run_id = tracker.trial_run_id(trial.number)
    client = tracker.client
    manifest["mlflow"] = {"run_id": run_id, "registered_model": name}
    write_yaml(out / "serving.yaml", manifest)
    client.log_artifacts(run_id, str(out), "serving")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"pers-search serving bundles of study {study.name}")
    source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/serving"
    version = client.create_model_version(
        name, source=source, run_id=run_id,
        tags={"study": study.name, "trial": str(trial.number), "pick": manifest["pick"],
              "base_model": manifest["base_model"]["name"]},
        description=f"study {study.name}, trial {trial.number}, picked by {manifest['pick']!r}",
    )
    manifest["mlflow"]["version"] = str(version.version)
    write_yaml(out / "serving.yaml", manifest)
    client.log_artifact(run_id, str(out / "serving.yaml"), "serving")
    client.set_tag(run_id, "registered_model", f"{name}/{version.version}")
    return name, str(version.version)
