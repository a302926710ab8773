"""What a running study shows: a live panel on a terminal, one line per finished trial elsewhere.

On a terminal the panel shows trials finished of N, every trial in flight (slot, trial, elapsed
time, configuration), the hypervolume, the best value per objective and the last trial. When the
output goes to a file (nohup, CI, a scheduler) there is no panel: each finished trial prints one
line with its number, i/N, state, seconds, objectives (``value ± se``), the hypervolume and the
configuration, so a log shows progress as it happens; so does a terminal rich treats as dumb
(``TERM=dumb``), which cannot redraw a panel. A per-user study (:class:`CohortProgress`)
has one panel for the cohort, naming the user of each trial in flight, and its lines start with
the user (``u17 [3/6] trial 3 completed ...``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from rich.live import Live
from rich.table import Table

from search.results.config_view import describe
from search.commands.console import fmt_metric
from search.results.report import normalized_hypervolume
from search.study.study import Study, TrialRecord, TrialState
from search.results.suggest_notes import describe_notes, suggested_line


class _LivePanel:
    """A progress display that may hold a rich ``Live`` panel (``self.live``, None without one): entering
    starts it, leaving stops it and ends its last line."""

    console: Any
    live: Live | None

    def __enter__(self):
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.console.print()  # the panel's last line must not run into what follows


class StudyProgress(_LivePanel):
    """A study callback (see :func:`search.api.optimize`) that shows progress.

    Args:
        console: a rich console (stderr); a terminal gets the live panel, anything else lines.
        total: the study's trial count.
        label: what the panel and each line start with (``u17`` in a per-user study).
        panel: show this study's own live panel on a terminal (a per-user study's users share the
            cohort's panel, :class:`CohortProgress`, and print only failures and stops there).
    """

    def __init__(self, console, total: int, label: str = "", panel: bool = True) -> None:
        self.console = console
        self.total = total
        self.label = label
        self.lines = not live_panel(console)  # one line per finished trial (a log, a dumb terminal), else the panel
        self.study: Study | None = None
        self.last: TrialRecord | None = None
        self.running: dict[int, tuple[int, float, dict]] = {}  # trial -> (slot, started, config)
        self.marked: dict[int, tuple[str, ...]] = {}  # trial in flight -> its marks (a warm-start point)
        self.hypervolume = math.nan  # the HV fraction, computed once per finished trial (the panel redraws every second)
        self.notes: list[str] = []  # the latest suggestion notes printed (search.results.suggest_notes)
        self.started = time.perf_counter()
        self.live = Live(self._panel(), console=console, refresh_per_second=1, transient=False,
                         get_renderable=self._panel) if live_panel(console) and panel else None

    # ----------------------------------------------------------------- callbacks
    def trial_started(self, study: Study, trial: TrialRecord, slot: int) -> None:
        """A trial was submitted to a worker; what the model found when it suggested it is printed when new."""
        self.study = study
        self.running[trial.number] = (slot, time.perf_counter(), trial.config)
        if trial.marks:
            self.marked[trial.number] = trial.marks
        notes = describe_notes(trial.suggest_notes, study.space)
        if notes and notes != self.notes:
            self.notes = notes
            for sentence in notes:
                self.console.print(suggested_line(trial.number, sentence, self.label), highlight=False, soft_wrap=True)

    def __call__(self, study: Study, trial: TrialRecord) -> None:
        """A trial finished: record it, print its line (no terminal) or its failure."""
        self.study, self.last = study, trial
        self.running.pop(trial.number, None)
        self.marked.pop(trial.number, None)
        self.hypervolume = _safe_hv(study)
        who = f"{self.label} " if self.label else ""
        if self.lines:
            self.console.print(self.line(study, trial), highlight=False, soft_wrap=True)
        elif trial.state is TrialState.FAILED:
            self.console.print(f"[red]{who}trial {trial.number} failed:[/] {trial.error}", highlight=False)
        elif trial.state is TrialState.PRUNED:
            marks = _marks(trial, "stopped early")
            self.console.print(f"[yellow]{who}trial {trial.number}{marks} stopped early:[/] "
                               f"{trial.user_attrs['pruned']['reason']}", highlight=False)

    # ----------------------------------------------------------------- what is shown
    def line(self, study: Study, trial: TrialRecord) -> str:
        """One log line for a finished trial."""
        done = len(study.finished())
        head = (f"{self.label + ' ' if self.label else ''}[{done}/{self.total}] trial {trial.number} "
                f"{trial.state.value} in {_num(trial.seconds)} s{_marks(trial)}")
        if trial.state is TrialState.FAILED:
            return f"{head}: {trial.error}"
        if trial.state is TrialState.PRUNED:
            return f"{head}: {trial.user_attrs.get('pruned', {}).get('reason', 'stopped early')}"
        objectives = "  ".join(f"{m}={fmt_metric(trial.values, m)}" for m in study.space.objectives)
        return (f"{head}: {objectives}  | HV {_fraction(self.hypervolume)}  | "
                f"{describe(study.space, trial.config)}")

    def _panel(self) -> Table:
        table = Table(show_header=False, box=None, padding=(0, 1))
        study = self.study
        if study is None:
            table.add_row("study", "starting")
            return table
        if self.label:
            table.add_row("study", self.label)
        table.add_row("trials", f"{len(study.finished())} of {self.total} finished, {len(self.running)} running"
                      + (f", {sum(t.state is TrialState.PRUNED for t in study.trials)} stopped early"
                         if study.space.early_stopping.enabled else ""))
        now = time.perf_counter()
        for number, (slot, started, config) in sorted(self.running.items(), key=lambda kv: kv[1][0]):
            table.add_row(f"  worker {slot + 1}", f"trial {number}{_marked(self.marked.get(number))}, "
                          f"{now - started:.0f} s: {describe(study.space, config)}")
        table.add_row("HV", f"{_fraction(self.hypervolume)} of the box from the reference point to the ideal point")
        for metric, direction in study.space.objectives.items():
            best = _best(study, metric, direction)
            table.add_row(f"best {metric} ({direction})",
                          "-" if best is None else f"{fmt_metric(best.values, metric)}  (trial {best.number})")
        if self.last is not None:
            table.add_row("last trial", f"{self.last.number}: {self.last.state.value}, "
                          f"suggest {_num(self.last.suggest_seconds)} s, run {_num(self.last.seconds)} s")
        for sentence in self.notes:
            table.add_row("model", sentence)
        table.add_row("elapsed", f"{now - self.started:.0f} s")
        return table


class CohortProgress(_LivePanel):
    """A per-user study's display: one live panel for the cohort on a terminal, lines elsewhere.

    The panel shows the users done, running and to go, the trials finished, every trial in flight
    with its worker and its user, and the last trial; each user's trials print their failures and
    stops above it. Without a terminal each finished trial prints its line starting with its user
    (``u17 [3/6] trial 3 completed in 4.1 s: ...``). Either way, a user whose study has its trials
    prints one line with its front (:meth:`user_done`).

    Args:
        console: a rich console (stderr).
        users: the cohort's users, in order.
        total: each user's trial count.
    """

    def __init__(self, console, users: list[str], total: int) -> None:
        self.console = console
        self.count = len(users)
        self.total = total
        self.active: dict[str, StudyProgress] = {}
        self.users_done = 0
        self.trials_done = 0
        self.last: tuple[str, TrialRecord] | None = None
        self.started = time.perf_counter()
        self.live = Live(self._panel(), console=console, refresh_per_second=1, transient=False,
                         get_renderable=self._panel) if live_panel(console) else None

    def user(self, task: str) -> StudyProgress:
        """The study callback of a user that starts (its lines and failures start with the user's id)."""
        progress = _UserProgress(self, task)
        self.active[task] = progress
        return progress

    def user_done(self, task: str, study: Study) -> None:
        """A user's study has its trials: one line with what it found."""
        self.active.pop(task, None)
        self.users_done += 1
        self.console.print(user_line(task, study, f"{self.users_done}/{self.count} users"), highlight=False,
                           soft_wrap=True)

    def _panel(self) -> Table:
        table = Table(show_header=False, box=None, padding=(0, 1))
        table.add_row("users", f"{self.users_done} of {self.count} done, {len(self.active)} running, "
                      f"{self.count - self.users_done - len(self.active)} to go")
        in_flight = sum(len(p.running) for p in self.active.values())
        table.add_row("trials", f"{self.trials_done} finished in this run ({self.total} per user), {in_flight} running")
        now = time.perf_counter()
        flights = sorted(((slot, user, number, started, config, progress.study, progress.marked.get(number))
                          for user, progress in self.active.items()
                          for number, (slot, started, config) in progress.running.items()), key=lambda f: f[0])
        for slot, user, number, started, config, study, marks in flights:
            table.add_row(f"  worker {slot + 1}", f"{user} trial {number}{_marked(marks)}, {now - started:.0f} s: "
                          f"{describe(study.space, config) if study else ''}")
        if self.last is not None:
            user, trial = self.last
            table.add_row("last trial", f"{user} trial {trial.number}: {trial.state.value} in {_num(trial.seconds)} s")
        table.add_row("elapsed", f"{now - self.started:.0f} s")
        return table


class _UserProgress(StudyProgress):
    """One user's :class:`StudyProgress` inside a :class:`CohortProgress` (no panel of its own)."""

    def __init__(self, cohort: CohortProgress, task: str) -> None:
        super().__init__(cohort.console, cohort.total, label=task, panel=False)
        self.cohort = cohort

    def __call__(self, study: Study, trial: TrialRecord) -> None:
        super().__call__(study, trial)
        self.cohort.trials_done += 1
        self.cohort.last = (self.label, trial)


def user_line(user: str, study: Study, where: str = "") -> str:
    """``u17 done [12/1000 users]: 6 trials (2 warm start, 1 stopped early), hypervolume 0.41; knee trial 2: ...``."""
    finished = study.finished()
    pruned = sum(t.state is TrialState.PRUNED for t in finished)
    failed = sum(t.state is TrialState.FAILED for t in finished)
    warm = sum("warm start" in t.marks for t in finished)
    extra = ", ".join(x for x in (f"{warm} warm start" if warm else "", f"{pruned} stopped early" if pruned else "",
                                  f"{failed} failed" if failed else "") if x)
    knee = study.knee_trial()
    head = (f"{user} done{f' [{where}]' if where else ''}: {len(finished)} trials" + (f" ({extra})" if extra else "")
            + f", hypervolume {_num(_safe_hv(study))}")
    if knee is None:
        return f"{head}; no feasible trial"
    shown = "  ".join(f"{m}={fmt_metric(knee.values, m)}" for m in study.space.objectives)
    return f"{head}; knee trial {knee.number}: {shown}"


def live_panel(console) -> bool:
    """True when ``console`` can redraw a live panel in place: a terminal that rich does not treat as
    dumb (``TERM=dumb`` or ``unknown``). A dumb terminal would show the panel only once, at the end,
    so it gets the lines a log file gets, as each trial finishes."""
    return console.is_terminal and console.is_interactive


def _best(study: Study, metric: str, direction: str) -> TrialRecord | None:
    done = [t for t in study.completed() if metric in t.values]
    if not done:
        return None
    pick = max if str(direction).endswith("max") else min
    return pick(done, key=lambda t: t.values[metric])


def _safe_hv(study: Study) -> float:
    """The share of the study's normalisation box the front covers (``search.results.report.normalized_hypervolume``)."""
    try:
        return normalized_hypervolume(study)
    except Exception:  # noqa: BLE001  (a display must not stop a study)
        return math.nan


def _marks(trial: TrialRecord, said: str = "") -> str:
    """`` (warm start, stopped early)``: a finished trial's marks for its line ('' for none; ``said``, already
    in the line, left out)."""
    return _marked(tuple(m for m in trial.marks if m != said))


def _marked(marks: tuple[str, ...] | None) -> str:
    return f" ({', '.join(marks)})" if marks else ""


def _fraction(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
