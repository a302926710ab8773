"""MLflow tracking of a study: one experiment per study, a parent run, one nested run per trial.

Layout in MLflow (see docs/notes/mlflow.md):

- experiment ``<study name>``; parent run ``<study name>`` (tags ``pers_search.role=study``,
  ``optimizer``, ``objectives``...), with the ``hypervolume`` metric stepped by trial number and,
  when the study ends, the artifacts ``space.yaml``, ``summary.json``, ``pareto/front.csv``,
  ``pareto/front.json``, ``plots/pareto_<a>_vs_<b>.png``, ``plots/pareto_3d.html`` and
  ``plots/hypervolume.png``;
- nested run ``trial-NNN`` per finished trial: params (the flattened configuration, the layer
  mask also as a ``0110...`` string), metrics (validation; ``test_<metric>`` for front trials
  evaluated on the test queries; timings), tags ``optimizer``, ``state``, ``pareto``
  (``true``/``false``, updated as the front moves) and the artifact ``trial.json``.

Resume reuses the runs: ``<study dir>/mlflow.json`` records the tracking URI, the experiment and
the parent run, each trial keeps its run id in the user attribute ``mlflow_run_id``, and trial
runs are found again through their ``pers_search.trial`` tag, so nothing is logged twice.

The default store is ``sqlite:///mlruns/mlflow.db`` (relative to the working directory) with
artifacts in ``mlruns/artifacts``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` override it.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from runners.files import safe_name
from search.errors import SearchError
from search.report import front_rows, hypervolume_curve, rows_to_csv, study_summary
from search.space import finite, mask_string
from search.study import Study, TrialRecord, TrialState, dump_yaml

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
RECORD_FILE = "mlflow.json"
RUN_ID_ATTR = "mlflow_run_id"
TRIAL_TAG = "pers_search.trial"
ROLE_TAG = "pers_search.role"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_STATUS = {TrialState.COMPLETED: "FINISHED", TrialState.FAILED: "FAILED", TrialState.STOPPED: "KILLED",
           TrialState.PRUNED: "KILLED"}  # MLflow has no pruned status; the run keeps a state=pruned tag
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"  # the UI then opens on the runs table, not the GenAI overview
_QUIET = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_MAX_TAG = 5000


class TrackingError(SearchError, RuntimeError):
    """The tracking store cannot be reached or used."""


# --------------------------------------------------------------------------- URIs and records
def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the default store.

    A relative SQLite path is made absolute against the working directory, so the URI stays
    valid when it is stored and used again from elsewhere.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith(("sqlite:", "file:", "databricks")):
        return Path(uri).resolve().as_uri()
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def artifact_root(uri: str) -> Path | None:
    """Where a local SQLite store keeps artifacts (``artifacts/`` beside the database), else None."""
    db = sqlite_path(uri)
    return None if db is None else db.parent / "artifacts"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast when the store cannot be used: an HTTP server that does not answer, or a
    SQLite database whose directory cannot be created.

    Raises:
        TrackingError: naming the URI and the fix.
    """
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(
                f"tracking store {uri}: cannot create {db.parent} ({err}); pass a writable --tracking-uri"
            ) from err
        return
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    url = uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as err:
        raise TrackingError(
            f"tracking server {uri} is unreachable ({type(err).__name__}); start it (pers-search ui, "
            "mlflow server) or pass another --tracking-uri, or --no-mlflow"
        ) from err
    if response.status_code in (401, 403):
        raise TrackingError(
            f"tracking server {uri} refused access (HTTP {response.status_code}); set MLFLOW_TRACKING_USERNAME/"
            "MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
        )
    if response.status_code == 404:
        raise TrackingError(
            f"tracking server {uri} has no MLflow REST API (HTTP 404 on {url}); check the --tracking-uri"
        )


def read_record(study_directory: str | Path) -> dict[str, Any]:
    """The study's ``mlflow.json`` (tracking URI, experiment id, parent run id), or ``{}``."""
    path = Path(study_directory) / RECORD_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise TrackingError(f"{path} is not JSON ({err}); delete it to log the study to new runs") from err


def write_record(study_directory: Path, record: Mapping[str, Any]) -> None:
    """Write a study's ``mlflow.json`` atomically."""
    study_directory.mkdir(parents=True, exist_ok=True)
    tmp = study_directory / f".{RECORD_FILE}.tmp"
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, study_directory / RECORD_FILE)


# --------------------------------------------------------------------------- params and metrics
def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params of a configuration: scalars as text; a list (layer mask) both as a
    ``0110...`` string under its own name and one ``<name>.<i>`` param per element."""
    params: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, (list, tuple)):
            params[key] = mask_string(value)
            params.update({f"{key}.{i}": str(v) for i, v in enumerate(value)})
        else:
            params[key] = str(value)
    return params


def trial_metrics(trial: TrialRecord) -> dict[str, float]:
    """Numeric validation values, ``test_``-prefixed test values and timings of a trial."""
    out = {k: float(v) for k, v in trial.values.items() if finite(v)}
    out.update({f"test_{k}": float(v) for k, v in trial.test_values.items() if finite(v)})
    if trial.seconds is not None:
        out["trial_seconds"] = float(trial.seconds)
    if trial.suggest_seconds is not None:
        out["suggest_seconds"] = float(trial.suggest_seconds)
    return out


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


# --------------------------------------------------------------------------- the tracker
class Tracker:
    """Logs a study to MLflow; use it as an :func:`search.api.optimize` callback.

    Call :meth:`connect` before the first trial (it fails fast on an unreachable store), pass
    the tracker in ``callbacks``, and call :meth:`finish` when the loop ends (it logs test
    metrics and the parent run's artifacts). :meth:`sync` logs any study in one go.

    Args:
        tracking_uri: an MLflow tracking URI; default the study's recorded URI when resuming,
            else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.
        log_adapters: also log each trial's kept adapter directory (``adapter_dir`` attr).
    """

    def __init__(self, tracking_uri: str | None = None, log_adapters: bool = False) -> None:
        self.requested_uri = tracking_uri
        self.log_adapters = log_adapters
        self.uri: str | None = None
        self.client = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.study: Study | None = None
        self._runs: dict[int, str] = {}
        self._tested: set[int] = set()
        self._pareto: dict[int, str] = {}
        self._hv_steps: set[int] = set()

    # ----------------------------------------------------------------- connecting
    def connect(self, study_name: str, study_dir: str | Path = "studies") -> "Tracker":
        """Resolve the URI, check the store answers, and get or create the study's experiment.

        Raises:
            TrackingError: the store is unreachable or unusable.
        """
        from mlflow.tracking import MlflowClient

        record = read_record(Path(study_dir) / study_name)
        stored = None if os.environ.get("MLFLOW_TRACKING_URI") else record.get("tracking_uri")
        self.uri = resolve_tracking_uri(self.requested_uri or stored)
        check_reachable(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment_id = self._experiment(study_name)
        return self

    def _experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                root = artifact_root(self.uri)
                location = (root / safe_name(name, limit=200, fallback="study")).as_uri() if root else None
                return self.client.create_experiment(name, artifact_location=location,
                                                     tags={ROLE_TAG: "study", EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        except MlflowException as err:
            raise TrackingError(f"tracking store {self.uri}: cannot open experiment {name!r} ({err})") from err
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return experiment.experiment_id

    def attach(self, study: Study) -> None:
        """Bind to a study: reuse its parent run (from ``mlflow.json``) or create one, and index
        the trial runs already logged under it."""
        if self.client is None:
            self.connect(study.name, study.directory.parent)
        self.study = study
        record = read_record(study.directory)
        parent = record.get("parent_run_id") if record.get("tracking_uri") == self.uri else None
        if parent is None or not self._usable(parent):
            parent = self._create_parent(study)
            write_record(study.directory, {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                            "experiment_name": study.name, "parent_run_id": parent,
                                            "created_at": time.time()})
        else:
            self.client.update_run(parent, status="RUNNING")
        self.parent_run_id = parent
        self._index_children()

    def _usable(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id

    def _create_parent(self, study: Study) -> str:
        run = self.client.create_run(self.experiment_id, start_time=_ms(study.created_at),
                                     tags={RUN_NAME_TAG: study.name, ROLE_TAG: "study", **self._study_tags(study)})
        return run.info.run_id

    def _study_tags(self, study: Study) -> dict[str, str]:
        space = study.space
        return {
            "pers_search.study": study.name,
            "pers_search.study_dir": str(study.directory.resolve()),
            "optimizer": space.optimizer.name,
            "trials": str(space.optimizer.trials),
            "init_trials": str(space.optimizer.init_trials),
            "seed": str(space.optimizer.seed),
            "objectives": ",".join(f"{m}:{d}" for m, d in space.objectives.items()),
            "constraints": "; ".join(space.constraints) or "none",
            "model": space.model.name,
            "data": f"{space.data.source} ({space.data.users} users)",
            "space": space.source,
        }

    def _index_children(self) -> None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_run_id}'",
            max_results=50000,
        )
        self._runs, self._tested, self._pareto = {}, set(), {}
        for run in runs:
            number = run.data.tags.get(TRIAL_TAG)
            if number is None or not number.isdigit():
                continue
            self._runs[int(number)] = run.info.run_id
            self._pareto[int(number)] = run.data.tags.get("pareto", "")
            if any(k.startswith("test_") for k in run.data.metrics):
                self._tested.add(int(number))
        history = self.client.get_metric_history(self.parent_run_id, "hypervolume")
        self._hv_steps = {m.step for m in history}

    # ----------------------------------------------------------------- logging
    def __call__(self, study: Study, trial: TrialRecord) -> None:
        """The optimise callback: log the finished trial, then the front and the hypervolume."""
        self.sync(study)

    def sync(self, study: Study) -> None:
        """Log every finished trial not logged yet, update ``pareto`` tags and the hypervolume.

        Idempotent: calling it again logs nothing new.
        """
        if self.study is not study or self.parent_run_id is None:
            self.attach(study)
        for trial in study.finished():
            if trial.number not in self._runs:
                self._log_trial(study, trial)
            elif trial.test_values and trial.number not in self._tested:
                self._log_test(trial)
        self._update_front(study)
        self._log_hypervolume(study)

    def _log_trial(self, study: Study, trial: TrialRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        tags = {RUN_NAME_TAG: f"trial-{trial.number:03d}", PARENT_TAG: self.parent_run_id,
                TRIAL_TAG: str(trial.number), ROLE_TAG: "trial", "optimizer": study.space.optimizer.name,
                "state": trial.state.value}
        if trial.error:
            tags["error"] = trial.error[:_MAX_TAG]
        run = self.client.create_run(self.experiment_id, start_time=_ms(trial.started_at), tags=tags)
        run_id = run.info.run_id
        stamp = _ms(trial.finished_at) or _ms(time.time())
        metrics = [Metric(k, v, stamp, 0) for k, v in trial_metrics(trial).items()]
        params = [Param(k, v[:6000]) for k, v in flat_params(trial.config).items()]
        config_tag = [RunTag("config", study.space.describe(trial.config)[:_MAX_TAG])]
        for start in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limits
            self.client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                                  tags=config_tag if start == 0 else [])
        self.client.log_text(run_id, json.dumps(trial.to_json(), indent=1, default=str), "trial.json")
        adapter_dir = trial.user_attrs.get("adapter_dir")
        if self.log_adapters and adapter_dir and Path(adapter_dir).is_dir():
            self.client.log_artifacts(run_id, adapter_dir, "adapters")
        _terminate(self.client, run_id, _STATUS[trial.state], _ms(trial.finished_at))
        self._runs[trial.number] = run_id
        if trial.test_values:
            self._tested.add(trial.number)
        study.set_user_attr(trial.number, RUN_ID_ATTR, run_id)

    def _log_test(self, trial: TrialRecord) -> None:
        from mlflow.entities import Metric

        run_id = self._runs[trial.number]
        stamp = _ms(time.time())
        metrics = [Metric(f"test_{k}", float(v), stamp, 0) for k, v in trial.test_values.items() if finite(v)]
        self.client.log_batch(run_id, metrics=metrics)
        self.client.log_text(run_id, json.dumps(trial.to_json(), indent=1, default=str), "trial.json")
        self._tested.add(trial.number)

    def _update_front(self, study: Study) -> None:
        front = {t.number for t in study.pareto_trials()}
        for number, run_id in self._runs.items():
            want = "true" if number in front else "false"
            if self._pareto.get(number) != want:
                self.client.set_tag(run_id, "pareto", want)
                self._pareto[number] = want
        knee = study.knee_trial()
        self.client.set_tag(self.parent_run_id, "front", ",".join(map(str, sorted(front))) or "none")
        self.client.set_tag(self.parent_run_id, "knee_trial", "none" if knee is None else str(knee.number))

    def _log_hypervolume(self, study: Study) -> None:
        from mlflow.entities import Metric

        missing = [t.number for t in study.finished() if t.number not in self._hv_steps]
        if not missing:
            return
        curve = hypervolume_curve(study, set(missing))
        metrics = [Metric("hypervolume", curve[n], _ms(time.time()), n) for n in missing]
        for start in range(0, len(metrics), 100):
            self.client.log_batch(self.parent_run_id, metrics=metrics[start:start + 100])
        self._hv_steps.update(missing)

    # ----------------------------------------------------------------- the end
    def finish(self, study: Study | None = None, status: str = "FINISHED") -> None:
        """Log what the loop left (test metrics), the parent run's artifacts, and close it.

        Args:
            study: the study (default: the one seen by the callbacks; nothing happens if none).
            status: the parent run's final MLflow status (``FINISHED``, ``KILLED``, ``FAILED``).
        """
        study = study or self.study
        if study is None:
            return
        self.sync(study)
        with tempfile.TemporaryDirectory(prefix="pers-search-mlflow-") as tmp:
            write_study_artifacts(study, Path(tmp), record=read_record(study.directory))
            self.client.log_artifacts(self.parent_run_id, tmp)
        from mlflow.entities import Metric

        stamp = _ms(time.time())
        counts = {"n_trials": len(study.trials), "n_completed": len(study.completed()),
                  "n_failed": sum(t.state is TrialState.FAILED for t in study.trials),
                  "front_size": len(study.pareto_trials())}
        self.client.log_batch(self.parent_run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in counts.items()],
                              tags=[_tag(k, v) for k, v in self._study_tags(study).items()])
        _terminate(self.client, self.parent_run_id, status)

    def trial_run_id(self, number: int) -> str | None:
        """The MLflow run id of a logged trial, or None."""
        return self._runs.get(number)


def _terminate(client, run_id: str, status: str, end_time: int | None = None) -> None:
    """``set_terminated`` without MLflow printing a "View run at" URL on stdout for every run."""
    old = os.environ.get(_QUIET)
    os.environ[_QUIET] = "true"
    try:
        client.set_terminated(run_id, status, end_time=end_time)
    finally:
        if old is None:
            os.environ.pop(_QUIET, None)
        else:
            os.environ[_QUIET] = old


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value[:_MAX_TAG])



# --------------------------------------------------------------------------- study artifacts
def write_study_artifacts(study: Study, out: Path, record: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the parent run's artifacts into ``out``: space, summary, front table, plots.

    Returns:
        The written files.
    """
    from search import plots  # matplotlib and plotly: only when artifacts are written

    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto").mkdir(exist_ok=True)
    files = [out / "space.yaml", out / "summary.json", out / "pareto" / "front.csv", out / "pareto" / "front.json"]
    files[0].write_text(study.space.text or dump_yaml(study.space), encoding="utf-8")
    files[1].write_text(json.dumps(study_summary(study, record), indent=1, default=str), encoding="utf-8")
    rows = front_rows(study)
    files[2].write_text(rows_to_csv(rows), encoding="utf-8")
    files[3].write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    points = plots.study_points(study)
    if points:
        files += plots.pairwise_pngs(points, study.space.objectives, out / "plots")
        files.append(plots.interactive_html(points, study.space.objectives, out / "plots" / "pareto_3d.html",
                                            title=f"Pareto front of {study.name}"))
    curve = hypervolume_curve(study)
    if curve:
        files.append(plots.hypervolume_png(list(curve), list(curve.values()), out / "plots" / "hypervolume.png"))
    return files
