"""Links into the MLflow UI and the saved views behind them.

A study's experiment carries two *shared views* (:mod:`search.tracking.views` builds them): the
front's table and the chart view. MLflow 3 reads a shared view from an experiment tag
``mlflow.sharedViewState.<key>`` (its JSON state) when the page is opened with
``?viewStateShareKey=<key>``; that tag is MLflow UI internals, written by one function,
:func:`save_view`. MLflow 3.17's UI also follows a global "GenAI | Model training" switch: the query
parameter ``workflowType`` when present, else the browser's last choice, else GenAI; no tag of a run
or an experiment decides it. Every link printed here goes through :func:`training_page`, which
adds ``workflowType=machine_learning``. See docs/notes/mlflow.md.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any, Iterable, Mapping

from search.tracking.store import RECORD_FILE, TrackingError, open_client, read_record
from search.tracking.views import charts_view_key, front_view_key, study_views

DEFAULT_UI_URL = "http://127.0.0.1:5000"
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # + key: an experiment tag holding a shared view's JSON state
SHARED_VIEW_PARAM = "viewStateShareKey"  # the query parameter that opens a shared view
WORKFLOW_PARAM = "workflowType"
WORKFLOW_TRAINING = "machine_learning"
VIEW_MODE_PARAM = "compareRunsMode"  # MLflow's query parameter: TABLE (the runs table) or CHART
CHART_MODE = "CHART"
DESCRIPTION_TAG = "mlflow.note.content"  # the markdown MLflow shows as a run's or an experiment's description
DESCRIPTION_MARK = "**pers-search**"  # how a description this project wrote begins; others are left alone


# --------------------------------------------------------------------------- MLflow UI internals
def training_page(route: str, query: Mapping[str, str] | None = None) -> str:
    """The UI ``route`` (``#/experiments/...``) with ``query``, opened in MLflow's Model-training pages
    (``workflowType=machine_learning`` last), not its GenAI overview."""
    return f"{route}?{urllib.parse.urlencode({**(query or {}), WORKFLOW_PARAM: WORKFLOW_TRAINING})}"


def save_view(client, experiment_id: str, key: str, state: Mapping[str, Any], tags: Mapping[str, str]) -> bool:
    """Write a shared view (tag ``mlflow.sharedViewState.<key>``, compact JSON) on an experiment, unless
    ``tags`` (the experiment's) already hold it.

    Returns:
        True when the tag was written.
    """
    text = json.dumps(state, separators=(",", ":"))
    if tags.get(SHARED_VIEW_TAG + key) == text:
        return False
    client.set_experiment_tag(experiment_id, SHARED_VIEW_TAG + key, text)
    return True


# --------------------------------------------------------------------------- links
def runs_page(experiment_id: str, view_key: str, charts: bool = False) -> str:
    """The UI route (``#/experiments/<id>/runs?...``) of a shared view, in the Model-training pages;
    with ``charts`` it opens on the chart view."""
    query = {SHARED_VIEW_PARAM: view_key, **({VIEW_MODE_PARAM: CHART_MODE} if charts else {})}
    return training_page(f"#/experiments/{experiment_id}/runs", query)


def run_page(experiment_id: str, run_id: str) -> str:
    """The UI route of one run in the Model-training pages (MLflow's own run links leave the switch as
    the browser has it, GenAI in a new browser)."""
    return training_page(f"#/experiments/{experiment_id}/runs/{run_id}")


def experiments_link(base_url: str) -> str:
    """The link to the experiments list of the UI at ``base_url``, in the Model-training pages."""
    return f"{base_url.rstrip('/')}/{training_page('#/experiments')}"


def runs_link(base_url: str, experiment_id: str, objectives: Iterable[str] | Mapping[str, str]) -> str:
    """The link to a study's runs table showing its front.

    ``<base>/#/experiments/<id>/runs?viewStateShareKey=pers-search-front-<first objective>
    &workflowType=machine_learning``: the view (set on the experiment by :func:`set_front_view`) filters
    the runs to ``tags.pareto = "true"``, sorts them by the first objective and shows the
    objectives and parameters as columns; ``workflowType`` opens MLflow's model-training pages
    rather than its GenAI overview. (Filter and sort cannot also be in the link: MLflow ignores a
    shared view when the query sets either.)

    Args:
        base_url: the MLflow UI, e.g. ``http://127.0.0.1:5000`` (a trailing ``/`` is fine).
        experiment_id: the study's experiment.
        objectives: the study's objectives (names, in order; a mapping's keys).
    """
    return f"{base_url.rstrip('/')}/{runs_page(experiment_id, front_view_key(objectives))}"


def ui_url(tracking_uri: str) -> str:
    """Where the MLflow UI of a store is: the server itself for an HTTP store, else
    :data:`DEFAULT_UI_URL` (what ``pers-search ui`` starts)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return DEFAULT_UI_URL


def study_link(study) -> str | None:
    """The front link of a study logged to MLflow (from its ``mlflow.json``), or None if it never was.
    The link points at :func:`ui_url` of the recorded store.

    Args:
        study: a loaded :class:`search.study.study.Study`.
    """
    record = read_record(study.directory)
    if not record.get("experiment_id"):
        return None
    return runs_link(ui_url(record.get("tracking_uri", "")), record["experiment_id"], study.space.objectives)


# --------------------------------------------------------------------------- descriptions
def views_markdown(experiment_id: str, front_key: str, charts_key: str) -> str:
    """Markdown links to the front's table and the charts."""
    return (f"[Pareto front (table)]({runs_page(experiment_id, front_key)}) · "
            f"[charts: objectives, parameters, hypervolume]({runs_page(experiment_id, charts_key, charts=True)})")


def experiment_description(experiment_id: str, front_key: str, charts_key: str) -> str:
    """The experiment's description: what it holds and the links to its views."""
    return (f"{DESCRIPTION_MARK} studies: one run per study, its trials nested under it. "
            f"{views_markdown(experiment_id, front_key, charts_key)}")


def study_run_description(study: str, experiment_id: str, run_id: str, front_key: str, charts_key: str) -> str:
    """The study run's description: links to itself and to the views, all in the Model-training pages."""
    return (f"{DESCRIPTION_MARK} study `{study}`: [this run in the Model-training view]({run_page(experiment_id, run_id)})"
            f" · {views_markdown(experiment_id, front_key, charts_key)}")


def owned_description(text: str | None) -> bool:
    """True when a description is absent or was written by this project (so it may be rewritten)."""
    return not text or text.startswith(DESCRIPTION_MARK)


# --------------------------------------------------------------------------- writing them
def set_front_view(client, experiment_id: str, space) -> str:
    """Write the front view and the chart view (:func:`search.tracking.views.study_views`) of a study's
    space on its experiment, and the experiment's description (no write when unchanged).

    Returns:
        The front view's key.
    """
    tags = client.get_experiment(experiment_id).tags
    for key, view in study_views(space).items():
        save_view(client, experiment_id, key, view, tags)
    key = front_view_key(space.objectives)
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


def ensure_front_view(uri: str, study, experiment_id: str) -> None:
    """Make sure the study's experiment in store ``uri`` carries its views (studies logged before they existed).

    Raises:
        TrackingError: the experiment its ``mlflow.json`` names is not in the store.
    """
    from mlflow.exceptions import MlflowException

    try:
        set_front_view(open_client(uri), experiment_id, study.space)
    except MlflowException as err:
        raise TrackingError(f"{study.directory / RECORD_FILE}: experiment_id {experiment_id!r} is not in {uri} "
                            f"({err.message}); delete the file to log the study again, or pass --tracking-uri") from err
