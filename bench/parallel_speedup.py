"""Benchmark: the same study with 1 and 2 workers, in one run: wall time and the hypervolume reached.

Two problems:

- ``sleep``: the personalization-shaped ``mixed`` problem of ``bench/search_efficiency.py`` (30
  layer flags, count, rank, k, retriever; storage known exactly), each evaluation made to cost
  ``--sleep`` seconds, searched by ``gp-nehvi`` (so the optimiser's own seconds are part of the wall
  time: with 2 workers a suggestion is made while the other worker evaluates);
- ``tiny``: real trials of the tiny model on the demo data (training, generation, scoring) by
  ``sobol``, one torch thread per worker on this 2-core machine against two threads for one worker.

For each problem and seed both worker counts run the same number of trials; the table gives the
wall-time ratio (1 worker / 2 workers) and each side's hypervolume after all its trials (the same
trial count), as a fraction of the problem's exact maximum for ``sleep``.

The per-user part (``--problems per-user``) is a per-user search (``search.execution.per_user.optimize_tasks``,
the CLI's ``--per-user``) of ``--users`` users (default 8) with ``--user-trials`` trials each (6, the
first ``--user-init`` quasi-random) on the sleep problem, once on 1 worker and once on 2 (the cohort
scheduler: two users side by side, one trial each in flight): the wall-time ratio, and each user's
hypervolume as a fraction of the exact maximum, mean ± standard error over users and seeds. Run
from the repository root::

    python bench/parallel_speedup.py                      # sleep problem, 3 seeds, 16 trials, 4 s each
    python bench/parallel_speedup.py --problems sleep tiny --seeds 3
    python bench/parallel_speedup.py --problems per-user --seeds 3   # 8 users x 6 trials, 4 s each
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from search.api import optimize  # noqa: E402
from search.execution.executors import LocalExecutor, ProcessExecutor  # noqa: E402
from search.optimizers import AcquisitionOptions  # noqa: E402

GOAL = 1.7
USER_GOAL = 1.8  # issue 34: 8 users x 6 trials, 2 workers against 1


class SleepyMixed:
    """The ``mixed`` problem, each evaluation sleeping ``seconds`` first (a picklable callable)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        from search_efficiency import mixed_function

        time.sleep(self.seconds)
        return mixed_function(config)


@dataclass
class Run:
    problem: str
    workers: int
    seed: int
    seconds: float
    hypervolume: float
    trials: int
    users: tuple[float, ...] = ()  # the per-user part: each user's hypervolume fraction


@functools.cache
def mixed():
    """The ``mixed`` problem with its exact maximum hypervolume (enumerated once)."""
    from search_efficiency import MIXED, mixed_problem

    return mixed_problem(MIXED)


def run_sleep(workers: int, seed: int, args: argparse.Namespace) -> Run:
    """One study of the sleep problem."""
    problem = mixed()
    space = problem.space.with_optimizer(name="gp-nehvi", trials=args.trials, init_trials=args.init, seed=seed,
                                         ref_point=problem.ref_point)
    executor = LocalExecutor() if workers == 1 else ProcessExecutor(workers, threads=1)
    options = AcquisitionOptions(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=16)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study = optimize(space, SleepyMixed(args.sleep), study_dir=tmp, known_objectives=problem.known,
                         executor=executor, options=options)
        seconds = time.perf_counter() - started
        return Run("sleep", workers, seed, seconds, study.hypervolume() / problem.max_hv, len(study.finished()))


def run_per_user(workers: int, seed: int, args: argparse.Namespace) -> Run:
    """A per-user search of the sleep problem: ``--users`` users, ``--user-trials`` trials each."""
    from search.execution.per_user import optimize_tasks

    problem = mixed()
    space = problem.space.with_optimizer(name="gp-nehvi", trials=args.user_trials, init_trials=args.user_init,
                                         seed=seed * 100, ref_point=problem.ref_point)
    objectives = {f"u{i}": SleepyMixed(args.sleep) for i in range(args.users)}
    options = AcquisitionOptions(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=16)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        cohort = optimize_tasks(space, objectives, study_name="users", study_dir=tmp, known_objectives=problem.known,
                                options=options, warm_start=False,
                                executor=lambda: LocalExecutor() if workers == 1 else ProcessExecutor(workers, threads=1))
        seconds = time.perf_counter() - started
        fractions = tuple(cohort.studies[u].hypervolume() / problem.max_hv for u in cohort.users)
        trials = sum(len(s.finished()) for s in cohort.studies.values())
        return Run("per-user", workers, seed, seconds, statistics.fmean(fractions), trials, fractions)


def run_tiny(workers: int, seed: int, args: argparse.Namespace) -> Run:
    """One study of real tiny-model trials."""
    import torch

    from search.study.setup import bind_to_model
    from search.space import load_space
    from search.execution.trial_objective import TrialObjective

    space, setup = bind_to_model(load_space("tiny.yaml"))
    space = space.with_optimizer(name="sobol", trials=args.tiny_trials, init_trials=args.tiny_trials, seed=seed)
    objective = TrialObjective(setup)
    torch.set_num_threads(2 if workers == 1 else 1)
    executor = LocalExecutor() if workers == 1 else ProcessExecutor(workers, threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        study = optimize(space, objective, study_dir=tmp, known_objectives=objective.known_objectives(),
                         executor=executor)
        seconds = time.perf_counter() - started
        return Run("tiny", workers, seed, seconds, study.hypervolume(), len(study.finished()))


def report(runs: list[Run]) -> str:
    """The markdown table: per problem, mean wall seconds and hypervolume per worker count, and the ratio."""
    lines = ["| problem | seeds | trials | 1 worker s | 2 workers s | speed-up | HV 1 worker | HV 2 workers |",
             "|---|---|---|---|---|---|---|---|"]
    for problem in dict.fromkeys(r.problem for r in runs):
        one = [r for r in runs if r.problem == problem and r.workers == 1]
        two = [r for r in runs if r.problem == problem and r.workers == 2]
        ratios = [a.seconds / b.seconds for a, b in zip(one, two)]
        lines.append(
            f"| {problem} | {len(ratios)} | {one[0].trials} | {_mean(r.seconds for r in one):.1f} | "
            f"{_mean(r.seconds for r in two):.1f} | {_mean(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) | "
            f"{_mean_sd([r.hypervolume for r in one])} | {_mean_sd([r.hypervolume for r in two])} |")
    return "\n".join(lines)


def per_user_report(runs: list[Run]) -> str:
    """The per-user part: wall seconds per worker count, the ratio, and each user's hypervolume
    (mean ± standard error over users and seeds) per worker count."""
    one = [r for r in runs if r.problem == "per-user" and r.workers == 1]
    two = [r for r in runs if r.problem == "per-user" and r.workers == 2]
    if not one or not two:
        return ""
    ratios = [a.seconds / b.seconds for a, b in zip(one, two)]
    hv1 = [h for r in one for h in r.users]
    hv2 = [h for r in two for h in r.users]
    lines = ["| part | seeds | users x trials | 1 worker s | 2 workers s | speed-up | HV per user, 1 worker | "
             "HV per user, 2 workers |", "|---|---|---|---|---|---|---|---|",
             f"| per-user | {len(ratios)} | {len(one[0].users)} x {one[0].trials // len(one[0].users)} | "
             f"{_mean(r.seconds for r in one):.1f} | {_mean(r.seconds for r in two):.1f} | {_mean(ratios):.2f}x "
             f"({min(ratios):.2f}-{max(ratios):.2f}) | {_mean_se(hv1)} | {_mean_se(hv2)} |"]
    return "\n".join(lines)


def _mean_se(values: list[float]) -> str:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {se:.3f} (n={len(values)})"


def _mean(values) -> float:
    return statistics.fmean(list(values))


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {sd:.2g}"


def main(argv: list[str] | None = None) -> int:
    """Run every problem and seed with 1 then 2 workers; print each run as it ends, then the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=["sleep"], choices=["sleep", "tiny", "per-user"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16, help="trials per sleep study (default 16)")
    parser.add_argument("--init", type=int, default=6, help="quasi-random trials of the sleep study (default 6)")
    parser.add_argument("--sleep", type=float, default=4.0, help="seconds per sleep evaluation (default 4)")
    parser.add_argument("--tiny-trials", type=int, default=8, help="trials per tiny-model study (default 8)")
    parser.add_argument("--users", type=int, default=8, help="users of the per-user part (default 8)")
    parser.add_argument("--user-trials", type=int, default=6, help="trials per user of the per-user part (default 6)")
    parser.add_argument("--user-init", type=int, default=3,
                        help="quasi-random trials per user of the per-user part (default 3)")
    args = parser.parse_args(argv)
    runners = {"sleep": run_sleep, "tiny": run_tiny, "per-user": run_per_user}
    runs = []
    for problem in args.problems:
        for seed in range(args.seeds):
            for workers in (1, 2):
                run = runners[problem](workers, seed, args)
                runs.append(run)
                print(f"{problem} seed {seed} workers {workers}: {run.seconds:.1f} s, {run.trials} trials, "
                      f"hypervolume {run.hypervolume:.4g}", flush=True)
    single = [r for r in runs if r.problem != "per-user"]
    if single:
        print(report(single))
    sleep_ratios = [a.seconds / b.seconds for a, b in zip(runs[0::2], runs[1::2]) if a.problem == "sleep"]
    if sleep_ratios:
        print(f"sleep problem: {_mean(sleep_ratios):.2f}x faster with 2 workers (goal {GOAL}x)")
    user_ratios = [a.seconds / b.seconds for a, b in zip(runs[0::2], runs[1::2]) if a.problem == "per-user"]
    if user_ratios:
        print(per_user_report(runs))
        print(f"per-user search: {_mean(user_ratios):.2f}x faster with 2 workers (goal {USER_GOAL}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
