"""A live terminal display of a running study (rich), fed by the study callbacks."""

from __future__ import annotations

import math
import time

from rich.live import Live
from rich.table import Table

from search.api import LocalExecutor
from search.study import Study, TrialRecord, TrialState


class StudyProgress:
    """Callback that redraws: trial i of N, hypervolume, best per objective, timings."""

    def __init__(self, console, total: int) -> None:
        self.console = console
        self.total = total
        self.study: Study | None = None
        self.started = time.perf_counter()
        self.live = Live(self._render(None, None), console=console, refresh_per_second=2, transient=False)

    def __enter__(self) -> "StudyProgress":
        self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.live.__exit__(*exc)

    def executor(self):
        """A local executor that shows which configuration is running."""
        progress = self

        class _Shown(LocalExecutor):
            def map(self, objective, configs):
                for i, config in enumerate(configs):
                    progress.live.update(progress._render(progress.study, None, running=config))
                    yield from ((i, o) for _, o in super().map(objective, [config]))

        return _Shown()

    def __call__(self, study: Study, trial: TrialRecord) -> None:
        self.study = study
        self.live.update(self._render(study, trial))
        if trial.state is TrialState.FAILED:
            self.console.print(f"[red]trial {trial.number} failed:[/] {trial.error}")

    def _render(self, study: Study | None, last: TrialRecord | None, running: dict | None = None):
        table = Table(show_header=False, box=None, padding=(0, 1))
        if study is None:
            table.add_row("study", "first trial running" if running is not None else "starting")
            return table
        done = study.finished()
        table.add_row("trials", f"{len(done)} of {self.total} finished"
                      + ("; next one running" if running is not None else ""))
        table.add_row("hypervolume", _num(_safe_hv(study)))
        for metric, direction in study.space.objectives.items():
            best = _best(study, metric, direction)
            table.add_row(f"best {metric} ({direction})", "-" if best is None else f"{_num(best.values[metric])}  (trial {best.number})")
        if last is not None:
            table.add_row("last trial", f"{last.number}: {last.state.value}, "
                          f"suggest {_num(last.suggest_seconds)} s, run {_num(last.seconds)} s")
        table.add_row("elapsed", f"{time.perf_counter() - self.started:.0f} s")
        return table


def _best(study: Study, metric: str, direction: str) -> TrialRecord | None:
    done = [t for t in study.completed() if metric in t.values]
    if not done:
        return None
    pick = max if str(direction).endswith("max") else min
    return pick(done, key=lambda t: t.values[metric])


def _safe_hv(study: Study) -> float:
    try:
        return study.hypervolume()
    except Exception:  # noqa: BLE001  (a display must not stop a study)
        return math.nan


def _num(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4g}"
