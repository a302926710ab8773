"""Benchmark: what early stopping and warm starts save in per-user searches, in one run.

(a) Early stopping: a per-user study of a fixed trial budget, with and without early stopping:
    the training steps spent and the hypervolume reached.
(b) Warm start: 4 users searched one after another, cold and warm-started from the users before:
    the hypervolume after 6 trials per user (users 2-4, where a warm start can act). Three arms:
    ``cold``; ``fronts``, the earlier users' front points evaluated first (``max_observations: 0``);
    ``learned``, those points and the earlier users' trials in the surrogate with a same-user input
    (``search.optimizers.user_transfer``). ``--warm-points N`` sets ``warm_start.max_points``.

Two problems:

- ``synthetic``: learning curves whose right answer is known (many seeds, seconds): a user's
  configuration ``x`` in [0, 1], ``width`` 1..4 reaches ``quality = 0.2 + 0.6 (1 - (x - c_u)^2 /
  0.5) (1 - 0.2 (4 - width))`` after 40 steps (``c_u`` the user's optimum, near 0.7 for every
  user), along ``final * (1 - exp(-step / 8))`` with noise 0.01; ``cost = width`` is known.
  Hypervolumes are fractions of the exact maximum (every width at ``x = c_u``).
- ``embedded``: real trials on SmolLM2 and the demo data (slow: minutes per study).

Goals (issue 13): early stopping spends at least 30% fewer training steps at no worse than 97% of
the hypervolume; a warm start gives a higher mean hypervolume at 6 trials than a cold one.
Run from the repository root::

    python bench/search_cost.py --problems synthetic --seeds 20
    python bench/search_cost.py --problems synthetic --parts stopping --stop-set early_stopping.margin=0.02
    python bench/search_cost.py --problems synthetic --parts warm --optima 0.5 0.4 --seeds 10   # distinct users
    python bench/search_cost.py --parts warm --arms learned --warm-points 2 --seeds 10           # one arm
    python bench/search_cost.py --problems embedded --seeds 3
    python bench/search_cost.py --problems embedded --parts stopping --trials 12 --train-steps 16

``--out FILE`` appends every seed's row as one JSON line (with ``--first-seed``, seeds run in
separate processes or on separate days land in one file); ``--summarise FILE`` prints the tables
from such a file alone, the arms of one seed run apart merged into one row (the cold arm, which
does not depend on ``--warm-points``, joins every setting of it).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.data.jsonl import iter_jsonl  # noqa: E402
from runners.errors import DataError  # noqa: E402
from runners.spec import Checkpoint  # noqa: E402
from search.api import optimize  # noqa: E402
from search.errors import SpaceError  # noqa: E402
from search.pareto import hypervolume  # noqa: E402
from search.execution.per_user import TaskHooks, optimize_tasks  # noqa: E402
from search.space import WarmStartSettings, parse_space  # noqa: E402
from search.study.study import TrialState  # noqa: E402

STEPS, EVERY, TAU, NOISE = 40, 4, 8.0, 0.01
DEFAULT_OPTIMA = (0.7, 0.08)
DEFAULT_PER_USER = 6  # the budget: hypervolume after 6 trials per user
OBJECTIVES = {"quality": "max", "cost": "min"}
REF = {"quality": 0.0, "cost": 5.0}
SYNTHETIC = """
name: curves
objectives: {quality: max, cost: min}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
  width: {type: int, low: 1, high: 4}
optimizer: {name: gp-nehvi, init_trials: 4, trials: 20, seed: 0, ref_point: {quality: 0.0, cost: 5.0}}
early_stopping: {enabled: false, every: 4, min_steps: 8, confidence: 0.9}
"""


class SyntheticUser:
    """One user's learning-curve objective (picklable; counts nothing itself: steps come from the records)."""

    def __init__(self, centre: float) -> None:
        self.centre = centre

    def final(self, config: dict[str, Any]) -> float:
        x, width = float(config["x"]), int(config["width"])
        return 0.2 + 0.6 * max(0.0, 1.0 - (x - self.centre) ** 2 / 0.5) * (1.0 - 0.2 * (4 - width))

    def __call__(self, config: dict[str, Any], report=None) -> dict[str, float]:
        rng = random.Random(f"{self.centre}:{config['x']:.6f}:{config['width']}")
        best = self.final(config)
        for index, step in enumerate(range(EVERY, STEPS + 1, EVERY)):
            if report is not None:
                quality = best * (1.0 - math.exp(-step / TAU)) + rng.gauss(0.0, NOISE)
                report(Checkpoint(f"u0:s{step}", index, 0, "synthetic", step, step,
                                  {"quality": quality, "quality_se": NOISE}))
        return {"quality": best + rng.gauss(0.0, NOISE), "quality_se": NOISE, "cost": float(config["width"]),
                "train_steps": float(STEPS)}

    def max_hypervolume(self) -> float:
        """The exact best hypervolume: every width at the user's optimum ``x = c_u`` (clipped to [0, 1])."""
        best_x = min(max(self.centre, 0.0), 1.0)
        points = [{"quality": self.final({"x": best_x, "width": w}), "cost": float(w)} for w in range(1, 5)]
        return hypervolume(points, OBJECTIVES, REF)


def cost(config: dict[str, Any]) -> float:
    """The known objective of the synthetic problem."""
    return float(config["width"])


def steps_spent(study) -> float:
    """Training steps a study spent: full trials count all their steps, pruned ones the steps before the stop."""
    total = 0.0
    for t in study.finished():
        if t.state is TrialState.PRUNED:
            total += t.user_attrs["pruned"]["trained_steps"]
        else:
            total += float(t.values.get("train_steps", 0.0))
    return total


def fixed_hv(study, max_hv: float = 1.0) -> float:
    """The study's hypervolume from the fixed reference point, as a fraction of ``max_hv``."""
    return hypervolume([t.values for t in study.completed()], study.space.objectives,
                       study.space.optimizer.ref_point, study.space.parsed_constraints) / max_hv


class TrialLines(TaskHooks):
    """One flushed line per finished trial on stderr (``search.commands.progress.StudyProgress``), naming the arm
    and the user: an embedded seed runs for most of an hour, and a piped log should show it moving."""

    def __init__(self, arm: str, users: int, trials: int) -> None:
        from rich.console import Console

        self.arm, self.users, self.trials = arm, users, trials
        self.console = Console(file=sys.stderr, force_terminal=False, width=200)

    def start(self, task: str, index: int) -> list[Any]:
        return self.callbacks(f"{self.arm} user {index + 1}/{self.users} {task}")

    def callbacks(self, label: str) -> list[Any]:
        """Study callbacks printing each finished trial's line, starting with ``label``."""
        from search.commands.progress import StudyProgress

        return [StudyProgress(self.console, self.trials, label)]


# --------------------------------------------------------------------------- (a) early stopping
def arm_row(early: bool, study, seconds: float, max_hv: float = 1.0) -> dict[str, float]:
    """One arm's part of a stopping row: ``stop_*`` or ``full_*`` steps, hypervolume, stopped trials, seconds."""
    key = "stop" if early else "full"
    return {f"{key}_steps": steps_spent(study), f"{key}_hv": fixed_hv(study, max_hv),
            f"{key}_pruned": sum(t.state is TrialState.PRUNED for t in study.trials), f"{key}_seconds": seconds}


def synthetic_stopping(seed: int, trials: int, rule: tuple[str, ...] = ()) -> dict[str, float]:
    """Both arms of one seed; ``rule``: ``early_stopping.*`` overrides of the synthetic space's rule."""
    user = SyntheticUser(0.7)
    space = parse_space(SYNTHETIC, "curves.yaml").with_optimizer(seed=seed, trials=trials).with_overrides(list(rule))
    out = {}
    for early in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            study = optimize(space, user, study_dir=tmp, known_objectives={"cost": cost}, early_stopping=early)
            out.update(arm_row(early, study, time.perf_counter() - started, user.max_hypervolume()))
    return out


# milp.yaml trains 8 steps per trial and the space's default stopping waits 8 steps (nothing to
# stop); at that budget the benchmark checks every 2 steps from step 4. Trained trials on the demo
# data end within a few percent of each other in ROUGE-L and Persona-F1 (their storage is what
# differs), so the embedded row counts a quality within 10% of the finished trial's as tied
# (``margin``) and stops at 0.8 confidence.
EMBEDDED_STOPPING = ["early_stopping.every=2", "early_stopping.min_steps=4", "early_stopping.confidence=0.8",
                     "early_stopping.margin=0.1"]


def training_overrides(train_steps: int | None) -> list[str]:
    """Space overrides for a training budget of ``train_steps`` steps per trial (None: milp.yaml's)."""
    if train_steps is None:
        return []
    return [f"training.max_steps={train_steps}", f"training.min_steps={train_steps}"]


def embedded_stopping(seed: int, trials: int, train_steps: int | None = None,
                      rule: tuple[str, ...] = ()) -> dict[str, float]:
    from search.study.setup import user_setup
    from search.study.setup import bind_to_model
    from search.space import load_space
    from search.execution.trial_objective import TrialObjective

    overrides = EMBEDDED_STOPPING + list(rule) + training_overrides(train_steps)
    base, setup = bind_to_model(load_space("milp.yaml").with_overrides(overrides).with_optimizer(
        seed=seed, trials=trials, init_trials=min(trials, 4)))
    from runners.session import session_for

    user = session_for(setup).splits[0].user.user_id
    out = {}
    for early in (False, True):
        space = base.with_overrides([f"early_stopping.enabled={str(early).lower()}"])
        objective = TrialObjective(user_setup(setup, user), monitor=space.early_stopping.monitor())
        with tempfile.TemporaryDirectory() as tmp:
            lines = TrialLines("", 1, trials).callbacks("early stopping" if early else "no stopping")
            started = time.perf_counter()
            study = optimize(space, objective, study_dir=tmp, known_objectives=objective.known_objectives(),
                             callbacks=lines)
            out.update(arm_row(early, study, time.perf_counter() - started))
    return out


# --------------------------------------------------------------------------- (b) warm start
#: The warm-start arms: no warm start; the earlier users' front points alone (``max_observations: 0``);
#: the front points and the earlier users' trials in the surrogate (``search.optimizers.user_transfer``).
ARMS = ("cold", "fronts", "learned")
WARM_POINTS = WarmStartSettings().max_points  # the warm arms' front points: the space's default


def arm_overrides(arm: str, warm_points: int) -> list[str]:
    """Space overrides of one warm-start arm (``warm_points``: ``warm_start.max_points``)."""
    if arm == "cold":
        return []
    return [f"warm_start.max_points={warm_points}"] + (["warm_start.max_observations=0"] if arm == "fronts" else [])


def search_arms(space, objectives, arms, warm_points, known, max_hv=None, lines: bool = False) -> dict[str, Any]:
    """Per arm, the mean HV of users 2-4 (``<arm>_hv``) and each of them (``<arm>_users``); with ``lines``,
    a line per finished trial (:class:`TrialLines`)."""
    out: dict[str, Any] = {}
    users = list(objectives)
    for arm in arms:
        hooks = TrialLines(arm, len(users), space.optimizer.trials) if lines else None
        with tempfile.TemporaryDirectory() as tmp:
            cohort = optimize_tasks(space.with_overrides(arm_overrides(arm, warm_points)), objectives,
                                    study_name="w", study_dir=tmp, warm_start=arm != "cold", known_objectives=known,
                                    hooks=hooks)
            hvs = [fixed_hv(cohort.studies[u], max_hv(u) if max_hv else 1.0) for u in users[1:]]
            out[f"{arm}_hv"], out[f"{arm}_users"] = statistics.fmean(hvs), hvs
    return out


def synthetic_warm(seed: int, per_user: int, optima: tuple[float, float] = DEFAULT_OPTIMA,
                   arms: tuple[str, ...] = ARMS, warm_points: int = WARM_POINTS) -> dict[str, Any]:
    """Users' optima ``centre +- spread`` (uniform): alike at the default, distinct personas at (0.5, 0.4)."""
    rng = random.Random(seed)
    centre, spread = optima
    users = {f"u{i}": SyntheticUser(centre + rng.uniform(-spread, spread)) for i in range(4)}
    space = parse_space(SYNTHETIC, "curves.yaml").with_optimizer(seed=seed, trials=per_user)
    return search_arms(space, users, arms, warm_points, {"cost": cost}, lambda u: users[u].max_hypervolume())


def embedded_warm(seed: int, per_user: int, train_steps: int | None = None, arms: tuple[str, ...] = ARMS,
                  warm_points: int = WARM_POINTS) -> dict[str, Any]:
    from runners.session import session_for
    from search.study.setup import user_setup
    from search.study.setup import bind_to_model
    from search.space import load_space
    from search.execution.trial_objective import TrialObjective

    overrides = ["data.users=4"] + training_overrides(train_steps)
    space, setup = bind_to_model(load_space("milp.yaml").with_overrides(overrides).with_optimizer(
        seed=seed, trials=per_user, init_trials=min(per_user, 4)))
    users = [s.user.user_id for s in session_for(setup).splits]
    objectives = {u: TrialObjective(user_setup(setup, u)) for u in users}
    return search_arms(space, objectives, arms, warm_points, objectives[users[0]].known_objectives(), lines=True)


# --------------------------------------------------------------------------- report
def _ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4g} ± {sd:.2g}"


def stopping_table(problem: str, rows: list[dict[str, float]]) -> str:
    """One row; the wall-clock saving over the rows that timed both arms (rows of older files did not)."""
    saved = [1 - r["stop_steps"] / r["full_steps"] for r in rows]
    kept = [r["stop_hv"] / r["full_hv"] if r["full_hv"] else math.nan for r in rows]
    timed = [1 - r["stop_seconds"] / r["full_seconds"] for r in rows if r.get("full_seconds")]
    return (f"| {problem} | {len(rows)} | {_ms([r['full_steps'] for r in rows])} | {_ms([r['stop_steps'] for r in rows])} | "
            f"{_ms(saved)} | {_ms([r['full_hv'] for r in rows])} | {_ms([r['stop_hv'] for r in rows])} | "
            f"{_ms(kept)} | {_ms([r['stop_pruned'] for r in rows])} | {_ms(timed) if timed else '–'} |")


def warm_table(problem: str, rows: list[dict[str, float]]) -> str:
    """One row: every arm's HV (mean ± sd over the seeds that ran it), learned - cold and fronts - cold
    (over the seeds that ran both), and in how many of those the learned warm start was ahead."""
    def arm(key: str) -> str:
        values = [r[f"{key}_hv"] for r in rows if f"{key}_hv" in r]
        return _ms(values) + ("" if len(values) == len(rows) else f" ({len(values)})") if values else "–"

    def gain(key: str) -> tuple[str, str]:
        both = [r for r in rows if f"{key}_hv" in r and "cold_hv" in r]
        if not both:
            return "–", "–"
        ahead = sum(r[f"{key}_hv"] > r["cold_hv"] for r in both)
        return _ms([r[f"{key}_hv"] - r["cold_hv"] for r in both]), f"{ahead}/{len(both)}"

    (learned, ahead), (fronts, _) = gain("learned"), gain("fronts")
    return (f"| {problem} | {len(rows)} | {arm('cold')} | {arm('fronts')} | {arm('learned')} | {fronts} | "
            f"{learned} | {ahead} |")


def warm_rows_by_seed(records: list[tuple[str, int | None, int, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per label, one per seed, from ``(label, warm_points, seed, row)`` records.

    Arms run in separate processes merge into one row per seed; the cold arm, which does not depend
    on the number of front points, joins the rows of every front-point setting of its label and seed;
    a row's ``warm_*`` keys (files written before the arms had names) are the ``fronts`` arm's.
    """
    cold: dict[tuple[str, int], dict[str, Any]] = {}
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    bases: dict[str, str] = {}
    for label, points, seed, row in records:
        row = {k.replace("warm_", "fronts_", 1) if k.startswith("warm_") else k: v for k, v in row.items()}
        cold.setdefault((label, seed), {}).update({k: v for k, v in row.items() if k.startswith("cold_")})
        full = _with_points(label, points)
        bases[full] = label
        rows.setdefault(full, {}).setdefault(seed, {}).update({k: v for k, v in row.items() if not k.startswith("cold_")})
    for full, seeds in rows.items():
        for seed, row in seeds.items():
            row.update(cold.get((bases[full], seed), {}))
    return {full: [seeds[s] for s in sorted(seeds)] for full, seeds in rows.items()}


def print_tables(stop_rows: dict[str, list[dict]], warm_rows: dict[str, list[dict]], per_user: int) -> None:
    """The markdown tables of the stopping and warm-start rows."""
    if stop_rows:
        print("\n| problem | seeds | steps, no stopping | steps, early stopping | steps saved | HV, no stopping | "
              "HV, early stopping | HV kept | trials stopped | time saved |\n|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(stopping_table(p, rows) for p, rows in stop_rows.items()))
    if warm_rows:
        print(f"\n| problem | seeds | HV@{per_user} cold | HV@{per_user} fronts | HV@{per_user} learned | "
              "fronts - cold | learned - cold | seeds learned ahead |\n|---|---|---|---|---|---|---|---|")
        print("\n".join(warm_table(p, rows) for p, rows in warm_rows.items()))


def summarise(path: Path) -> int:
    """Print the tables from a ``--out`` file alone (runs of several processes or days together)."""
    stop_rows: dict[str, list[dict]] = {}
    warm_records: list[tuple[str, int, dict[str, Any]]] = []
    per_user = set()
    for number, record in iter_jsonl(path, "search-cost results file"):
        missing = [key for key in ("problem", "part", "row") if not isinstance(record, dict) or key not in record]
        if missing:
            raise DataError(f"search-cost results file {path} line {number}: no {', '.join(missing)}; "
                            "pass a file written by --out")
        optima = tuple(record["optima"]) if record.get("optima") else None
        label = _label(record["problem"], record.get("train_steps"), optima, tuple(record.get("rule", ())))
        if record["part"] == "warm":
            trials = record.get("per_user", DEFAULT_PER_USER)
            if trials != DEFAULT_PER_USER:  # rows of other budgets must not merge with the default budget's
                label += f", {trials} trials per user"
            warm_records.append((label, record.get("warm_points"), record.get("seed", number), record["row"]))
            per_user.add(trials)
        else:
            stop_rows.setdefault(label, []).append(record["row"])
    if len(per_user) > 1:
        print(f"# {path}: warm-start rows of different trials per user {sorted(per_user)}", file=sys.stderr)
    print_tables(stop_rows, warm_rows_by_seed(warm_records), min(per_user, default=DEFAULT_PER_USER))
    return 0


def _label(problem: str, train_steps: int | None, optima: tuple[float, float] | None = None,
           rule: tuple[str, ...] = ()) -> str:
    """The table's name of a problem run with non-default settings."""
    parts = [problem]
    if train_steps is not None:
        parts.append(f"{train_steps} steps")
    parts.extend(item.removeprefix("early_stopping.") for item in rule)
    if optima not in (None, DEFAULT_OPTIMA):
        parts.append(f"optima {optima[0]:g} ± {optima[1]:g}")
    return ", ".join(parts)


def _with_points(label: str, warm_points: int | None) -> str:
    """A warm-start row's name: the label, and the front points (a file written before ``--warm-points``
    existed used 4)."""
    points = 4 if warm_points is None else warm_points
    return f"{label}, {points} front point{'' if points == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problems", nargs="+", default=["synthetic"], choices=["synthetic", "embedded"])
    parser.add_argument("--seeds", type=int, default=None, help="default 20 synthetic, 3 embedded")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--trials", type=int, default=None, help="trials of the stopping study (20 / 8)")
    parser.add_argument("--per-user", type=int, default=DEFAULT_PER_USER,
                        help=f"trials per user of the warm-start study ({DEFAULT_PER_USER})")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="embedded only: training steps per trial (default milp.yaml's 8)")
    parser.add_argument("--optima", type=float, nargs=2, default=DEFAULT_OPTIMA, metavar=("CENTRE", "SPREAD"),
                        help="synthetic warm start: users' optima uniform in CENTRE +- SPREAD "
                             "(0.7 0.08: alike; 0.5 0.4: distinct personas)")
    parser.add_argument("--parts", nargs="+", default=["stopping", "warm"], choices=["stopping", "warm"])
    parser.add_argument("--stop-set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="early_stopping.* overrides of the stopping arm's rule (e.g. early_stopping.margin=0.02); "
                             "the rows name them")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS,
                        help="warm-start arms: cold, fronts (earlier fronts' points alone), learned (and their "
                             "trials in the surrogate); arms run apart merge by seed in --summarise")
    parser.add_argument("--warm-points", type=int, default=WARM_POINTS,
                        help=f"warm_start.max_points of the warm arms ({WARM_POINTS}, the space's default): earlier "
                             "front points evaluated first")
    parser.add_argument("--out", type=Path, default=None, help="append each seed's row to this JSONL file")
    parser.add_argument("--summarise", type=Path, default=None, help="print the tables of a --out file and exit")
    args = parser.parse_args(argv)
    if args.summarise is not None:
        try:
            return summarise(args.summarise)
        except DataError as err:
            parser.error(str(err))
    rule = tuple(args.stop_set)
    wrong = [item for item in rule if not item.startswith("early_stopping.")]
    if wrong:
        parser.error(f"--stop-set {' '.join(wrong)}: give early_stopping.KEY=VALUE (e.g. early_stopping.margin=0.02)")
    try:  # the space's own check of keys and values, before any seed runs (both problems share the schema)
        parse_space(SYNTHETIC, "curves.yaml").with_overrides(list(rule))
    except SpaceError as err:
        parser.error(f"--stop-set: {err}")
    if args.train_steps is not None and "embedded" not in args.problems:
        parser.error("--train-steps sets the embedded model's training budget; add --problems embedded or drop it")
    stop_rows, warm_records = {}, []
    for problem in args.problems:
        seeds = args.seeds or (20 if problem == "synthetic" else 3)
        trials = args.trials or (20 if problem == "synthetic" else 8)
        steps = args.train_steps if problem == "embedded" else None
        extra = {"train_steps": steps} if problem == "embedded" else {}
        warm_extra = {**(extra if problem == "embedded" else {"optima": tuple(args.optima)}),
                      "arms": tuple(args.arms), "warm_points": args.warm_points}
        label = _label(problem, steps, rule=rule)
        warm_label = _label(problem, steps, warm_extra.get("optima"))
        stopping, warm = {"synthetic": (synthetic_stopping, synthetic_warm),
                          "embedded": (embedded_stopping, embedded_warm)}[problem]
        for seed in range(args.first_seed, args.first_seed + seeds):
            if "stopping" in args.parts:
                started = time.perf_counter()
                row = stopping(seed, trials, **extra, rule=rule)
                stop_rows.setdefault(label, []).append(row)
                _append(args.out, {"problem": problem, "part": "stopping", "seed": seed, "trials": trials,
                                   "train_steps": steps, "rule": list(rule),
                                   "seconds": time.perf_counter() - started, "row": row})
                print(f"{label} stopping seed {seed}: steps {row['full_steps']:.0f} -> {row['stop_steps']:.0f}, "
                      f"HV {row['full_hv']:.4g} -> {row['stop_hv']:.4g}, {row['stop_pruned']} pruned", flush=True)
            if "warm" in args.parts:
                started = time.perf_counter()
                row = warm(seed, args.per_user, **warm_extra)
                warm_records.append((warm_label, args.warm_points, seed, row))
                _append(args.out, {"problem": problem, "part": "warm", "seed": seed, "per_user": args.per_user,
                                   "train_steps": steps, "optima": warm_extra.get("optima"),
                                   "warm_points": args.warm_points, "arms": args.arms,
                                   "seconds": time.perf_counter() - started, "row": row})
                hvs = ", ".join(f"{arm} {row[arm + '_hv']:.4g}" for arm in args.arms)
                print(f"{_with_points(warm_label, args.warm_points)} warm-start seed {seed}: HV@{args.per_user} {hvs}",
                      flush=True)
    print_tables(stop_rows, warm_rows_by_seed(warm_records), args.per_user)
    return 0


def _append(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
