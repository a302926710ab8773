"""Search efficiency: hypervolume reached per evaluation by each optimiser, in one run.

Problems:

- ``dtlz2``: BoTorch's DTLZ2, 6 inputs, 3 objectives (all minimised), reference point 1.1 each;
  the best hypervolume is known exactly (``DTLZ2.max_hv``).
- ``mixed``: a personalization-shaped problem of our own: 30 layer flags, an int ``count`` in
  0..8, a numeric choice ``rank`` in {4, 8, 16, 32} (active when count > 0), an int ``k`` in 0..8
  and a categorical ``retriever`` (active when k > 0): 34 dimensions of which 8 matter (flags 3,
  7, 12 and 20, count, rank, k, retriever). Objectives: ``quality`` (max), ``personal`` (max)
  and ``storage`` (min, a known deterministic function: count x rank x layers on x 1000). The
  best hypervolume is estimated from an enumeration of the dimensions that matter (other flags
  off) joined with every point any optimiser found.

For each problem, optimiser and seed, :func:`search.api.optimize` runs ``--evals`` evaluations
(the first ``--init`` quasi-random); the table reports hypervolume after half and all of the
evaluations as a fraction of the best, and the mean seconds per model-based suggestion.

Usage: ``python bench/search_efficiency.py [--seeds 3] [--evals 40] [--quick]``
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.api import optimize  # noqa: E402
from search.optimizers import AcquisitionOptions  # noqa: E402
from search.pareto import hypervolume  # noqa: E402
from search.space import Space, parse_space  # noqa: E402

OPTIMIZERS = ["saas-nehvi", "gp-nehvi", "optuna-tpe", "optuna-nsga2", "random"]
IMPORTANT = (3, 7, 12, 20)
RETRIEVAL = {"bm25": 1.0, "dense": 0.9, "recency": 0.5, "random": 0.3}


@dataclass
class Problem:
    """A benchmark problem: a space, the function, known objectives, reference point and best HV."""

    name: str
    space: Space
    function: Callable[[dict[str, Any]], dict[str, float]]
    known: dict[str, Callable[[dict[str, Any]], float]]
    ref_point: dict[str, float]
    best_points: list[dict[str, float]]


def dtlz2_problem() -> Problem:
    """DTLZ2 with 6 inputs and 3 objectives."""
    import torch
    from botorch.test_functions.multi_objective import DTLZ2

    fn = DTLZ2(dim=6, num_objectives=3)
    params = "\n".join(f"  x{i}: {{type: float, low: 0.0, high: 1.0, default: 0.5}}" for i in range(6))
    space = parse_space(f"name: dtlz2\nobjectives: {{f1: min, f2: min, f3: min}}\nparameters:\n{params}\n", "dtlz2")

    def evaluate(config: dict[str, Any]) -> dict[str, float]:
        x = torch.tensor([[config[f"x{i}"] for i in range(6)]], dtype=torch.float64)
        return dict(zip(("f1", "f2", "f3"), fn(x)[0].tolist()))

    ref = {f"f{i}": 1.1 for i in (1, 2, 3)}
    return Problem("dtlz2", space, evaluate, {}, ref, [{"hv": float(fn.max_hv)}])


MIXED = """
name: mixed
objectives: {quality: max, personal: max, storage: min}
parameters:
  layers: {type: layer_mask, size: 30, default: none}
  count: {type: int, low: 0, high: 8, default: 0}
  rank: {type: choice, values: [4, 8, 16, 32], default: 8, when: "count > 0"}
  k: {type: int, low: 0, high: 8, default: 0}
  retriever: {type: choice, values: [bm25, dense, recency, random], default: bm25, when: "k > 0"}
"""


def storage(config: dict[str, Any]) -> float:
    """Bytes of the per-user adapters: count x rank x layers on x 1000."""
    return 1000.0 * config["count"] * config["rank"] * sum(config["layers"])


def mixed_function(config: dict[str, Any]) -> dict[str, float]:
    """Quality rises with adapter capacity at layers 3, 7, 20; personal with k, the retriever and layer 12."""
    layers = config["layers"]
    on = sum(layers[i] for i in IMPORTANT[:2] + IMPORTANT[3:])
    others = (sum(layers) - on - layers[12]) / 26
    capacity = config["count"] * math.log2(config["rank"])
    quality = 0.2 + 0.6 * (1 - math.exp(-capacity / 8)) * on / 3 + 0.02 * others
    personal = 0.1 + 0.3 * (1 - math.exp(-config["k"] / 3)) * RETRIEVAL[config["retriever"]]
    personal += 0.15 * layers[12] * min(config["count"], 2) / 2
    return {"quality": quality, "personal": personal, "storage": storage(config)}


def mixed_problem() -> Problem:
    """The mixed 34-dimensional problem, with its best front estimated by enumeration."""
    space = parse_space(MIXED, "mixed")
    points = []
    for mask in itertools.product((0, 1), repeat=len(IMPORTANT)):
        layers = [0] * 30
        for i, bit in zip(IMPORTANT, mask):
            layers[i] = bit
        for count, rank, k, retriever in itertools.product(range(9), (4, 8, 16, 32), range(9), RETRIEVAL):
            config = {"layers": layers, "count": count, "rank": rank, "k": k, "retriever": retriever}
            points.append(mixed_function(config))
    ref = {"quality": 0.2, "personal": 0.1, "storage": 8.0e6}
    return Problem("mixed", space, mixed_function, {"storage": storage}, ref, points)


PROBLEMS = {"dtlz2": dtlz2_problem, "mixed": mixed_problem}


def run_task(task: tuple[str, str, int, argparse.Namespace]) -> tuple[list[dict], list[float]]:
    """:func:`run_one` by problem name (for worker processes: problems hold closures)."""
    problem, name, seed, args = task
    return run_one(PROBLEMS[problem](), name, seed, args)


def run_all(args: argparse.Namespace) -> dict[tuple[str, str, int], tuple[list[dict], list[float]]]:
    """Every problem x optimiser x seed, in ``--jobs`` worker processes (slowest optimisers first)."""
    keys = [(p, n, s) for n in args.optimizers for s in range(args.seeds) for p in args.problems]
    tasks = [(p, n, s, args) for p, n, s in keys]
    if args.jobs <= 1:
        return {key: run_task(task) for key, task in zip(keys, tasks)}
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    # One XLA thread per worker (NUTS), like the one torch thread each suggestion uses.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(keys, pool.map(run_task, tasks)))


def run_one(problem: Problem, name: str, seed: int, args: argparse.Namespace) -> tuple[list[dict], list[float]]:
    """Run one study; return the values in evaluation order and the model-based suggestion times.

    The optimiser is given the problem's reference point, the one the table's hypervolume uses.
    """
    space = problem.space.with_optimizer(init_trials=args.init, ref_point=problem.ref_point)
    if args.nuts:
        warmup, samples, thinning = args.nuts
        space = space.with_overrides(
            [f"optimizer.nuts.warmup={warmup}", f"optimizer.nuts.samples={samples}", f"optimizer.nuts.thinning={thinning}"]
        )
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optimize(
            space, problem.function, optimizer=name, trials=args.evals, seed=seed, study_dir=tmp,
            known_objectives=problem.known, options=args.options,
        )
    values = [t.values for t in study.trials]
    times = [t.suggest_seconds for t in study.trials[args.init :] if t.suggest_seconds is not None]
    mean = statistics.mean(times) if times else float("nan")
    hv = [hypervolume(values[:k], problem.space.objectives, problem.ref_point) for k in (args.evals // 2, args.evals)]
    print(f"  {problem.name} {name} seed {seed}: mean {mean:.2f} s per suggestion, "
          f"raw HV {hv[0]:.6g} / {hv[1]:.6g}", file=sys.stderr, flush=True)
    return values, times


def suggestion_timing(dims: int, observations: int, args: argparse.Namespace) -> list[float]:
    """Seconds of consecutive ``saas-nehvi`` suggestions at ``dims`` dimensions, growing from ``observations``.

    The space is the mixed problem with ``dims - 4`` layer flags; the first suggestion includes
    JAX compilation (unless the persistent cache already holds it), the next ones reuse it.
    """
    import random

    from search.optimizers import make_optimizer
    from search.optimizers.base import Observation

    flags = dims - 4
    text = MIXED.replace("size: 30", f"size: {flags}")
    warmup, samples, thinning = args.nuts
    space = parse_space(text, "timing").with_overrides(
        [f"optimizer.nuts.warmup={warmup}", f"optimizer.nuts.samples={samples}", f"optimizer.nuts.thinning={thinning}"]
    ).with_optimizer(init_trials=10)
    rng = random.Random(0)
    history = []
    for _ in range(observations):
        config = {"layers": [rng.randint(0, 1) for _ in range(flags)], "count": rng.randint(0, 8),
                  "rank": rng.choice([4, 8, 16, 32]), "k": rng.randint(0, 8),
                  "retriever": rng.choice(list(RETRIEVAL))}
        history.append(Observation(config, mixed_function({**config, "layers": config["layers"][:30]})))
    optimizer = make_optimizer("saas-nehvi", space, seed=0, known_objectives={"storage": storage}, options=args.options)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        (config,) = optimizer.suggest(history, 1)
        seconds.append(time.perf_counter() - start)
        history.append(Observation(config, mixed_function({**config, "layers": config["layers"][:30]})))
    return seconds


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run every problem x optimiser x seed, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per optimiser (default 3)")
    parser.add_argument("--evals", type=int, default=40, help="evaluations per run (default 40)")
    parser.add_argument("--init", type=int, default=10, help="quasi-random initial evaluations (default 10)")
    parser.add_argument("--problems", nargs="+", default=["dtlz2", "mixed"], choices=["dtlz2", "mixed"])
    parser.add_argument("--timing", type=int, nargs=2, metavar=("DIMS", "OBS"), default=[40, 50],
                        help="also time saas-nehvi suggestions at DIMS dimensions from OBS observations (0 0: skip)")
    parser.add_argument("--optimizers", nargs="+", default=OPTIMIZERS)
    parser.add_argument("--nuts", type=int, nargs=3, metavar=("WARMUP", "SAMPLES", "THINNING"), default=[64, 32, 4])
    parser.add_argument("--jobs", type=int, default=1,
                        help="worker processes for the runs (each suggests on one thread; default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 8 evals, 4 init, tiny NUTS and acquisition")
    args = parser.parse_args(argv)
    args.options = AcquisitionOptions()
    if args.quick:
        args.seeds, args.evals, args.init, args.nuts = 1, 8, 4, [16, 8, 2]
        args.options = AcquisitionOptions(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=16)
    half = args.evals // 2
    print(f"# search efficiency: {args.evals} evaluations ({args.init} quasi-random), {args.seeds} seed(s), "
          f"NUTS {args.nuts[0]}/{args.nuts[1]}/{args.nuts[2]}")
    print(f"| problem | optimiser | HV@{half} / best | HV@{args.evals} / best | s / suggestion |")
    print("|---|---|---|---|---|")
    all_runs = run_all(args)
    for problem in [PROBLEMS[p]() for p in args.problems]:
        runs = {(n, s): all_runs[p, n, s] for p, n, s in all_runs if p == problem.name}
        if problem.name == "dtlz2":
            best = problem.best_points[0]["hv"]
        else:
            found = [v for values, _ in runs.values() for v in values if v]
            best = hypervolume(problem.best_points + found, problem.space.objectives, problem.ref_point)
        for name in args.optimizers:
            cells = []
            for k in (half, args.evals):
                fractions = [
                    hypervolume(runs[name, s][0][:k], problem.space.objectives, problem.ref_point) / best
                    for s in range(args.seeds)
                ]
                spread = statistics.stdev(fractions) if len(fractions) > 1 else 0.0
                cells.append(f"{statistics.mean(fractions):.3f} ± {spread:.3f}")
            times = [t for s in range(args.seeds) for t in runs[name, s][1]]
            mean_time = statistics.mean(times) if times else float("nan")
            print(f"| {problem.name} | {name} | {cells[0]} | {cells[1]} | {mean_time:.2f} |", flush=True)
    print_timing(args)


def print_timing(args: argparse.Namespace) -> None:
    """The suggestion-time goal: saas-nehvi under 60 s at 40 dimensions and 50 observations."""
    dims, obs = args.timing
    if dims <= 0:
        return
    seconds = suggestion_timing(dims, obs, args)
    shown = ", ".join(f"{s:.1f}" for s in seconds)
    print(f"# saas-nehvi at {dims} dimensions from {obs} observations: {shown} s for 3 consecutive suggestions "
          f"(goal < 60 s)")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"# total {time.perf_counter() - start:.0f} s")
