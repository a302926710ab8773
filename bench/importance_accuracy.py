"""How many trials parameter importances need: `pers-search importance` on a problem whose answer is known.

The benchmark's ``mixed`` problem (``bench/search_efficiency.py``: 30 layer flags of which 3 carry
quality and 1 personalization, count, rank, k, retriever) says which parameter drives which
objective: quality is driven by which layers are on (flags 3, 7, 20), count and rank, never by k
or the retriever; personalization by k, the retriever, count and flag 12, never by rank; storage
(count x rank x layers on) by count, rank and how many layers are on, never by k, the retriever
or which layers. For n trials drawn at random (a study's quasi-random start; BO trials are
clustered, which only makes the question harder), ``search.results.importance.compute`` ranks the rows,
and the benchmark scores, per objective, the share of (driving, non-driving) row pairs it orders
right (1.0 is every driver above every non-driver, 0.5 a coin), and for quality the share of the
three quality layers among the three top individual layers. Mean ± standard error over seeds.

    python bench/importance_accuracy.py --trials 10 20 40 --seeds 10
    python bench/importance_accuracy.py --evaluator ped-anova        # the same with PED-ANOVA per objective
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search.encoding import canonical  # noqa: E402
from search.results.importance import HOW_MANY, WHICH, _compute  # noqa: E402
from search.space import parse_space  # noqa: E402
from search.study.study import TrialRecord, TrialState  # noqa: E402
from search_efficiency import MIXED, mixed_values  # noqa: E402

DRIVERS = {
    "quality": ({"layers" + WHICH, "count", "rank"}, {"k", "retriever"}),
    "personal": ({"k", "retriever", "count", "layers" + WHICH}, {"rank"}),
    "storage": ({"count", "rank", "layers" + HOW_MANY}, {"k", "retriever", "layers" + WHICH}),
}


def random_trials(n: int, seed: int) -> tuple[object, list[TrialRecord]]:
    """``n`` random configurations of the mixed problem with their (exact) objectives."""
    import random

    space = parse_space(MIXED.space_text(), "mixed.yaml")
    rng = random.Random(seed)
    trials = []
    for number in range(n):
        config = canonical(space, {
            "layers": [rng.randint(0, 1) for _ in range(MIXED.flags)], "count": rng.randint(*MIXED.counts),
            "rank": rng.choice(MIXED.ranks), "k": rng.randint(0, MIXED.ks),
            "retriever": rng.choice([name for name, _ in MIXED.retrievers])})
        trials.append(TrialRecord(number, config, TrialState.COMPLETED, mixed_values(MIXED, config)))
    return space, trials


def pair_accuracy(rows: dict[str, float], drivers: set[str], others: set[str]) -> float:
    """The share of (driver, non-driver) pairs with the driver ranked above (ties count half)."""
    pairs = [(d, o) for d in drivers for o in others]
    return sum(1.0 if rows[d] > rows[o] else 0.5 if rows[d] == rows[o] else 0.0 for d, o in pairs) / len(pairs)


def score(n: int, seed: int, evaluator: str) -> dict[str, float]:
    space, trials = random_trials(n, seed)
    started = time.perf_counter()
    found = _compute("mixed", space, trials, seed, 3, front=False)
    if evaluator == "ped-anova":
        found = _ped_anova(space, trials)
    out = {"seconds": time.perf_counter() - started}
    for metric, (drivers, others) in DRIVERS.items():
        out[metric] = pair_accuracy(found.groups[metric], drivers, others)
    top = {i for i, _ in found.layers["quality"]}
    out["quality layers"] = len(top & set(MIXED.quality_flags)) / len(MIXED.quality_flags)
    return out


def _ped_anova(space, trials):
    """The same rows with PED-ANOVA per objective (its top-10% question) instead of fANOVA."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    from search.results.importance import Importance, _distributions, _optuna_study, grouped, top_flags

    study = _optuna_study(space, trials)
    params = list(_distributions(space))
    columns = {}
    for index, (metric, direction) in enumerate(space.objectives.items()):
        sign = -1.0 if direction == "max" else 1.0
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(), params=params,
                                      target=lambda t, i=index, s=sign: s * t.values[i])
        columns[metric] = {p: float(found.get(p, 0.0)) for p in params}
    return Importance("mixed", len(trials), columns, {c: grouped(space, v) for c, v in columns.items()},
                      {c: top_flags(space, v, 3) for c, v in columns.items()}, "ped-anova")


def mean_se(values: list[float]) -> str:
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return f"{mean:.2f} ± {se:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--evaluator", choices=["fanova", "ped-anova"], default="fanova")
    args = parser.parse_args(argv)
    columns = [*DRIVERS, "quality layers", "seconds"]
    print(f"# importance accuracy on the mixed problem ({args.evaluator}), random trials, {args.seeds} seeds; "
          "pair accuracy per objective (1 = every driver above every non-driver, 0.5 = chance), mean ± se")
    print("| trials | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for n in args.trials:
        scores = [score(n, seed, args.evaluator) for seed in range(args.seeds)]
        print(f"| {n} | " + " | ".join(mean_se([s[c] for s in scores]) for c in columns) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
