"""The early phase of per-user searches on a 30-layer space: what a warm start from the users before gives.

Users of ``bench/search_efficiency.py``'s ``mixed-large`` problem (30 layer flags of which 5 matter,
``count`` 1..32, five ranks, ``k`` 0..8, three retrievers; storage known) are searched one after
another with ``saas-nehvi``, as ``pers-search run --per-user`` does
(:func:`search.execution.per_user.optimize_tasks`), ``--users`` users of ``--per-user`` trials each. The
users of a seed are drawn from ``random.Random(seed)``:

- ``alike``: the same layers carry quality (flags 2, 9, 17, 25) and personalization (flag 13) for
  every user: which layers of a base model are worth memory is a property of the model and the
  task. Each user has its own level of quality and of personalization (added, uniform in +-0.03)
  and its own saturation (the capacity scale 48 x U(0.7, 1.3): the counts and ranks worth paying
  for differ).
- ``distinct``: the same, and each user's own four quality layers and personalization layer
  (five of the 30 drawn at random per user): what the earlier users found about layers is wrong
  for the next one.

Two arms: ``cold`` (every user from its own 10 quasi-random points) and ``learned`` (``--warm-start``:
the knee of the earlier users' common front first (``--warm-points N``: N points of that front, as 2
did before 2026-12-07), then the model (``--own-points N``: N quasi-random points of the user's own
before it, as 1 did before 2026-12-07), and every earlier
user's trials, summarised in ``warm_start.max_observations`` rows, in the surrogates with a
same-user input, :mod:`search.optimizers.user_transfer`). With those trials ``saas-nehvi``'s layer
screen has its 20 observations from the second user's first model-based suggestion on.

Each user's hypervolume after 3, 5, 10 and 20 trials is a fraction of that user's exact maximum
(``exact_front`` over what matters, as ``search_efficiency`` computes it), and each trial's
suggestion seconds are kept. Every finished (variant, arm, seed) is printed and appended to
``--out`` as one JSON line (per-user curves and seconds, and every trial's configuration, values
and origin, ``warm_start`` for the warm start's points: the record can be analysed afresh), runs already there are skipped, and the
tables (``--summarise FILE`` prints them from the file alone): users 2.. pooled over seeds (mean ±
standard error over (seed, user), the first user, whom no warm start reaches, its own column); per
user index, HV@3, HV@5, HV@10 over seeds and the median seconds of a model suggestion, cold pooled
over every user (cold users are exchangeable draws: none learns from another), with, for ``alike``
cohorts of 10 users or more, how many users from the 10th on reach 0.95 of their maximum within 5
trials, and the run's CPU seconds per model suggestion (the process's CPU time over its model
suggestions: what a suggestion costs a core of its own, whatever else the machine runs); and
learned minus cold per (seed, user) where a seed ran both arms, pooled and per user index. ``--optimizer`` and
``--max-observations`` change the users' optimiser and the learned arm's budget of rows (both are
part of a run's identity in the file), ``--warm-points`` and ``--own-points`` the learned arm's
``warm_start.max_points`` and ``warm_start.own_points`` (the space's default; also part of it).
Cold runs of 10 trials or fewer never fit a model (their start is 10 points), so they take seconds; run them with ``--arms cold`` and more seeds.

Usage::

    python bench/per_user_early.py --seeds 3                       # alike, both arms (about 20 minutes a seed)
    python bench/per_user_early.py --variants distinct --arms learned --seeds 1 --first-seed 0
    python bench/per_user_early.py --variants alike distinct --users 20 --per-user 10 --seeds 3   # the cohort
    python bench/per_user_early.py --summarise per_user_early.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_efficiency import MIXED_LARGE, MixedShape, enumerate_relevant, exact_front, mixed_values, storage  # noqa: E402
from search.pareto import hypervolume  # noqa: E402
from search.execution.per_user import optimize_tasks  # noqa: E402
from search.space import Space, WarmStartSettings, parse_space  # noqa: E402
from search.study.study import ORIGIN_ATTR  # noqa: E402

VARIANTS = ("alike", "distinct")
ARMS = ("cold", "learned")
CHECKPOINTS = (5, 10, 20)
INDEX_CHECKPOINTS = (3, 5, 10)  # the per-user-index table's columns
ALIKE_FROM, TARGET = 10, 0.95  # target: alike users from the 10th on reach 0.95 of their maximum within 5 trials
DEFAULT_OUT = "per_user_early.jsonl"
NUTS = (64, 32, 4)  # as bench/search_efficiency.py
INIT = 10
WARM_POINTS = WarmStartSettings().max_points  # the earlier users' front points a warm user runs first
OWN_POINTS = WarmStartSettings().own_points  # quasi-random points of a warm user's own
LEGACY_WARM_POINTS, LEGACY_OWN_POINTS = 2, 1  # what records written before the bench kept those fields ran
OPTIMIZER = "saas-nehvi"
DEFAULT_MAX_OBSERVATIONS = WarmStartSettings().max_observations


class MixedUser:
    """One user's objective: a mixed problem's values with the user's own levels added (picklable)."""

    def __init__(self, shape: MixedShape, quality_shift: float, personal_shift: float) -> None:
        self.shape, self.quality_shift, self.personal_shift = shape, quality_shift, personal_shift

    def __call__(self, config: dict[str, Any], report: Any = None) -> dict[str, float]:
        values = mixed_values(self.shape, config)
        values["quality"] += self.quality_shift
        values["personal"] += self.personal_shift
        return values

    def max_hypervolume(self, space: Space, ref: dict[str, float]) -> float:
        """The user's exact best hypervolume (the front of what matters, enumerated)."""
        return hypervolume(exact_front(self(c) for c in enumerate_relevant(self.shape)), space.objectives, ref)


def draw_users(variant: str, seed: int, count: int) -> dict[str, MixedUser]:
    """The ``count`` users of a seed (see the module docstring); the user draws of ``alike`` come first
    for each user, so the first user of both variants has the same level and saturation."""
    rng = random.Random(seed)
    users = {}
    for i in range(count):
        scale, dq, dp = 48.0 * rng.uniform(0.7, 1.3), rng.uniform(-0.03, 0.03), rng.uniform(-0.03, 0.03)
        shape = dataclasses.replace(MIXED_LARGE, scale=scale)
        if variant == "distinct":
            *quality, personal = rng.sample(range(MIXED_LARGE.flags), 5)
            shape = dataclasses.replace(shape, quality_flags=tuple(sorted(quality)), personal_flag=personal)
        users[f"u{i}"] = MixedUser(shape, dq, dp)
    return users


def base_space() -> tuple[Space, dict[str, float]]:
    """The ``mixed-large`` space and its reference point."""
    space = parse_space(MIXED_LARGE.space_text(), MIXED_LARGE.name)
    return space, dict(zip(("quality", "personal", "storage"), MIXED_LARGE.ref_point))


def search_users(users: dict[str, MixedUser], arm: str, seed: int, per_user: int, study_dir: str | Path,
                 nuts: tuple[int, int, int] = NUTS, optimizer: str = OPTIMIZER, max_observations: int | None = None,
                 warm_points: int = WARM_POINTS, own_points: int = OWN_POINTS):
    """One cohort: the users searched in order, cold or warm-started (``arm``); returns the cohort.

    ``max_observations`` sets ``warm_start.max_observations`` (None: the space's default),
    ``warm_points`` ``warm_start.max_points``, ``own_points`` ``warm_start.own_points``.
    """
    space, ref = base_space()
    warmup, samples, thinning = nuts
    space = space.with_optimizer(name=optimizer, seed=seed, trials=per_user, init_trials=INIT, ref_point=ref)
    space = space.with_overrides([f"optimizer.nuts.warmup={warmup}", f"optimizer.nuts.samples={samples}",
                                  f"optimizer.nuts.thinning={thinning}", f"warm_start.max_points={warm_points}",
                                  f"warm_start.own_points={own_points}"]
                                 + ([] if max_observations is None else
                                    [f"warm_start.max_observations={max_observations}"]))
    return optimize_tasks(space, users, study_name="cohort", study_dir=study_dir, warm_start=arm == "learned",
                          known_objectives={"storage": storage})


def curves(cohort, users: dict[str, MixedUser]) -> dict[str, list[float]]:
    """Per user, the hypervolume fraction after each of its trials."""
    space, ref = base_space()
    out = {}
    for name, user in users.items():
        best = user.max_hypervolume(space, ref)
        values = [t.values for t in cohort.studies[name].trials]
        out[name] = [hypervolume(values[:k], space.objectives, ref) / best for k in range(1, len(values) + 1)]
    return out


def suggestion_seconds(cohort, users: dict[str, MixedUser]) -> dict[str, list[float | None]]:
    """Per user, the seconds its optimiser took for each trial's suggestion (None for given points)."""
    return {name: [t.suggest_seconds for t in cohort.studies[name].trials] for name in users}


def run_one(variant: str, arm: str, seed: int, users: int, per_user: int,
            nuts: tuple[int, int, int] = NUTS, optimizer: str = OPTIMIZER,
            max_observations: int | None = None, warm_points: int = WARM_POINTS,
            own_points: int = OWN_POINTS) -> dict[str, Any]:
    """One (variant, arm, seed): the record appended to the results file."""
    drawn = draw_users(variant, seed, users)
    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cohort = search_users(drawn, arm, seed, per_user, tmp, nuts, optimizer, max_observations, warm_points,
                              own_points)
        hv, seconds = curves(cohort, drawn), suggestion_seconds(cohort, drawn)
        trials = {name: [[t.config, t.values, t.user_attrs.get(ORIGIN_ATTR)] for t in cohort.studies[name].trials]
                  for name in drawn}
        budget = cohort.studies["u0"].space.warm_start.max_observations
    return {"variant": variant, "arm": arm, "seed": seed, "users": users, "per_user": per_user, "nuts": list(nuts),
            "optimizer": optimizer, "max_observations": budget, "warm_points": None if arm == "cold" else warm_points,
            "own_points": None if arm == "cold" else own_points,
            "trials": trials, "hv": hv, "suggest_seconds": seconds,
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu}


def run_key(variant: str, arm: str, seed: int, users: int, per_user: int, nuts: Sequence[int],
            optimizer: str = OPTIMIZER, max_observations: int | None = None, warm_points: int = WARM_POINTS,
            own_points: int = OWN_POINTS) -> tuple:
    """A run's identity in the results file (``max_observations`` None: the space's default; the warm
    start's points last, None for the cold arm)."""
    budget = DEFAULT_MAX_OBSERVATIONS if max_observations is None else max_observations
    start = None if arm == "cold" else (warm_points, own_points)
    return (variant, arm, seed, users, per_user, tuple(nuts), optimizer, budget, start)


def key(record: dict[str, Any]) -> tuple:
    """The identity of a record (:func:`run_key`; records of before the pool: ``saas-nehvi``, 24 rows)."""
    return run_key(record["variant"], record["arm"], record["seed"], record["users"], record["per_user"],
                   record["nuts"], record.get("optimizer", OPTIMIZER), record.get("max_observations", 24),
                   record.get("warm_points") or LEGACY_WARM_POINTS,
                   LEGACY_OWN_POINTS if record.get("own_points") is None else record["own_points"])


def load_records(path: Path) -> list[dict[str, Any]]:
    """The records of a results file (none when it does not exist)."""
    if not path.exists():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key(record), record["hv"]["u0"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise SystemExit(f"{path} line {number}: not a record of bench/per_user_early.py ({err}); "
                             "pass a file written by --out") from None
        records.append(record)
    return records


def marks(trials: int) -> list[int]:
    """The checkpoints a run of ``trials`` per user reaches, and its last trial."""
    reached = [k for k in CHECKPOINTS if k <= trials]
    return reached if trials in reached else reached + [trials]


def _at(curve: list[float], k: int) -> float | None:
    return curve[k - 1] if len(curve) >= k else None


def _mean_se(values: list[float]) -> str:
    if not values:
        return "–"
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {se:.3f}"


def arm_label(record: dict[str, Any]) -> str:
    """The arm as the tables name it: the optimiser when not the default, the learned arm's budget of rows,
    and its front points and own quasi-random points when not the defaults."""
    budget, start = key(record)[-2:]
    if start is None:
        label = record["arm"]
    else:
        points, own = start
        label = (f"{record['arm']} ({budget} rows" + ("" if points == WARM_POINTS else f", {points} front points")
                 + ("" if own == OWN_POINTS else f", {own} own point{'' if own == 1 else 's'}") + ")")
    optimizer = record.get("optimizer", OPTIMIZER)
    return label if optimizer == OPTIMIZER else f"{label}, {optimizer}"


def _model_seconds(record: dict[str, Any], name: str) -> list[float]:
    """A user's suggestion seconds of the trials its model suggested (past its start)."""
    if record["arm"] == "cold" or name == "u0":
        start = INIT
    else:
        points, own = key(record)[-1]
        start = WarmStartSettings(max_points=points, own_points=own).start_trials()
    return [s for s in record.get("suggest_seconds", {}).get(name, [])[start:] if s is not None]


def index_table(records: list[dict[str, Any]]) -> str:
    """Per (variant, arm), per user index: HV@3, HV@5, HV@10 (mean ± SE over seeds) and seconds per suggestion.

    Cold users are exchangeable draws (no user learns from another), so cold is one row pooled over
    every user and seed; a learned user index is compared with it. The last line of a learned arm
    of alike users: users from the 10th on, HV@5 and how many (seed, user) reach 0.95 there.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["variant"], arm_label(r)), []).append(r)
    blocks = []
    for (variant, label), runs in sorted(groups.items()):
        head = (f"{variant}, {label}:\n| user | seeds | " + " | ".join(f"HV@{k}" for k in INDEX_CHECKPOINTS)
                + " | s / model suggestion |\n|---|---|" + "---|" * len(INDEX_CHECKPOINTS) + "---|")
        if runs[0]["arm"] == "cold":
            curves = [c for r in runs for c in r["hv"].values()]
            seconds = [s for r in runs for name in r["hv"] for s in _model_seconds(r, name)]
            rows = [_index_row("cold, pooled", len(runs), curves, seconds)]
        else:
            count = max(r["users"] for r in runs)
            rows = []
            for i in range(count):
                have = [r for r in runs if f"u{i}" in r["hv"]]
                seconds = [s for r in have for s in _model_seconds(r, f"u{i}")]
                rows.append(_index_row(str(i + 1), len(have), [r["hv"][f"u{i}"] for r in have], seconds))
            if variant == "alike" and count >= ALIKE_FROM:
                later = [_at(r["hv"][f"u{i}"], 5) for r in runs for i in range(ALIKE_FROM - 1, r["users"])]
                later = [v for v in later if v is not None]
                reached = sum(v >= TARGET for v in later)
                rows.append(f"| {ALIKE_FROM}.. | pairs {len(later)} | | {_mean_se(later)} | | "
                            f"{reached}/{len(later)} at >= {TARGET} by 5 |")
        cpu = [r["cpu_seconds"] / n for r in runs if "cpu_seconds" in r
               and (n := sum(len(_model_seconds(r, name)) for name in r["hv"]))]
        if cpu:  # the process's CPU time, whatever else the machine runs: a quiet core's seconds, at most
            rows.append(f"\nCPU seconds of the run per model suggestion: {_mean_se(cpu)} ({len(cpu)} runs)")
        blocks.append(head + "\n" + "\n".join(rows))
    return "\n\n".join(blocks)


def _index_row(name: str, seeds: int, curves: list[list[float]], seconds: list[float]) -> str:
    cells = [_mean_se([v for c in curves if (v := _at(c, k)) is not None]) for k in INDEX_CHECKPOINTS]
    time_cell = f"{statistics.median(seconds):.1f} (max {max(seconds):.1f})" if seconds else "–"
    return f"| {name} | {seeds} | " + " | ".join(cells) + f" | {time_cell} |"


def summary_table(records: list[dict[str, Any]]) -> str:
    """Users 2.. pooled over seeds per (variant, arm): HV at the checkpoints, mean ± SE over (seed, user)."""
    at = marks(max((r["per_user"] for r in records), default=0))
    lines = ["| users | arm | seeds | users 2.. (n) | " + " | ".join(f"HV@{k} users 2.." for k in at)
             + f" | HV@{at[-1]} first user |", "|---|---|---|---|" + "---|" * len(at) + "---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["variant"], arm_label(r)), []).append(r)
    for (variant, arm), runs in sorted(groups.items(), key=lambda kv: (VARIANTS.index(kv[0][0]), kv[0][1])):
        later = [curve for r in runs for name, curve in r["hv"].items() if name != "u0"]
        cells = [_mean_se([v for c in later if (v := _at(c, k)) is not None]) for k in at]
        first = _mean_se([v for r in runs if (v := _at(r["hv"]["u0"], at[-1])) is not None])
        lines.append(f"| {variant} | {arm} | {len(runs)} | {len(later)} | " + " | ".join(cells) + f" | {first} |")
    return "\n".join(lines)


def cold_pairs(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]]:
    """Per (variant, learned arm label), each learned run with the cold run of the same seed and settings.

    A cold run of more trials per user pairs too: its first trials are the same quasi-random points a
    shorter one would run (the checkpoints compared are those both reached).
    """
    def settings(record: dict[str, Any]) -> tuple:  # the key without the arm, the trials and the points
        variant, _, seed, users, _, nuts, optimizer, budget, _ = key(record)
        return variant, seed, users, nuts, optimizer, budget

    cold: dict[tuple, dict[str, Any]] = {}
    for r in records:
        kept = cold.get(settings(r))
        if r["arm"] == "cold" and (kept is None or kept["per_user"] < r["per_user"]):
            cold[settings(r)] = r
    groups: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in records:
        if r["arm"] == "learned" and settings(r) in cold:
            groups.setdefault((r["variant"], arm_label(r)), []).append((r, cold[settings(r)]))
    return dict(sorted(groups.items(), key=lambda item: (VARIANTS.index(item[0][0]), item[0][1])))


def gain_table(records: list[dict[str, Any]]) -> str:
    """Learned minus cold per (seed, user 2..) run in both arms: mean ± SE at the checkpoints, and in how
    many pairs the warm start was ahead at the last one (empty when no seed ran both arms)."""
    lines, groups = [], cold_pairs(records)
    at = marks(min((min(a["per_user"], b["per_user"]) for runs in groups.values() for a, b in runs), default=0))
    for (variant, label), runs in groups.items():
        pairs = [(a["hv"][name], b["hv"][name]) for a, b in runs for name in a["hv"] if name != "u0" and name in b["hv"]]
        pairs = [(a, b) for a, b in pairs if len(a) >= at[-1] and len(b) >= at[-1]]
        if not pairs:
            continue
        cells = [_mean_se([a[k - 1] - b[k - 1] for a, b in pairs]) for k in at]
        ahead = sum(a[at[-1] - 1] > b[at[-1] - 1] for a, b in pairs)
        lines.append(f"| {variant} | {label} | {len(pairs)} | " + " | ".join(cells) + f" | {ahead}/{len(pairs)} |")
    if not lines:
        return ""
    head = ("| users | arm | pairs (seed, user) | " + " | ".join(f"learned - cold HV@{k}" for k in at)
            + f" | learned ahead at {at[-1]} |\n|---|---|---|" + "---|" * len(at) + "---|\n")
    return head + "\n".join(lines)


def paired_index_table(records: list[dict[str, Any]], most: int = 5) -> str:
    """Per learned arm and user index (2..), learned minus cold HV@``most`` (or at the last trial both
    ran, when fewer), each learned user paired with the cold search of the same seed and index (the
    same user drawn): mean ± SE over the seeds that ran both (empty when none did)."""
    blocks = []
    for (variant, label), pairs in cold_pairs(records).items():
        at = min([most] + [min(a["per_user"], b["per_user"]) for a, b in pairs])
        lines = [f"{variant}, {label} minus cold, paired by seed and user:",
                 f"| user | seeds | learned - cold HV@{at} |", "|---|---|---|"]
        for i in range(1, max(len(learned["hv"]) for learned, _ in pairs)):
            name = f"u{i}"
            diffs = [a - b for learned, cold in pairs if name in learned["hv"] and name in cold["hv"]
                     and (a := _at(learned["hv"][name], at)) is not None and (b := _at(cold["hv"][name], at)) is not None]
            if diffs:
                lines.append(f"| {i + 1} | {len(diffs)} | {_mean_se(diffs)} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def progress_line(record: dict[str, Any]) -> str:
    """One line per finished run: every user's HV at the checkpoints it reached."""
    users = "; ".join(f"{name} " + " ".join(f"HV@{k} {c[k - 1]:.3f}" for k in marks(len(c)))
                      for name, c in record["hv"].items())
    return f"{record['variant']} {record['arm']} seed {record['seed']}: {users} ({record['seconds']:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=["alike"], choices=VARIANTS)
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--users", type=int, default=3, help="users per cohort (default 3)")
    p.add_argument("--per-user", type=int, default=20, help="trials per user (default 20)")
    p.add_argument("--nuts", type=int, nargs=3, default=list(NUTS), metavar=("WARMUP", "SAMPLES", "THINNING"))
    p.add_argument("--optimizer", default=OPTIMIZER, help=f"the users' optimiser (default {OPTIMIZER})")
    p.add_argument("--max-observations", type=int, default=None,
                   help=f"warm_start.max_observations of the learned arm (default the space's, {DEFAULT_MAX_OBSERVATIONS})")
    p.add_argument("--warm-points", type=int, default=WARM_POINTS,
                   help=f"warm_start.max_points of the learned arm (default {WARM_POINTS})")
    p.add_argument("--own-points", type=int, default=OWN_POINTS,
                   help=f"warm_start.own_points of the learned arm (default the space's, {OWN_POINTS})")
    p.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="results file, appended to and resumed from")
    p.add_argument("--summarise", type=Path, help="print the table of a results file and exit")
    args = p.parse_args(argv)
    if args.summarise:
        print_tables(load_records(args.summarise))
        return 0
    if args.users < 2:
        p.error("--users: give at least 2 (a warm start acts from the second user on)")
    done = {key(r) for r in load_records(args.out)}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for variant in args.variants:
            for arm in args.arms:
                if run_key(variant, arm, seed, args.users, args.per_user, args.nuts, args.optimizer,
                           args.max_observations, args.warm_points, args.own_points) in done:
                    continue
                record = run_one(variant, arm, seed, args.users, args.per_user, tuple(args.nuts), args.optimizer,
                                 args.max_observations, args.warm_points, args.own_points)
                with args.out.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
                print(progress_line(record), flush=True)
    print_tables(load_records(args.out))
    return 0


def print_tables(records: list[dict[str, Any]]) -> None:
    """The summary table and, where seeds ran both arms, the paired gains."""
    print(summary_table(records))
    print("\n" + index_table(records))
    gains = gain_table(records)
    if gains:
        print("\n" + gains)
    paired = paired_index_table(records)
    if paired:
        print("\n" + paired)


if __name__ == "__main__":
    sys.exit(main())
