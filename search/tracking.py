"""MLflow tracking of a study: one experiment per study, a parent run, one nested run per trial.

Layout in MLflow (see docs/notes/mlflow.md):

- experiment ``<study name>``, tagged so that MLflow opens it on the runs table with the front's
  trials, their objectives and key parameters as columns (:func:`runs_link`, :func:`front_view`);
- parent run ``<study name>`` (tags ``pers_search.role=study``, ``optimizer``, ``objectives``...),
  with the ``hypervolume`` and ``hypervolume_fraction`` metrics stepped by trial number and the
  artifacts ``space.yaml``, ``summary.json``, ``pareto/front.csv``, ``pareto/front.json``,
  ``plots/pareto_<a>_vs_<b>.png``, ``plots/pareto_3d.png`` and ``plots/hypervolume.png``, rewritten
  as trials finish (within a time budget, see :class:`Tracker`), plus ``plots/pareto_3d.html``
  (interactive, 4-5 MB) when the study ends;
- nested run ``trial-NNN`` per finished trial: params (the flattened configuration, the layer
  mask also as a ``0110...`` string), metrics (validation; ``test_<metric>`` for front trials
  evaluated on the test queries; timings), tags ``optimizer``, ``state``, ``pareto``
  (``true``/``false``, updated as the front moves), ``origin=warm_start`` on a per-user study's
  warm-start points, ``stopped_early=true`` (and ``stopped_at``, the checkpoint) on a trial the
  stopping rule stopped, and the artifact ``trial.json``.

Resume reuses the runs: ``<study dir>/mlflow.json`` records the tracking URI, the experiment and
the parent run, each trial keeps its run id in the user attribute ``mlflow_run_id``, and trial
runs are found again through their ``pers_search.trial`` tag, so nothing is logged twice.

The default store is ``sqlite:///mlruns/mlflow.db`` (relative to the working directory) with
artifacts in ``mlruns/artifacts``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` override it. A
new SQLite store is created under a lock (``mlflow.db.lock`` beside it, :func:`open_client`), so
studies started at once share it safely; ``file://`` stores, which MLflow 3 refuses, are told
apart in one line (:func:`check_reachable`). MLflow's usage telemetry is switched off before
MLflow is imported (:mod:`search.usage_reporting`).
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from runners.files import safe_name
from runners.scratch import scratch_dir
from search.errors import SearchError
from search.importance import MIN_TRIALS, compute, usable
from search.mlflow_views import (
    DESCRIPTION_TAG,
    KNEE_COLUMN,
    MARK_TAGS,
    SHARED_VIEW_PARAM,
    WORKFLOW_PARAM,
    WORKFLOW_TRAINING,
    chart_state,
    charts_view,
    charts_view_key,
    experiment_description,
    front_marks,
    owned_description,
    study_run_description,
)
from search.report import (
    front_rows,
    hypervolume_curves,
    reference_fixed,
    rows_to_csv,
    study_summary,
)
from search.config_view import config_params, describe, param_names
from search.space import finite
from search.stopping import PRUNED_ATTR
from search.study import ORIGIN_ATTR, Study, TrialRecord, TrialState, dump_yaml
from search.suggest_notes import latest_notes, mlflow_tags
from search.usage_reporting import usage_reporting_off

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
RECORD_FILE = "mlflow.json"
RUN_ID_ATTR = "mlflow_run_id"
TRIAL_TAG = "pers_search.trial"
ROLE_TAG = "pers_search.role"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_STATUS = {TrialState.COMPLETED: "FINISHED", TrialState.FAILED: "FAILED", TrialState.STOPPED: "KILLED",
           TrialState.PRUNED: "KILLED"}  # MLflow has no pruned status; the run keeps a state=pruned tag
# MLflow 3 up to about 3.5 chose an experiment's view from this tag; 3.17's UI ignores it (see
# :func:`runs_link`), but it still tells other MLflow clients what the experiment holds.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
# The workflow switch and the shared views' query parameter: see search.mlflow_views.
SHARED_VIEW_TAG = "mlflow.sharedViewState."
FRONT_FILTER = 'tags.pareto = "true"'
DEFAULT_UI_URL = "http://127.0.0.1:5000"
_QUIET = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"  # MLflow 3's opt-in to its file store (maintenance mode)
STORE_LOCK_SUFFIX = ".lock"  # <db>.lock beside a SQLite store: held while the store is created or checked
STORE_LOCK_TIMEOUT_S = 600.0
_MAX_TAG = 5000


class TrackingError(SearchError, RuntimeError):
    """The tracking store cannot be reached or used (a failure, exit code 1)."""

    exit_code = 1


class TrackingUsageError(TrackingError):
    """A tracking option that cannot work as given (a URI scheme, a port in use): exit code 2."""

    exit_code = 2


# The URI schemes MLflow's tracking and registry stores both accept.
TRACKING_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


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
    _check_scheme(uri)
    _check_file_store(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingError(
                f"tracking store {uri}: cannot create {db.parent} ({err}); pass a writable --tracking-uri"
            ) from err
        target = db if db.exists() else db.parent
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {uri}: {target} is not writable; fix its permissions (chmod u+w "
                                f"{target}), pass a writable --tracking-uri, or --no-mlflow")
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
        raise TrackingUsageError(
            f"tracking server {uri} has no MLflow REST API (HTTP 404 on {url}); check the --tracking-uri"
        )


def _check_scheme(uri: str) -> None:
    """A URI MLflow cannot open is a usage error, told in one line (not MLflow's traceback)."""
    scheme = urllib.parse.urlparse(uri).scheme.split("+", 1)[0]
    if scheme not in TRACKING_SCHEMES:
        raise TrackingUsageError(
            f"--tracking-uri {uri}: unsupported scheme {scheme + '://' if scheme else '(none)'}; use one of "
            f"{', '.join(s + '://' for s in TRACKING_SCHEMES)} (e.g. sqlite:///mlruns/mlflow.db or "
            "http://127.0.0.1:5000), or --no-mlflow")


def _check_file_store(uri: str) -> None:
    """MLflow 3 refuses its file store (``file://``, "maintenance mode") unless the user opts in:
    say so in one line with the SQLite URI to use instead, before any trial runs."""
    if urllib.parse.urlparse(uri).scheme != "file":
        return
    import mlflow.environment_variables as mlflow_env
    from mlflow.version import VERSION

    opt_in = getattr(mlflow_env, ALLOW_FILE_STORE, None)  # absent: an MLflow that still opens file stores
    if opt_in is None or os.environ.get(ALLOW_FILE_STORE, "").strip().lower() in ("true", "1"):
        return
    directory = urllib.parse.unquote(urllib.parse.urlparse(uri).path).rstrip("/") or "/mlruns"
    raise TrackingUsageError(
        f"--tracking-uri {uri}: MLflow {VERSION} keeps its file store in maintenance mode and refuses to open it; "
        f"use a SQLite store, e.g. --tracking-uri sqlite:///{directory}/mlflow.db (`mlflow migrate-filestore` "
        f"copies old runs into one), or set {ALLOW_FILE_STORE}=true to use the file store anyway")


@contextmanager
def store_lock(uri: str, timeout: float = STORE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``<db>.lock`` beside a SQLite store for the block (other stores: no lock).

    MLflow creates and migrates a new SQLite store the first time a client opens it, without a
    lock of its own; two processes doing it at once break each other's migration
    (``_alembic_tmp_experiments already exists``). Under this lock one process makes the store
    and the next finds it made.

    Raises:
        TrackingError: another process held the lock for ``timeout`` seconds.
    """
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    from filelock import FileLock, Timeout  # light, but only a SQLite store needs it

    path = db.with_name(db.name + STORE_LOCK_SUFFIX)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout as err:
        raise TrackingError(f"tracking store {uri}: another process has held {path} for {timeout:.0f} s while it "
                            f"creates or upgrades the store; wait for it to end (`fuser {path}` names it), "
                            "or pass another --tracking-uri") from err
    try:
        yield
    finally:
        lock.release()


def open_client(uri: str):
    """An ``MlflowClient`` on ``uri`` whose store is ready: the client's first use of the store
    (which creates the tables of a new SQLite store and migrates an old one) runs under
    :func:`store_lock`, so two studies started at once on a new store both find it made.

    Raises:
        TrackingError: the store cannot be opened (a file that is not a database, a schema
            this MLflow cannot use).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError  # MLflow's SQL layer, loaded with MLflow

    with store_lock(uri):
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # builds the store: tables, migrations,
            client.search_experiments(max_results=1)  # the default experiment (MLflow 3.17 in the constructor)
        except (MlflowException, SQLAlchemyError) as err:
            detail = str(getattr(err, "message", None) or err).splitlines()[0][:300]
            raise TrackingError(f"tracking store {uri}: cannot open it ({type(err).__name__}: {detail}); "
                                "pass another --tracking-uri, or --no-mlflow") from err
    return client


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


# --------------------------------------------------------------------------- the front's view and link
def front_view_key(objectives: Iterable[str]) -> str:
    """The shared-view key of a study's front view: ``pers-search-front-<first objective>``."""
    first = next(iter(objectives), "front")
    return f"pers-search-front-{first}"


def _column(kind: str, name: str) -> str:
    return f"{kind}.`{name}`"


def front_view(objectives: Mapping[str, str], params: Iterable[str] = (), metrics: Iterable[str] = ()) -> dict:
    """The runs-table state of a study's front, as MLflow's shared views store it.

    The front's trials (``tags.pareto = "true"``) sorted by the first objective (best first),
    with columns: each objective, its test value, the other ``metrics``, then ``params``. A
    filtered and sorted table lists runs flat (MLflow nests child runs only when neither is set),
    so the trials show without expanding their parent.
    """
    names = list(objectives)
    first = names[0]
    columns = [_column("metrics", m) for m in names] + [_column("metrics", f"test_{m}") for m in names]
    columns += [_column("metrics", m) for m in metrics if m not in names]
    columns += [_column("params", p) for p in params]
    columns = list(dict.fromkeys(columns))
    return {
        "searchFilter": FRONT_FILTER,
        "orderByKey": _column("metrics", first),
        "orderByAsc": objectives[first] == "min",
        "selectedColumns": columns,
        "columnOrder": columns,
        "runsHiddenMode": "SHOW_ALL",
        "runListHidden": False,
        "viewMaximized": False,
    }


def runs_link(base_url: str, experiment_id: str, objectives: Iterable[str] | Mapping[str, str]) -> str:
    """The link to a study's runs table showing its front.

    ``<base>/#/experiments/<id>/runs?viewStateShareKey=pers-search-front-<first objective>
    &workflowType=machine_learning``: the view (set on the experiment by :class:`Tracker`) filters
    the runs to ``tags.pareto = "true"``, sorts them by the first objective and shows the
    objectives and parameters as columns; ``workflowType`` opens MLflow's model-training pages
    rather than its GenAI overview. (Filter and sort cannot also be in the link: MLflow ignores a
    shared view when the query sets either.)

    Args:
        base_url: the MLflow UI, e.g. ``http://127.0.0.1:5000`` (a trailing ``/`` is fine).
        experiment_id: the study's experiment.
        objectives: the study's objectives (names, in order; a mapping's keys).
    """
    query = urllib.parse.urlencode({SHARED_VIEW_PARAM: front_view_key(objectives), WORKFLOW_PARAM: WORKFLOW_TRAINING})
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def ui_url(tracking_uri: str, default: str = DEFAULT_UI_URL) -> str:
    """Where the MLflow UI of a store is: the server itself for an HTTP store, else ``default``
    (what ``pers-search ui`` starts)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return default


def study_link(study, base_url: str | None = None) -> str | None:
    """The front link of a study logged to MLflow (from its ``mlflow.json``), or None if it never was.

    Args:
        study: a loaded :class:`Study`.
        base_url: the UI to link to (default: :func:`ui_url` of the recorded store).
    """
    record = read_record(study.directory)
    if not record.get("experiment_id"):
        return None
    base = base_url or ui_url(record.get("tracking_uri", ""))
    return runs_link(base, record["experiment_id"], study.space.objectives)


def set_front_view(client, experiment_id: str, space) -> str:
    """Write the front view and the chart view (:mod:`search.mlflow_views`) of a study's space on its
    experiment (no write when unchanged).

    Returns:
        The front view's key.
    """
    key = front_view_key(space.objectives)
    front = front_view(space.objectives, param_names(space), space.shown_metrics)
    front["selectedColumns"] = front["columnOrder"] = [*front["selectedColumns"], KNEE_COLUMN]
    views = {key: {**front, **chart_state(space)},
             charts_view_key(space.objectives): charts_view(space, front["orderByKey"], front["orderByAsc"],
                                                            front["selectedColumns"])}
    tags = client.get_experiment(experiment_id).tags
    for name, view in views.items():
        state = json.dumps(view, separators=(",", ":"))
        if tags.get(SHARED_VIEW_TAG + name) != state:
            client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + name, state)
    text = experiment_description(experiment_id, key, charts_view_key(space.objectives))
    if owned_description(tags.get(DESCRIPTION_TAG)) and tags.get(DESCRIPTION_TAG) != text:
        client.set_experiment_tag(experiment_id, DESCRIPTION_TAG, text)
    return key


def describe_study_run(client, experiment_id: str, run_id: str, study_name: str, objectives) -> None:
    """Write the study run's description (links that open it and the views in the Model-training
    pages), unless someone else wrote one."""
    current = client.get_run(run_id).data.tags.get(DESCRIPTION_TAG)
    text = study_run_description(study_name, experiment_id, run_id, front_view_key(objectives),
                                 charts_view_key(objectives))
    if owned_description(current) and current != text:
        client.set_tag(run_id, DESCRIPTION_TAG, text)


# --------------------------------------------------------------------------- params and metrics
def trial_metrics(trial: TrialRecord) -> dict[str, float]:
    """Numeric validation values, ``test_``-prefixed test values and timings of a trial."""
    out = {k: float(v) for k, v in trial.values.items() if finite(v)}
    out.update({f"test_{k}": float(v) for k, v in trial.test_values.items() if finite(v)})
    if trial.seconds is not None:
        out["trial_seconds"] = float(trial.seconds)
    if trial.suggest_seconds is not None:
        out["suggest_seconds"] = float(trial.suggest_seconds)
    return out


def marks_tags(trial: TrialRecord) -> dict[str, str]:
    """A trial run's tags for what the trial was beyond its state: ``origin`` (``warm_start``: a point of
    the earlier users' front) and ``stopped_early`` (``true``, with ``stopped_at``, the checkpoint)."""
    tags = {}
    if ORIGIN_ATTR in trial.user_attrs:
        tags["origin"] = str(trial.user_attrs[ORIGIN_ATTR])
    if trial.state is TrialState.PRUNED:
        tags["stopped_early"] = "true"
        tags["stopped_at"] = str((trial.user_attrs.get(PRUNED_ATTR) or {}).get("checkpoint", "-"))
    return tags


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


# --------------------------------------------------------------------------- the tracker
class Tracker:
    """Logs a study to MLflow; use it as an :func:`search.api.optimize` callback.

    Call :meth:`connect` before the first trial (it fails fast on an unreachable store), pass
    the tracker in ``callbacks``, and call :meth:`finish` when the loop ends (it logs test
    metrics, the parent run's artifacts and the interactive 3-D plot). :meth:`sync` logs any
    study in one go.

    After each trial the callback also rewrites the parent run's summary, front table and PNG
    plots, as long as that costs at most ``artifact_budget`` of the wall time: when writing them
    took ``c`` seconds, the next write waits until ``c * (1 - budget) / budget`` seconds have
    passed (with 0.1: nine times ``c``), so fast trials skip some updates and slow ones get
    every one.

    Args:
        tracking_uri: an MLflow tracking URI; default the study's recorded URI when resuming,
            else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.
        log_adapters: also log each trial's kept adapter directory (``adapter_dir`` attr).
        artifact_budget: the share of wall time the per-trial plots may take (0 turns them
            off; 1 writes them after every trial).
    """

    def __init__(self, tracking_uri: str | None = None, log_adapters: bool = False,
                 artifact_budget: float = 0.1) -> None:
        if not 0.0 <= artifact_budget <= 1.0:
            raise TrackingError(f"Tracker: artifact_budget={artifact_budget!r} must be in [0, 1]; pass e.g. 0.1")
        self.requested_uri = tracking_uri
        self.log_adapters = log_adapters
        self.artifact_budget = artifact_budget
        self.artifact_writes = 0
        self._clock = ArtifactClock()
        self.many = False  # one study among many (share): no interactive plot, the final plots within the budget
        self.uri: str | None = None
        self.client = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.study: Study | None = None
        self._runs: dict[int, str] = {}
        self._tested: set[int] = set()
        self._pareto: dict[int, str] = {}
        self._marks: dict[int, dict[str, str]] = {}  # the front_marks tags of each trial run, as set
        self._noted: dict[str, str] = {}  # the latest suggestion-notes tags set on the parent run
        self._hv_steps: set[int] = set()
        self._fraction_steps: set[int] = set()
        self._curves: dict[int, tuple[float, float]] = {}  # trial number -> (hypervolume, fraction)
        self._shares_experiment = False  # set by share(): other studies' runs in the experiment are live
        self._shared: list[Tracker] = []
        self.closed = False

    # ----------------------------------------------------------------- connecting
    def connect(self, study_name: str, study_dir: str | Path = "studies") -> "Tracker":
        """Resolve the URI, check the store answers, and get or create the study's experiment.

        Raises:
            TrackingError: the store is unreachable or unusable.
        """
        usage_reporting_off()  # before MLflow is imported: it sends usage data unless told not to
        record = read_record(Path(study_dir) / study_name)
        stored = None if os.environ.get("MLFLOW_TRACKING_URI") else record.get("tracking_uri")
        self.uri = resolve_tracking_uri(self.requested_uri or stored)
        check_reachable(self.uri)
        self.client = open_client(self.uri)
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

    def share(self, many: bool = False) -> "Tracker":
        """A tracker for another study of the same experiment, on this tracker's connection (connect first).

        A per-user study logs each user's study with a tracker of its own, all on one MLflow client:
        users run side by side, so one tracker re-attached per user would re-attach at every trial.
        The trackers share one artifact budget (the plots rewritten as trials finish take at most
        ``artifact_budget`` of the wall time of all of them together). A shared tracker leaves the
        experiment's other runs alone (the other users' parent runs are live): call
        :meth:`close_orphans` once before the first. :meth:`stop` of this tracker also stops the
        shared ones still open.

        Args:
            many: the study is one of many (a large cohort): its :meth:`finish` writes the summary and
                the front, the PNG plots only within the shared budget, and no interactive 3-D plot
                (4-5 MB a study, 5 GB for a thousand users).
        """
        other = Tracker(self.requested_uri, self.log_adapters, self.artifact_budget)
        other.uri, other.client, other.experiment_id = self.uri, self.client, self.experiment_id
        other._shares_experiment, other._clock, other.many = True, self._clock, many
        self._shared = [t for t in self._shared if not t.closed] + [other]
        return other

    def close_orphans(self) -> None:
        """Close the runs a killed process left RUNNING in the experiment (see :meth:`_close_orphans`)."""
        self._close_orphans()

    def attach(self, study: Study) -> None:
        """Bind to a study: reuse its parent run (from ``mlflow.json``) or create one, and index
        the trial runs already logged under it."""
        if self.client is None:
            self.connect(study.name, study.directory.parent)
        self.study = study
        record = read_record(study.directory)
        parent = record.get("parent_run_id") if record.get("tracking_uri") == self.uri else None
        if parent is None or not self._usable(parent):
            parent = self._find_parent(study) or self._create_parent(study)
            if not study.read_only:  # a reader (ui) logs to MLflow but writes nothing in the study directory
                write_record(study.directory, {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                                "experiment_name": study.name, "parent_run_id": parent,
                                                "created_at": time.time()})
        if not study.read_only:
            self.client.update_run(parent, status="RUNNING")
        self.parent_run_id = parent
        if not study.read_only and not self._shares_experiment:
            self._close_orphans()
        self._index_children()
        self.front_view_key = set_front_view(self.client, self.experiment_id, study.space)
        describe_study_run(self.client, self.experiment_id, parent, study.name, study.space.objectives)

    def link(self, base_url: str | None = None) -> str:
        """The study's front link (:func:`runs_link`) on ``base_url`` (default :func:`ui_url`)."""
        return runs_link(base_url or ui_url(self.uri or ""), self.experiment_id or "", self.study.space.objectives
                         if self.study else ())

    def _usable(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException:
            return False
        return run.info.lifecycle_stage == "active" and run.info.experiment_id == self.experiment_id

    def _find_parent(self, study: Study) -> str | None:
        """The study's parent run logged before without a record in the study directory (by ``ui``)."""
        where = str(study.directory.resolve()).replace("'", "\\'")
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'study' and "
                                       f"tags.`pers_search.study_dir` = '{where}'", max_results=1,
                                       order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

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
        self._runs, self._tested, self._pareto, self._noted, self._marks = {}, set(), {}, {}, {}
        for run in runs:
            number = run.data.tags.get(TRIAL_TAG)
            if number is None or not number.isdigit():
                continue
            if int(number) in self._runs:  # a second run of one trial: keep the first
                self._close_orphan(run)
                continue
            self._runs[int(number)] = run.info.run_id
            self._pareto[int(number)] = run.data.tags.get("pareto", "")
            self._marks[int(number)] = {k: run.data.tags.get(k, "") for k in MARK_TAGS}
            if any(k.startswith("test_") for k in run.data.metrics):
                self._tested.add(int(number))
        self._hv_steps = {m.step for m in self.client.get_metric_history(self.parent_run_id, "hypervolume")}
        self._fraction_steps = {m.step for m in self.client.get_metric_history(self.parent_run_id,
                                                                              "hypervolume_fraction")}

    def _close_orphans(self) -> None:
        """Runs a killed process left RUNNING (this process is the study's only writer, so none
        of them is alive): close each as KILLED; trial runs are also deleted, to be logged again."""
        runs = self.client.search_runs([self.experiment_id], filter_string="attributes.status = 'RUNNING'",
                                       max_results=50000)
        for run in runs:
            if run.info.run_id == self.parent_run_id:
                continue
            if run.data.tags.get(ROLE_TAG) == "trial":
                self._close_orphan(run)
            else:
                _terminate(self.client, run.info.run_id, "KILLED")

    def _close_orphan(self, run) -> None:
        """A trial run a killed process left half-logged, or a second run of one trial: close it as
        KILLED and delete it, so the trial has one run."""
        _terminate(self.client, run.info.run_id, "KILLED")
        self.client.set_tag(run.info.run_id, "orphan", "true")
        self.client.delete_run(run.info.run_id)

    # ----------------------------------------------------------------- logging
    def __call__(self, study: Study, trial: TrialRecord) -> None:
        """The optimise callback: log the finished trial, the front and the hypervolume, and
        (within the time budget) the parent run's summary and plots."""
        self.sync(study)
        self._live_artifacts(study)

    def _live_artifacts(self, study: Study) -> None:
        if not self._clock.due(self.artifact_budget):
            return
        started = time.monotonic()
        try:
            self._log_artifacts(study, final=False)
        except Exception as err:  # a plot must not stop the study; finish() tries again
            warnings.warn(f"MLflow: could not update the plots of {study.name} ({type(err).__name__}: {err}); "
                          "they are written again when the study ends", RuntimeWarning, stacklevel=2)
        self._clock.spent(started)

    def _final_artifacts(self, study: Study) -> None:
        """The parent run's artifacts at the end: every plot; for one study among many (:meth:`share` with
        ``many``) the summary and front always, the PNG plots within the shared budget, no interactive plot."""
        if not self.many:
            self._log_artifacts(study, final=True)
            return
        plots = self._clock.due(self.artifact_budget)
        started = time.monotonic()
        self._log_artifacts(study, final=True, plots=plots)
        if plots:
            self._clock.spent(started)

    def _log_artifacts(self, study: Study, final: bool, plots: bool = True) -> None:
        with scratch_dir(prefix="pers-search-mlflow-") as tmp:  # swept by the next write if the driver is killed
            write_study_artifacts(study, tmp, record=read_record(study.directory), interactive=final and not self.many,
                                  curves=None if final else dict(self._curves), plots=plots)
            self.client.log_artifacts(self.parent_run_id, str(tmp))
        self.artifact_writes += 1

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
        noted = latest_notes(study.trials)
        for key, value in (mlflow_tags(noted.suggest_notes) if noted else {}).items():
            if self._noted.get(key) != value:  # the latest screen, on the study's run, written when it changes
                self.client.set_tag(self.parent_run_id, key, value)
                self._noted[key] = value

    def _log_trial(self, study: Study, trial: TrialRecord) -> None:
        from mlflow.entities import Metric, Param, RunTag

        tags = {RUN_NAME_TAG: f"trial-{trial.number:03d}", PARENT_TAG: self.parent_run_id,
                TRIAL_TAG: str(trial.number), ROLE_TAG: "trial", "optimizer": study.space.optimizer.name,
                "state": trial.state.value}
        if trial.error:
            tags["error"] = trial.error[:_MAX_TAG]
        tags.update(marks_tags(trial))
        tags.update(mlflow_tags(trial.suggest_notes))
        run = self.client.create_run(self.experiment_id, start_time=_ms(trial.started_at), tags=tags)
        run_id = run.info.run_id
        try:
            stamp = _ms(trial.finished_at) or _ms(time.time())
            metrics = [Metric(k, v, stamp, 0) for k, v in trial_metrics(trial).items()]
            params = [Param(k, v[:6000]) for k, v in config_params(study.space, trial.config).items()]
            config_tag = [RunTag("config", describe(study.space, trial.config)[:_MAX_TAG])]
            for start in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limits
                self.client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                                      tags=config_tag if start == 0 else [])
            self.client.log_text(run_id, json.dumps(trial.to_json(), indent=1, default=str), "trial.json")
            adapter_dir = trial.user_attrs.get("adapter_dir")
            if self.log_adapters and adapter_dir and Path(adapter_dir).is_dir():
                self.client.log_artifacts(run_id, adapter_dir, "adapters")
            _terminate(self.client, run_id, _STATUS[trial.state], _ms(trial.finished_at))
        except BaseException:  # stopped half-way (a signal, Ctrl-C, a store error): no half-logged run is left
            self._close_orphan(run)  # RUNNING; the trial is logged whole by the next sync (stop() runs one)
            raise
        self._runs[trial.number] = run_id
        if trial.test_values:
            self._tested.add(trial.number)
        if not study.read_only:
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
        for number, run_id in self._runs.items():
            marks = front_marks(number in front, knee is not None and number == knee.number)
            if self._marks.get(number) != marks:  # the knee tag and the run's colour in MLflow's charts
                self.client.log_batch(run_id, tags=[_tag(k, v) for k, v in marks.items()])
                self._marks[number] = marks
        self.client.set_tag(self.parent_run_id, "front", ",".join(map(str, sorted(front))) or "none")
        self.client.set_tag(self.parent_run_id, "knee_trial", "none" if knee is None else str(knee.number))

    def _log_hypervolume(self, study: Study) -> None:
        from mlflow.entities import Metric

        if not reference_fixed(study):  # the reference point still moves with the quasi-random start:
            return  # the curve is logged from the step it is fixed, for every trial before it too
        finished = [t.number for t in study.finished()]
        missing = [n for n in finished if n not in self._hv_steps]
        missing_fraction = [n for n in finished if n not in self._fraction_steps]
        unknown = {n for n in finished if n not in self._curves}
        if unknown:  # one hypervolume per new trial; the plots reuse the values
            self._curves.update(hypervolume_curves(study, unknown))
        if not missing and not missing_fraction:
            return
        stamp = _ms(time.time())
        metrics = [Metric("hypervolume", self._curves[n][0], stamp, n) for n in missing]
        metrics += [Metric("hypervolume_fraction", self._curves[n][1], stamp, n) for n in missing_fraction]
        for start in range(0, len(metrics), 100):
            self.client.log_batch(self.parent_run_id, metrics=metrics[start:start + 100])
        self._hv_steps.update(missing)
        self._fraction_steps.update(missing_fraction)

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
        self._final_artifacts(study)
        from mlflow.entities import Metric

        stamp = _ms(time.time())
        counts = {"n_trials": len(study.trials), "n_completed": len(study.completed()),
                  "n_failed": sum(t.state is TrialState.FAILED for t in study.trials),
                  "front_size": len(study.pareto_trials())}
        self.client.log_batch(self.parent_run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in counts.items()],
                              tags=[_tag(k, v) for k, v in self._study_tags(study).items()])
        _terminate(self.client, self.parent_run_id, status)
        self.closed = True

    def stop(self, status: str = "KILLED") -> None:
        """A run stopped (Ctrl-C, SIGTERM): log the trials that finished and close the study's run as
        ``status``, quickly (no plots: the next ``resume`` writes them); the same for the trackers
        :meth:`share` made that are still open."""
        for other in [t for t in self._shared if not t.closed]:
            other.stop(status)
        if self.study is None or self.parent_run_id is None or self.closed:
            return
        try:
            self.sync(self.study)
        finally:
            _terminate(self.client, self.parent_run_id, status)
            self.closed = True

    def trial_run_id(self, number: int) -> str | None:
        """The MLflow run id of a logged trial, or None."""
        return self._runs.get(number)


@dataclass
class ArtifactClock:
    """When the parent run's plots were last written and what that cost (seconds), shared by the
    trackers of a per-user study (:meth:`Tracker.share`).

    With a budget ``b`` (the share of wall time plots may take), after a write that took ``c``
    seconds the next is due ``c * (1 - b) / b`` seconds later.
    """

    cost: float | None = None
    done: float = 0.0

    def due(self, budget: float) -> bool:
        """True when plots may be written now."""
        if budget <= 0:
            return False
        return self.cost is None or time.monotonic() - self.done >= self.cost * (1.0 - budget) / budget

    def spent(self, started: float) -> None:
        """A write that began at ``started`` (``time.monotonic()``) ended now."""
        self.done = time.monotonic()
        self.cost = self.done - started


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
def write_study_artifacts(study: Study, out: Path, record: Mapping[str, Any] | None = None,
                          interactive: bool = True,
                          curves: Mapping[int, tuple[float, float]] | None = None, plots: bool = True) -> list[Path]:
    """Write the parent run's artifacts into ``out``: space, summary, front table, plots.

    Args:
        study: the study.
        out: the directory to write into.
        record: the study's ``mlflow.json`` (goes into the summary).
        interactive: also write ``plots/pareto_3d.html`` (plotly inlined, 4-5 MB).
        curves: the hypervolume curves already computed (:func:`hypervolume_curves`); default:
            computed here, one hypervolume per finished trial.
        plots: write the plots (else the space, the summary and the front only).

    Returns:
        The written files.
    """

    out.mkdir(parents=True, exist_ok=True)
    (out / "pareto").mkdir(exist_ok=True)
    files = [out / "space.yaml", out / "summary.json", out / "pareto" / "front.csv", out / "pareto" / "front.json"]
    files[0].write_text(study.space.text or dump_yaml(study.space), encoding="utf-8")
    files[1].write_text(json.dumps(study_summary(study, record), indent=1, default=str), encoding="utf-8")
    rows = front_rows(study)
    files[2].write_text(rows_to_csv(rows), encoding="utf-8")
    files[3].write_text(json.dumps(rows, indent=1, default=str), encoding="utf-8")
    return files + (_write_plots(study, out, interactive, curves) if plots else [])


def _write_plots(study: Study, out: Path, interactive: bool,
                 curves: Mapping[int, tuple[float, float]] | None) -> list[Path]:
    from search import plots  # matplotlib and plotly: only when plots are written

    files: list[Path] = []
    points = plots.study_points(study)
    objectives = study.space.objectives
    if points:
        files += plots.pairwise_pngs(points, objectives, out / "plots")
        if len(objectives) >= 3:
            files.append(plots.pareto_3d_png(points, objectives, out / "plots" / "pareto_3d.png"))
        if interactive:
            files.append(plots.interactive_html(points, objectives, out / "plots" / "pareto_3d.html",
                                                title=f"Pareto front of {study.name}"))
    if interactive:  # the study's end: which parameters drove each objective (search.importance)
        files += _importance_artifacts(study, out)
    curves = dict(curves) if curves is not None else hypervolume_curves(study)
    if curves:
        steps = sorted(curves)
        files.append(plots.hypervolume_png(steps, [curves[n][1] for n in steps], out / "plots" / "hypervolume.png",
                                           raw=[curves[n][0] for n in steps]))
    return files


def _importance_artifacts(study: Study, out: Path) -> list[Path]:
    """``importance.json`` and ``plots/importance.png`` once the study has enough trials (else none)."""
    from search import plots  # matplotlib: only when artifacts are written

    if len(usable(study)) < MIN_TRIALS:
        return []
    found = compute(study)
    (out / "importance.json").write_text(json.dumps(found.to_json(), indent=1), encoding="utf-8")
    (out / "plots").mkdir(exist_ok=True)
    png = plots.importance_png(found.groups, out / "plots" / "importance.png",
                               title=f"parameter importance in {study.name} ({found.trials} trials)")
    return [out / "importance.json", png]
