"""MLflow tracking of a study: one experiment per study, a parent run, one nested run per trial.

Layout in MLflow (see docs/notes/mlflow.md):

- experiment ``<study name>``, tagged so that MLflow opens it on the runs table with the front's
  trials, their objectives and key parameters as columns (:func:`search.tracking.links.runs_link`,
  :func:`search.tracking.views.front_view`);
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

The store (URI, reachability, the record file, the store lock) is :mod:`search.tracking.store`; the
links and saved views :mod:`search.tracking.links`; the parent run's files
:mod:`search.tracking.artifacts`. MLflow's usage telemetry is switched off before MLflow is imported
(:mod:`search.execution.usage_reporting`).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Mapping

from runners.files import safe_name
from runners.scratch import scratch_dir
from search.results.config_view import config_params, describe
from search.results.report import hypervolume_curves, reference_fixed
from search.numbers import finite
from search.study.study import Study, TrialRecord, TrialState
from search.results.suggest_notes import latest_notes, mlflow_tags
from search.tracking.artifacts import ArtifactClock, write_study_artifacts
from search.tracking.links import describe_study_run, runs_link, set_front_view, ui_url
from search.tracking.run_content import marks_tags, study_tags, trial_metrics
from search.tracking.store import (
    TrackingError,
    artifact_root,
    check_reachable,
    open_client,
    read_record,
    resolve_tracking_uri,
    write_record,
)
from search.execution.usage_reporting import usage_reporting_off
from search.tracking.views import MARK_TAGS, front_marks

RUN_ID_ATTR = "mlflow_run_id"
TRIAL_TAG = "pers_search.trial"
ROLE_TAG = "pers_search.role"
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_STATUS = {TrialState.COMPLETED: "FINISHED", TrialState.FAILED: "FAILED", TrialState.STOPPED: "KILLED",
           TrialState.PRUNED: "KILLED"}  # MLflow has no pruned status; the run keeps a state=pruned tag
# MLflow 3 up to about 3.5 chose an experiment's view from this tag; 3.17's UI ignores it (see
# :func:`search.tracking.links.runs_link`), but it still tells other MLflow clients what the experiment holds.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
_QUIET = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
_MAX_TAG = 5000


# --------------------------------------------------------------------------- params and metrics
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
        if parent is None or not self.is_usable(parent):
            parent = self._find_parent(study) or self._create_parent(study)
            if not study.read_only:  # a reader (ui) logs to MLflow but writes nothing in the study directory
                write_record(study.directory, {"tracking_uri": self.uri, "experiment_id": self.experiment_id,
                                                "experiment_name": study.name, "parent_run_id": parent,
                                                "created_at": time.time()})
        if not study.read_only:
            self.reopen(parent)
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

    def is_usable(self, run_id: str) -> bool:
        """True when the run exists, is not deleted, and belongs to this tracker's experiment."""
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
        return self.create_run({RUN_NAME_TAG: study.name, ROLE_TAG: "study", **study_tags(study)},
                               start_time=_ms(study.created_at))

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
                self.end_run(run.info.run_id, "KILLED")

    def _close_orphan(self, run) -> None:
        """A trial run a killed process left half-logged, or a second run of one trial: close it as
        KILLED and delete it, so the trial has one run."""
        self.end_run(run.info.run_id, "KILLED")
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
        from mlflow.entities import Metric, Param

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
            config_tag = [_tag("config", describe(study.space, trial.config))]
            for start in range(0, max(len(params), len(metrics), 1), 100):  # MLflow's batch limits
                self.client.log_batch(run_id, metrics=metrics[start:start + 100], params=params[start:start + 100],
                                      tags=config_tag if start == 0 else [])
            self.client.log_text(run_id, json.dumps(trial.to_json(), indent=1, default=str), "trial.json")
            adapter_dir = trial.user_attrs.get("adapter_dir")
            if self.log_adapters and adapter_dir and Path(adapter_dir).is_dir():
                self.client.log_artifacts(run_id, adapter_dir, "adapters")
            self.end_run(run_id, _STATUS[trial.state], _ms(trial.finished_at))
        except BaseException:  # stopped half-way (a signal, Ctrl-C, a store error): no half-logged run is left
            self._close_orphan(run)  # RUNNING; the trial is logged whole by the next sync (stop() runs one)
            raise
        self._runs[trial.number] = run_id
        if trial.test_values:
            self._tested.add(trial.number)
        if not study.read_only:
            study.set_user_attr(trial.number, RUN_ID_ATTR, run_id)

    def _log_test(self, trial: TrialRecord) -> None:
        run_id = self._runs[trial.number]
        self.log_values(run_id, metrics={f"test_{k}": v for k, v in trial.test_values.items() if finite(v)})
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
                self.log_values(run_id, tags=marks)
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
        counts = {"n_trials": len(study.trials), "n_completed": len(study.completed()),
                  "n_failed": sum(t.state is TrialState.FAILED for t in study.trials),
                  "front_size": len(study.pareto_trials())}
        self.log_values(self.parent_run_id, metrics=counts, tags=study_tags(study))
        self.end_run(self.parent_run_id, status)
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
            self.end_run(self.parent_run_id, status)
            self.closed = True

    # ----------------------------------------------------------------- runs beside the study's (cohort, registry)
    def create_run(self, tags: Mapping[str, str], start_time: int | None = None) -> str:
        """Create a run in the experiment with ``tags`` (``start_time`` in ms, default now); return its id."""
        return self.client.create_run(self.experiment_id, start_time=start_time, tags=dict(tags)).info.run_id

    def reopen(self, run_id: str) -> None:
        """Mark a run RUNNING again (a resumed study's or cohort's run, ended by :meth:`end_run`)."""
        self.client.update_run(run_id, status="RUNNING")

    def find_run(self, role: str) -> str | None:
        """The first-started run of the experiment tagged ``pers_search.role=<role>``, or None."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = '{role}'",
                                       max_results=1, order_by=["attributes.start_time ASC"])
        return runs[0].info.run_id if runs else None

    def log_values(self, run_id: str, metrics: Mapping[str, float] | None = None,
                   tags: Mapping[str, str] | None = None) -> None:
        """Log metrics (step 0, stamped now) and tags (cut to MLflow's length) on a run, in one batch."""
        from mlflow.entities import Metric

        stamp = _ms(time.time())
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), stamp, 0) for k, v in (metrics or {}).items()],
                              tags=[_tag(k, v) for k, v in (tags or {}).items()])

    def log_files(self, run_id: str, directory: str | Path, artifact_path: str | None = None) -> None:
        """Log every file under ``directory`` as artifacts of a run (under ``artifact_path``)."""
        self.client.log_artifacts(run_id, str(directory), artifact_path)

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        """Set one tag on a run."""
        self.client.set_tag(run_id, key, value)

    def artifact_uri(self, run_id: str) -> str:
        """Where a run's artifacts are kept (its ``artifact_uri``)."""
        return self.client.get_run(run_id).info.artifact_uri

    def end_run(self, run_id: str, status: str, end_time: int | None = None) -> None:
        """End a run as ``status`` (FINISHED, FAILED, KILLED): every run this package ends goes through here,
        so MLflow prints no "View run at" URL on stdout for any of them."""
        old = os.environ.get(_QUIET)
        os.environ[_QUIET] = "true"
        try:
            self.client.set_terminated(run_id, status, end_time=end_time)
        finally:
            if old is None:
                os.environ.pop(_QUIET, None)
            else:
                os.environ[_QUIET] = old

    def trial_run_id(self, number: int) -> str | None:
        """The MLflow run id of a logged trial, or None."""
        return self._runs.get(number)


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value[:_MAX_TAG])


def log_read_only(study: Study, uri: str) -> dict[str, str]:
    """Log a whole study to store ``uri`` (no plots while logging; every plot at the end), writing nothing in a
    read-only study's directory (``ui`` of a study never logged there).

    Returns:
        What its ``mlflow.json`` would hold: ``tracking_uri``, ``experiment_id``, ``parent_run_id``.
    """
    tracker = Tracker(uri, artifact_budget=0.0)
    tracker.connect(study.name, study.directory.parent)
    tracker.finish(study)
    return {"tracking_uri": uri, "experiment_id": tracker.experiment_id, "parent_run_id": tracker.parent_run_id}
