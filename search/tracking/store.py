"""The tracking store: which one (URI), whether it can be used, how a new one is made, and the record
a study keeps of where it was logged.

The default store is ``sqlite:///mlruns/mlflow.db`` (relative to the working directory) with
artifacts in ``mlruns/artifacts``; ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` override it. A
new SQLite store is created under a lock (``mlflow.db.lock`` beside it, :func:`open_client`), so
studies started at once share it safely; ``file://`` stores, which MLflow 3 refuses, are told
apart in one line (:func:`check_reachable`). ``<study dir>/mlflow.json`` (:func:`read_record`,
:func:`write_record`) records the tracking URI, the experiment and the parent run of a study.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from search.errors import SearchError

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
RECORD_FILE = "mlflow.json"
ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"  # MLflow 3's opt-in to its file store (maintenance mode)
STORE_LOCK_SUFFIX = ".lock"  # <db>.lock beside a SQLite store: held while the store is created or checked
STORE_LOCK_TIMEOUT_S = 600.0
STORE_SETUP_LOGGER = "mlflow.store.db.utils"  # logs each new store's table creation at INFO
REACH_TIMEOUT_S = 5.0  # how long check_reachable waits for an HTTP tracking server to answer


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


def study_store(record: Mapping[str, Any], tracking_uri: str | None = None) -> str:
    """The store to show a study from: ``tracking_uri`` when given, else the one its ``mlflow.json``
    (``record``) names, else :func:`resolve_tracking_uri`'s default."""
    if tracking_uri or not record.get("tracking_uri"):
        return resolve_tracking_uri(tracking_uri)
    return record["tracking_uri"]


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


def artifact_root(uri: str) -> Path | None:
    """Where a local SQLite store keeps artifacts (``artifacts/`` beside the database), else None."""
    db = sqlite_path(uri)
    return None if db is None else db.parent / "artifacts"


def check_reachable(uri: str) -> None:
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
        response = requests.get(url, timeout=REACH_TIMEOUT_S)
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
def store_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` beside a SQLite store for the block (other stores: no lock).

    MLflow creates and migrates a new SQLite store the first time a client opens it, without a
    lock of its own; two processes doing it at once break each other's migration
    (``_alembic_tmp_experiments already exists``). Under this lock one process makes the store
    and the next finds it made.

    Raises:
        TrackingError: another process held the lock for :data:`STORE_LOCK_TIMEOUT_S` seconds.
    """
    db = sqlite_path(uri)
    if db is None:
        yield
        return
    from filelock import FileLock, Timeout  # light, but only a SQLite store needs it

    path = db.with_name(db.name + STORE_LOCK_SUFFIX)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=STORE_LOCK_TIMEOUT_S)
    except Timeout as err:
        raise TrackingError(f"tracking store {uri}: another process has held {path} for {STORE_LOCK_TIMEOUT_S:.0f} s "
                            f"while it creates or upgrades the store; wait for it to end (`fuser {path}` names it), "
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

    with store_lock(uri), _quiet(STORE_SETUP_LOGGER):  # not MLflow's "Creating initial MLflow database tables..."
        try:
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # builds the store: tables, migrations,
            client.search_experiments(max_results=1)  # the default experiment (MLflow 3.17 in the constructor)
        except (MlflowException, SQLAlchemyError) as err:
            detail = str(getattr(err, "message", None) or err).splitlines()[0][:300]
            raise TrackingError(f"tracking store {uri}: cannot open it ({type(err).__name__}: {detail}); "
                                "pass another --tracking-uri, or --no-mlflow") from err
    return client


@contextmanager
def _quiet(name: str):
    """The INFO lines of logger ``name`` left out for the block (its warnings and errors still show)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


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
