"""Running a study from the command line: one study for the cohort, or one per user.

Both show progress (:class:`search.commands.progress.StudyProgress`), log to MLflow when asked, evaluate
the front on the test queries at the end and print it. The banner says where the test queries
come from (``data.test_split``); a study without any ends with its front's validation values and
one line that says why.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from contextlib import nullcontext
from pathlib import Path

from runners.data.splits import SplitCounts
from runners.session import session_for
from runners.spec import TrialSetup
from search.api import optimize
from search.commands.common import DEFAULT_STUDY_DIR, executor_from_args
from search.commands.tables import COHORT_ROWS, front_table, print_cohort, status_command
from search.commands.console import table_console
from search.optimizers import get_optimizer
from search.execution.per_user import TaskHooks, optimize_tasks
from search.study.cohort_file import user_study_name
from search.commands.progress import CohortProgress, StudyProgress
from search.study.setup import check_reported, user_setup
from search.space import Space
from search.study.study import Study
from search.results.importance import MIN_TRIALS
from search.tracking.cohort import log_cohort
from search.tracking.links import runs_link, ui_url
from search.tracking.tracker import Tracker
from search.execution.trial_objective import TrialObjective

ADAPTERS = "adapters"
# Per-user studies of up to this many users get every plot in each user's MLflow run; larger cohorts
# get the summary and front of each, PNG plots within the artifact budget and no interactive 3-D plot
# (4-5 MB a user: 5 GB for a thousand users).
MANY_USERS = 20


@dataclasses.dataclass
class StudyRun:
    """One ``run``/``resume``: what to search, where it is stored and how to report it."""

    console: object
    space: Space
    setup: TrialSetup
    name: str
    args: argparse.Namespace
    keep_adapters: bool
    tracker: Tracker | None

    @property
    def study_dir(self) -> str:
        return self.args.study_dir

    def objective(self, setup: TrialSetup, adapters: Path | None) -> TrialObjective:
        """The trial objective of a setup (early stopping's reporting when the space asks for it)."""
        stopping = self.space.early_stopping
        return TrialObjective(setup, adapters, monitor=stopping.monitor() if stopping.enabled else None,
                              test=not self.args.no_test)

    def banner(self, what: str) -> None:
        o = self.space.optimizer
        executor = executor_from_args(self.args, self.space)
        executor.close()
        self.console.print(f"[bold]study[/] {self.name}: {what}, {o.name}, {o.trials} trials ({min(o.init_trials, o.trials)} "
                           f"quasi-random), model {self.setup.model.name}, {executor.workers} worker"
                           f"{'s' if executor.workers > 1 else ''}" +
                           (", early stopping" if self.space.early_stopping.enabled else ""))

    def finish(self, study: Study, objective: TrialObjective) -> None:
        """Test-set evaluation of the front, MLflow's last logging, the front table."""
        if not self.args.no_test:
            evaluate_front_on_test(self.console, study, objective)
        if self.tracker is not None:
            with self.console.status("logging the front, plots and artifacts to MLflow"):
                self.tracker.finish(study)
        table_console().print(front_table(study))

    def print_next_steps(self, completed: int, per_user: bool = False) -> None:
        """The commands to go on with, then the link to the study's front in MLflow (when it was logged)."""
        link = self.mlflow_link()
        for line in next_steps(self.name, self.study_dir, completed, per_user, logged=link is not None):
            self.console.print(line, highlight=False, soft_wrap=True)
        if link is None:
            return
        uri = (self.tracker.uri or "").rstrip("/")
        served = ui_url(uri) == uri  # an MLflow server: the link opens as it is
        where = "" if served else f" (start the UI first: {ui_command(self.name, self.study_dir, per_user)})"
        self.console.print(f"the front in MLflow{where}:", highlight=False, soft_wrap=True)
        self.console.print(link, highlight=False, soft_wrap=True)

    def mlflow_link(self) -> str | None:
        """The link to the study's front in the MLflow UI (the one ``ui`` prints), or None without MLflow."""
        if self.tracker is None or not self.tracker.experiment_id:
            return None
        return runs_link(ui_url(self.tracker.uri or ""), self.tracker.experiment_id, self.space.objectives)


def study_dir_option(study_dir: str) -> str:
    """`` --study-dir DIR`` for a command line, or '' for the default directory."""
    return "" if Path(study_dir) == Path(DEFAULT_STUDY_DIR) else f" --study-dir {study_dir}"


def ui_command(name: str, study_dir: str, per_user: bool = False) -> str:
    """The ``ui`` command that serves a study's store (a per-user study: the whole default store)."""
    return "pers-search ui" if per_user else f"pers-search ui {name}{study_dir_option(study_dir)}"


def next_steps(name: str, study_dir: str, completed: int, per_user: bool = False, logged: bool = True) -> list[str]:
    """The lines a finished ``run`` ends with: the commands that read, show and serve what it found.

    Args:
        name: the study's name.
        study_dir: its ``--study-dir`` (named in the commands unless it is the default).
        completed: its completed trials (the fewest of any user in a per-user study). ``importance``
            needs :data:`search.results.importance.MIN_TRIALS`; below that the line says how to get there.
        per_user: a per-user study (one front per user, which ``pareto`` pages through).
        logged: the study was logged to MLflow (its link follows these lines).
    """
    where = study_dir_option(study_dir)
    if completed >= MIN_TRIALS:
        importance = (f"pers-search importance {name}{where}", "which parameters drive each objective")
    else:
        importance = (f"pers-search resume {name} --trials {MIN_TRIALS}{where}",
                      f"{MIN_TRIALS} trials; then `pers-search importance {name}` ranks the parameters")
    steps = [
        (f"pers-search pareto {name}{where}", "each user's front, a page at a time (--user U, --all)") if per_user else
        (f"pers-search pareto {name}{where}", "the front again (--json, --csv)"),
        importance,
        (ui_command(name, study_dir, per_user), "the MLflow UI" + (", for the link below" if logged else "")),
        (f"pers-search export {name} --out bundles/{name}{where}",
         "a serving bundle of " + ("each user's knee" if per_user else "the front's knee")),
    ]
    width = max(len(command) for command, _ in steps)
    return ["next:"] + [f"  {command:<{width}}  # {what}" for command, what in steps]


def run_cohort(run: StudyRun) -> int:
    """One study whose every trial serves the whole cohort."""
    check_reported(run.space, run.setup)
    adapters = Path(run.study_dir) / run.name / ADAPTERS if run.keep_adapters else None
    objective = run.objective(run.setup, adapters)
    splits = session_for(run.setup).splits
    run.banner(f"one configuration for {len(splits)} users")
    for line in split_lines(SplitCounts.of(splits), run.setup):
        run.console.print(line, highlight=False, soft_wrap=True)
    with StudyProgress(run.console, run.space.optimizer.trials) as progress:
        callbacks = [progress] + ([run.tracker] if run.tracker is not None else [])
        study = optimize(run.space, objective, study_name=run.name, study_dir=run.study_dir,
                         known_objectives=objective.known_objectives(), callbacks=callbacks,
                         executor=executor_from_args(run.args, run.space))
    run.finish(study, objective)
    run.console.print(f"study stored in {study.directory}")
    run.print_next_steps(len(study.completed()))
    return 0


class _UserHooks(TaskHooks):
    """Per user: its progress (lines and failures naming it, the cohort's panel), its own MLflow tracker on
    the run's connection, its front on its test queries and one line when it is done."""

    def __init__(self, run: StudyRun, objectives: dict[str, TrialObjective], progress: CohortProgress) -> None:
        self.run, self.objectives, self.progress = run, objectives, progress
        self.trackers: dict[str, Tracker] = {}

    def start(self, task: str, index: int):
        callbacks = [self.progress.user(task)]
        if self.run.tracker is not None:
            self.trackers[task] = self.run.tracker.share(many=len(self.objectives) > MANY_USERS)
            callbacks.append(self.trackers[task])
        return callbacks

    def end(self, task: str, study: Study) -> None:
        if not self.run.args.no_test:
            evaluate_front_on_test(self.run.console, study, self.objectives[task], say_no_test=False,
                                   spinner=False)
        tracker = self.trackers.pop(task, None)
        if tracker is not None:
            tracker.finish(study)
        self.progress.user_done(task, study)


def warm_start_note(space: Space) -> str:
    """What a per-user search's banner says of its warm start ('' when off)."""
    warm = space.warm_start
    if not warm.enabled:
        return ""
    points = ("the knee of their common front first" if warm.max_points == 1 else
              f"up to {warm.max_points} points of their common front first")
    note = ", warm-started from the users before: " + (points if warm.max_points else "the usual quasi-random start")
    if warm.max_observations and get_optimizer(space.optimizer.name).learns_from_prior:
        note += f", all their trials in the {space.optimizer.name} model, summarised in up to {warm.max_observations} rows"
    return note


def run_per_user(run: StudyRun) -> int:
    """One study per user of the cohort (MiLP's setting): with ``--workers W``, W users side by side."""
    check_reported(run.space, run.setup)
    users = [s.user.user_id for s in session_for(run.setup).splits]
    objectives = {u: run.objective(user_setup(run.setup, u),
                                   Path(run.study_dir) / user_study_name(run.name, u) / ADAPTERS
                                   if run.keep_adapters else None) for u in users}
    run.banner(f"one study per user ({len(users)} users" + warm_start_note(run.space) + ")")
    own = SplitCounts.of([session_for(o.setup).splits[0] for o in objectives.values()])
    for line in split_lines(own, run.setup, label="per user", say_no_test=not run.args.no_test):
        run.console.print(line, highlight=False, soft_wrap=True)
    if run.tracker is not None:
        run.tracker.close_orphans()  # before any user's run is live: runs a killed driver left RUNNING
    with CohortProgress(run.console, users, run.space.optimizer.trials) as progress:
        cohort = optimize_tasks(run.space, objectives, study_name=run.name, study_dir=run.study_dir,
                                known_objectives=objectives[users[0]].known_objectives(),
                                hooks=_UserHooks(run, objectives, progress),
                                executor=lambda: executor_from_args(run.args, run.space))
    if run.tracker is not None:
        log_cohort(run.tracker, cohort)
    print_cohort(cohort, rows=COHORT_ROWS, command=status_command(run.name, run.study_dir))
    run.console.print(f"per-user study stored in {cohort.directory}")
    run.print_next_steps(min((len(s.completed()) for s in cohort.studies.values()), default=0), per_user=True)
    return 0


def split_lines(counts: SplitCounts, setup: TrialSetup, label: str | None = None,
                say_no_test: bool = False) -> list[str]:
    """The banner's lines on the data split: where the test queries come from and how many each side has,
    and a line for each empty part (users without test queries, no held-out history; no test queries at
    all with ``say_no_test``, else the study says it when its front would be tested)."""
    lines = [f"test split: {counts.describe(label)}"]
    if not counts.test_queries:
        lines += [no_test_line(counts, label)] if say_no_test else []
    elif counts.users_without_test:
        lines.append(f"{counts.users_without_test} of {counts.users} users have a single query and no test query "
                     "of their own; the test figures are over the other users")
    if not counts.heldout_items:
        lines.append(f"no held-out history: data.heldout_fraction={setup.data.heldout_fraction} of each user's "
                     "history rounds down to no item, so trials report no heldout_loss")
    return lines


def no_test_line(counts: SplitCounts, label: str | None = None,
                 then: str = "the front is shown with validation values only") -> str:
    """The one line for a split without test queries: why, and ``then`` (what happens instead)."""
    why = ("each user has a single query, its own study's validation query" if label == "per user"
           else counts.no_test_reason())
    return f"no test queries: {why}; {then}"


def seen_users(study: Study) -> set[str]:
    """The users the study's finished trials were scored on (their ``users`` attr)."""
    return {user for t in study.finished() for user in t.user_attrs.get("users", {})}


def evaluate_front_on_test(console, study: Study, objective: TrialObjective, say_no_test: bool = True,
                           spinner: bool = True) -> None:
    """Show the front's configurations on the test queries (those not shown yet).

    A trial of this study answered its test queries with its own trained memory (hidden from the
    optimiser until now); a trial from before that, or run with ``--no-test``, or one whose test
    queries belong to held-out test users (a ``users`` split: the search never trains them) is run
    again on the test split, training included, with a line per trial (a spinner shows nothing in
    a log file). A split without test queries gets one line (unless ``say_no_test`` is False), and so
    does a study whose trials were scored on users the split now holds out (a study run before
    ``data.test_split``): their test values would not be a test. ``spinner=False`` shows no spinner,
    for a caller whose live panel is on the console.
    """
    splits = session_for(objective.setup).splits
    counts = SplitCounts.of(splits)
    if not counts.test_queries:
        if say_no_test:
            console.print(no_test_line(counts), highlight=False, soft_wrap=True)
        return
    seen = sorted({s.user.user_id for s in splits if not s.val} & seen_users(study))
    if seen:
        console.print(f"no test values: trials of this study were scored on users now held out for the test "
                      f"({', '.join(seen[:5])}{' ...' if len(seen) > 5 else ''}; the study ran with another "
                      "data.test_split); the front is shown with validation values only", highlight=False,
                      soft_wrap=True)
        return
    todo = []
    for trial in (t for t in study.pareto_trials() if not t.test_values):
        kept = objective.measured_test(trial)
        if kept:
            study.set_test_values(trial.number, kept)
        else:
            todo.append(trial)
    if todo:
        why = (f"each trains the memory of the {counts.test_users} held-out test user"
               f"{'s' if counts.test_users > 1 else ''}, whom the search never saw" if counts.kind == "users"
               else "each trains again: it ran without its test answers")
        console.print(f"evaluating {len(todo)} front trial{'s' if len(todo) > 1 else ''} on the test queries ({why})")
    for index, trial in enumerate(todo, 1):
        started = time.perf_counter()
        busy = console.status(f"evaluating front trial {trial.number} on the test queries") if spinner else nullcontext()
        with busy:
            record = study.set_test_values(trial.number, objective.test_metrics(trial.config))
        shown = "  ".join(f"{m}={record.test_values.get(m, float('nan')):.4g}"
                          for m in study.space.objectives)
        console.print(f"[{index}/{len(todo)}] front trial {trial.number} on the test queries in "
                      f"{time.perf_counter() - started:.0f} s: {shown}")
