"""Users searched side by side (issue 34, target 2): the cohort scheduler keeps W workers busy with
several users' trials, each user's study stays its own, a killed cohort resumes keeping every
finished trial once, and ``status`` of a cohort is a summary and a paged table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from parallel_objectives import TimedUser
from search.api import optimize
from search.cli import main
from search.execution.executors import LocalExecutor, ProcessExecutor
from search.optimizers import AcquisitionOptions
from search.execution.per_user import TaskHooks, load_cohort, optimize_tasks
from search.space import parse_space
from search.study.study import TrialState
from toy_study import toy_space_text

ROOT = Path(__file__).resolve().parents[1]
SHIFTS = (0.0, 0.4, -0.3, 0.2)
FAST_BO = AcquisitionOptions(num_restarts=1, raw_samples=16, mc_samples=16, maxiter=4)


def toy_space(trials: int, optimizer: str = "sobol", init: int = 2):
    return parse_space(toy_space_text("cohort", trials=trials, seed=3), "cohort.yaml").with_optimizer(
        name=optimizer, init_trials=init)


def users(count: int, seconds: float = 0.3) -> dict:
    return {f"u{i}": TimedUser(SHIFTS[i % len(SHIFTS)] + 0.01 * i, seconds) for i in range(count)}


def _content(study) -> list[tuple]:
    """What a study found, without order or timing: each trial's configuration, state and values."""
    return sorted((json.dumps(t.config, sort_keys=True), t.state.value, json.dumps(t.values, sort_keys=True))
                  for t in study.trials)


def _windows(cohort) -> list[tuple[float, float, str]]:
    """Every trial's (start, end, user), as the worker saw them."""
    return sorted((t.user_attrs["began"], t.user_attrs["ended"], user)
                  for user, study in cohort.studies.items() for t in study.trials)


def _in_flight_at(windows, moment: float) -> list[str]:
    return [user for start, end, user in windows if start <= moment < end]


class Started(TaskHooks):
    """Records when each user starts and ends, and every submitted trial with its worker slot."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.slots: list[tuple[str, int, int]] = []

    def start(self, task, index):
        self.events.append(("start", task))
        hooks = self

        class Watch:
            def trial_started(self, study, trial, slot):
                hooks.slots.append((task, trial.number, slot))

            def __call__(self, study, trial):
                pass
        return [Watch()]

    def end(self, task, study):
        self.events.append(("end", task))


def test_two_workers_run_two_users_at_once_one_trial_each_while_users_remain(tmp_path):
    hooks = Started()
    cohort = optimize_tasks(toy_space(3), users(4), study_name="c", study_dir=tmp_path, hooks=hooks,
                            executor=lambda: ProcessExecutor(2, threads=1))
    assert all([t.state for t in s.trials] == [TrialState.COMPLETED] * 3 for s in cohort.studies.values())
    windows = _windows(cohort)
    starts = [w[0] for w in windows]
    assert max(len(_in_flight_at(windows, s)) for s in starts) == 2, "never more than W trials in flight"
    both = [s for s in starts if len(set(_in_flight_at(windows, s))) == 2]
    assert len(both) >= 6, f"two users' trials ran side by side: {windows}"
    span = windows[-1][1] - windows[0][0]
    busy = sum(end - start for start, end, _ in windows)
    assert busy / (2 * span) > 0.6, f"both workers busy most of the time: {busy:.1f} s of {2 * span:.1f}"
    # users start in cohort order, at most two at once; all but the last to finish ran one trial at a time
    assert [task for kind, task in hooks.events if kind == "start"] == ["u0", "u1", "u2", "u3"]
    active = 0
    for kind, _ in hooks.events:
        active += 1 if kind == "start" else -1
        assert active <= 2
    last = max(cohort.studies, key=lambda u: max(t.finished_at for t in cohort.studies[u].trials))
    for user, study in cohort.studies.items():
        if user != last:
            spans = sorted((t.user_attrs["began"], t.user_attrs["ended"]) for t in study.trials)
            assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), f"{user} had two trials at once: {spans}"
    assert {slot for _, _, slot in hooks.slots} == {0, 1}
    assert sorted((u, n) for u, n, _ in hooks.slots) == sorted((u, n) for u in cohort.users for n in range(3))


@pytest.mark.parametrize("optimizer, count", [("sobol", 4), ("gp-nehvi", 3)])
def test_each_users_study_equals_that_user_searched_alone(tmp_path, optimizer, count):
    """Two workers, users side by side: each user's study holds what a search of that user alone (one
    worker, its own seed) finds: the same configurations and values, in whatever order and time.
    (The last user to finish may get both workers, and then BO conditions on a trial in flight:
    it is compared for the quasi-random optimiser only.)"""
    space = toy_space(4, optimizer)
    objectives = users(count, seconds=0.2)
    cohort = optimize_tasks(space, objectives, study_name="side", study_dir=tmp_path, options=FAST_BO,
                            executor=lambda: ProcessExecutor(2, threads=1))
    last = max(cohort.studies, key=lambda u: max(t.finished_at for t in cohort.studies[u].trials))
    compared = [u for u in cohort.users if optimizer == "sobol" or u != last]
    for index, user in enumerate(cohort.users):
        if user not in compared:
            continue
        alone = optimize(space.with_optimizer(seed=space.optimizer.seed + index), objectives[user],
                         study_name=f"alone-{user}", study_dir=tmp_path, options=FAST_BO, executor=LocalExecutor())
        assert _content(cohort.studies[user]) == _content(alone), user
    assert len(compared) >= count - 1


def test_with_one_worker_users_run_one_after_another_as_before(tmp_path):
    hooks = Started()
    optimize_tasks(toy_space(2), users(3, seconds=0.0), study_name="seq", study_dir=tmp_path, hooks=hooks)
    assert hooks.events == [("start", "u0"), ("end", "u0"), ("start", "u1"), ("end", "u1"), ("start", "u2"),
                            ("end", "u2")]


def test_warm_start_learns_from_users_running_beside_it(tmp_path, monkeypatch):
    """At every suggestion a user's BO optimiser gets every finished trial of the other users, those
    running beside it included; its front points are those of the users finished when it starts."""
    import search.execution.per_user as per_user

    seen: list[tuple[int, int]] = []
    original = per_user.warm_start_observations

    def spy(previous, max_observations, known=()):
        out = original(previous, max_observations, known)
        seen.append((len(previous), sum(len(o) for o in out)))
        return out

    monkeypatch.setattr(per_user, "warm_start_observations", spy)
    space = toy_space(4, "gp-nehvi").with_overrides(["warm_start.max_observations=100", "warm_start.max_points=1"])
    cohort = optimize_tasks(space, users(3, seconds=0.2), study_name="w", study_dir=tmp_path, warm_start=True,
                            options=FAST_BO, executor=lambda: ProcessExecutor(2, threads=1))
    assert all(len(s.finished()) == 4 for s in cohort.studies.values())
    assert seen, "the BO optimisers asked for the other users' trials"
    assert any(others >= 1 and trials >= 1 for others, trials in seen[:6]), \
        f"the first users learn from each other while both run: {seen}"
    assert max(trials for _, trials in seen) >= 6, "later suggestions see more of the others' trials"
    # u0 and u1 started together: neither had a finished user to take front points from
    first = {u: cohort.studies[u].trials[0].config for u in ("u0", "u1")}
    alone = {u: optimize(space.with_optimizer(seed=space.optimizer.seed + i, trials=1), users(2, 0.0)[u],
                         study_name=f"cold-{u}", study_dir=tmp_path).trials[0].config for i, u in enumerate(first)}
    assert first == alone


def test_a_cohort_on_a_local_ray_completes_with_each_trial_recorded_once(tmp_path, monkeypatch):
    """``--executor ray --address local`` with 2 CPUs: the same scheduler, Ray tasks for workers."""
    pytest.importorskip("ray")
    from search.execution.executors import RayExecutor

    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'tests'}")  # Ray's workers import the test objectives
    finished: list[tuple[str, int]] = []

    class Record(TaskHooks):
        def start(self, task, index):
            return [lambda study, trial: finished.append((task, trial.number))]

    cohort = optimize_tasks(toy_space(3), users(3, seconds=0.5), study_name="ray", study_dir=tmp_path,
                            hooks=Record(), executor=lambda: RayExecutor(2, "local", num_cpus=2))
    assert sorted(finished) == [(u, n) for u in cohort.users for n in range(3)], "each trial recorded once"
    assert all([t.state for t in s.trials] == [TrialState.COMPLETED] * 3 for s in cohort.studies.values())
    windows = _windows(cohort)
    assert max(len(_in_flight_at(windows, start)) for start, _, _ in windows) == 2
    assert any(len(set(_in_flight_at(windows, start))) == 2 for start, _, _ in windows), "two users at once"


# --------------------------------------------------------------------------- killed and resumed, real processes
def _cli(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _user_trials(studies: Path) -> dict[str, list[dict]]:
    out = {}
    for path in sorted((studies / "pu" / "users").glob("*/study.json")):
        try:
            out[path.parent.name] = json.loads(path.read_text())["trials"]
        except ValueError:
            pass
    return out


def _children(pid: int) -> list[int]:
    done = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def test_a_cohort_killed_mid_way_resumes_with_every_finished_trial_once(tmp_path):
    store = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["run", "pu", "--space", "tiny.yaml", "--optimizer", "random", "--per-user", "--users", "3",
            "--trials", "3", "--workers", "2", "--no-test", "--tracking-uri", store]
    studies = tmp_path / "studies"
    run = _cli(*args, cwd=tmp_path)
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and run.poll() is None:
            trials = [t for ts in _user_trials(studies).values() for t in ts]
            done = [t for t in trials if t["state"] == "completed"]
            running = [t for t in trials if t["state"] == "running"]
            if len(done) >= 2 and running and len(done) < 8:
                break
            time.sleep(0.1)
        workers = _children(run.pid)
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    before = _user_trials(studies)
    finished = {(u, t["number"]): t for u, ts in before.items() for t in ts if t["state"] == "completed"}
    assert finished and any(t["state"] == "running" for ts in before.values() for t in ts), before
    time.sleep(1)
    assert not any(Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
                   for pid in workers), "the workers died with their driver"

    resumed = _cli("resume", "pu", "--workers", "2", "--no-test", "--tracking-uri", store, cwd=tmp_path)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    after = _user_trials(studies)
    assert len(after) == 3
    for user, trials in after.items():
        assert sum(t["state"] == "completed" for t in trials) == 3, (user, trials)
        kept = [t for t in trials if t["state"] in ("completed", "failed", "pruned")]
        assert len({json.dumps(t["config"], sort_keys=True) for t in kept}) == len(kept), "no trial ran twice"
    for (user, number), trial in finished.items():  # every trial finished before the kill is kept as it was
        again = after[user][number]
        assert (again["state"], again["values"], again["finished_at"]) == ("completed", trial["values"],
                                                                            trial["finished_at"])
    assert re_line(err), err[-2000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    runs = client.search_runs([client.get_experiment_by_name("pu").experiment_id], max_results=1000)
    roles: dict = {}
    for r in runs:
        roles.setdefault(r.data.tags.get("pers_search.role"), []).append(r)
    assert len(roles["study"]) == 3 and len(roles["cohort"]) == 1, "one parent run per user and the cohort's"
    assert all(r.info.status == "FINISHED" for r in runs)
    for parent in roles["study"]:
        numbers = sorted(int(r.data.tags["pers_search.trial"]) for r in roles["trial"]
                         if r.data.tags["mlflow.parentRunId"] == parent.info.run_id)
        user = parent.data.tags["pers_search.study"].rsplit("/", 1)[1]
        expected = sorted(t["number"] for t in after[user] if t["state"] != "stopped")
        assert numbers == expected, (user, numbers, expected)


def re_line(err: str) -> bool:
    """A progress line names the user of its trial: ``<user> [i/3] trial N completed in ...``."""
    import re

    return re.search(r"^demo-\d\d-\w+ \[\d/3\] trial \d+ completed in ", err, re.M) is not None


# --------------------------------------------------------------------------- status of a cohort
class StopsAt:
    """The toy objective, stopping the whole run (as Ctrl-C does) at its ``nth`` call."""

    def __init__(self, nth: int) -> None:
        self.calls, self.nth = 0, nth

    def __call__(self, config):
        self.calls += 1
        if self.calls == self.nth:
            raise KeyboardInterrupt
        from toy_study import objective

        return objective(config)


def test_status_of_a_cohort_is_a_summary_and_a_paged_table(tmp_path, capsys):
    names = [f"user{i:02d}" for i in range(25)]
    stop = StopsAt(2 * 22 + 2)  # users 0-21 done, user 22 stopped in its second trial, 23-24 never started
    with pytest.raises(KeyboardInterrupt):
        optimize_tasks(toy_space(2), {u: stop for u in names}, study_name="big", study_dir=tmp_path)
    studies = str(tmp_path)
    capsys.readouterr()
    assert main(["status", "big", "--study-dir", studies]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "per-user study big: 25 users: 22 done, 0 running, 1 stopped part-way, 2 pending"
    assert lines[1] == "trials: 45 finished of 50, 0 running"
    assert "HV per user (the share of each user's box from its reference point to the ideal point): median " in out
    assert "no process is writing it; `pers-search resume` continues it" in out
    assert "users 1-20 of 25" in out and "user19" in out and "user20" not in out
    assert f"next page: `pers-search status big --study-dir {studies} --page 2` (page 1 of 2" in out
    assert f"`pers-search status big --study-dir {studies} --user USER`" in out
    assert main(["status", "big", "--study-dir", studies, "--page", "2"]) == 0
    out = capsys.readouterr().out
    assert "users 21-25 of 25" in out and "user19" not in out and "next page" not in out
    rows = {line.split("│")[2].strip(): line.split("│")[3].strip() for line in out.splitlines() if "│ user" in line}
    assert rows == {"user20": "done", "user21": "done", "user22": "stopped", "user23": "pending", "user24": "pending"}
    assert main(["status", "big", "--study-dir", studies, "--rows", "30"]) == 0
    out = capsys.readouterr().out
    assert "next page" not in out and "user24" in out and len([line for line in out.splitlines() if "│ user" in line]) == 25

    assert main(["status", "big", "--study-dir", studies, "--user", "user22"]) == 0
    out = capsys.readouterr().out
    assert "study big/users/user22: 2 trials" in out and "stale" in out
    assert main(["status", "big", "--study-dir", studies, "--user", "user2"]) == 2
    assert "no such user in the per-user study; did you mean user2" in capsys.readouterr().err
    assert main(["status", "big", "--study-dir", studies, "--user", "user24"]) == 2
    assert "that user's search has not started yet" in capsys.readouterr().err

    assert main(["status", "big", "--study-dir", studies, "--all"]) == 0
    out = capsys.readouterr().out
    assert out.count("study big/users/user") == 23 and "user24" in out
    assert main(["status", "big", "--study-dir", studies, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"study", "users", "total_storage_bytes", "per_user"}, "--json keeps its content"
    assert [r["user"] for r in data["users"]] == names and len(data["per_user"]) == 23
    assert main(["status", "big", "--study-dir", studies, "--json", "--user", "user03"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "big/users/user03"

    resumed = load_cohort("big", tmp_path)
    assert [len(resumed.studies[u].finished()) for u in names[:23]] == [2] * 22 + [1]
