"""Search efficiency: hypervolume reached per evaluation by each optimiser, as a fraction of the true maximum.

Problems (every hypervolume is divided by the problem's exact maximum, never by points found):

- ``dtlz2`` and ``dtlz2-12``: BoTorch's DTLZ2 with 6 and 12 inputs, 3 objectives (all
  minimised), reference point 1.1 each; the maximum is BoTorch's analytic ``DTLZ2.max_hv``.
- ``mixed``: a personalization-shaped problem of our own: 30 layer flags, an int ``count`` in
  0..8, a numeric choice ``rank`` in {4, 8, 16, 32} (active when count > 0), an int ``k`` in 0..8
  and a categorical ``retriever`` of four (active when k > 0): 34 dimensions of which 8 matter
  (flags 3, 7, 12 and 20, count, rank, k, retriever). Objectives: ``quality`` (max),
  ``personal`` (max) and ``storage`` (min, a known deterministic function: count x rank x
  layers on x 1000).
- ``mixed-large``: the same shape at MiLP's paper scale: 30 layer flags, ``count`` in 1..32,
  ``rank`` in {8, 16, 32, 64, 96}, ``k`` in 0..8 and three retrievers; flags 2, 9, 17 and 25
  carry quality and flag 13 personalization (5 of the 30 matter).

The maximum of a mixed problem is exact, from an enumeration of what matters
(:func:`exact_front`): the number of quality flags on (which ones is irrelevant, they are
symmetric), the personalization flag, the *number* of other flags on (they add a little quality
and storage, whichever they are), count and rank, at the best ``k`` and retriever (which only
raise ``personal``, at no cost, so any other choice is dominated).

For each problem, optimiser and seed, :func:`search.api.optimize` runs ``--evals`` evaluations
(the first ``--init`` quasi-random) with the problem's reference point. Each finished run is
printed and appended as one JSON line to ``--out`` (problem, optimiser, seed, the normalised
hypervolume after every evaluation, seconds per model-based suggestion, settings); runs already
in the file are skipped, so a long benchmark resumes where it stopped, and ``--summarise FILE``
prints the table (markdown: HV@10, HV@20, HV@40 as mean ± sd over seeds, median seconds per
suggestion) from the file alone.

Usage::

    python bench/search_efficiency.py --out runs.jsonl [--jobs 2]     # everything (hours)
    python bench/search_efficiency.py --problems dtlz2 --optimizers random ax-default --seeds 1 --evals 12
    python bench/search_efficiency.py --summarise runs.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.api import optimize  # noqa: E402
from search.optimizers import AcquisitionOptions  # noqa: E402
from search.pareto import hypervolume  # noqa: E402
from search.space import Space, parse_space  # noqa: E402

OPTIMIZERS = ["ax-saasbo", "ax-default", "saas-nehvi", "saas-map", "gp-nehvi", "optuna-tpe", "optuna-nsga2", "random"]
# Fully Bayesian or SAAS fits: minutes per run, so fewer seeds by default.
SAAS_OPTIMIZERS = {"ax-saasbo", "saas-nehvi", "saas-map"}
SEEDS_CHEAP, SEEDS_SAAS = 5, 3
# Ablations of saas-nehvi (pass them to --optimizers): SaasSettings, every switch given, so a variant stays
# what it says when the defaults change. "@main" is the optimiser as it was before issue 15's scope 3-4
# (BoTorch's NUTS per objective, BoTorch's mixed alternating acquisition search, the Sobol start). A variant
# is saas-nehvi built with its settings (no registered name): its suggestion seeds are saas-nehvi's, so its
# runs pair seed by seed with the default's.
_BASE = {"fit": "nuts", "nuts_engine": "vectorised", "warm_chains": True, "acquisition_search": "local",
         "design": "spread", "start_points": None, "flag_screen": False}
VARIANTS: dict[str, dict[str, Any]] = {
    "saas-nehvi@main": {**_BASE, "nuts_engine": "botorch", "acquisition_search": "alternating", "design": "sobol"},
    "saas-nehvi@nuts": {**_BASE, "acquisition_search": "alternating", "design": "sobol"},
    "saas-nehvi@cold-nuts": {**_BASE, "warm_chains": False, "acquisition_search": "alternating", "design": "sobol"},
    "saas-nehvi@local": {**_BASE, "design": "sobol"},
    "saas-nehvi@spread": dict(_BASE),
    "saas-nehvi@start6": {**_BASE, "start_points": 6},
    "saas-nehvi@sobol6": {**_BASE, "design": "sobol", "start_points": 6},
    "saas-nehvi@screen": {**_BASE, "flag_screen": True},
}


def build_optimizer(name: str, space: Space, **kwargs: Any) -> Any:
    """The optimiser of a registered ``name``, or ``saas-nehvi`` built with a variant's settings.

    Args:
        name: a registered optimiser name or a key of ``VARIANTS``.
        space: the bound space the optimiser searches.
        **kwargs: ``seed``, ``known_objectives``, ``options``.
    """
    from search.optimizers import make_optimizer
    from search.optimizers.saas import SaasSettings

    if name in VARIANTS:
        return make_optimizer("saas-nehvi", space, settings=SaasSettings(**VARIANTS[name]), **kwargs)
    return make_optimizer(name, space, **kwargs)


def is_saas(name: str) -> bool:
    """A SAAS optimiser or a variant of one (fewer seeds by default)."""
    return name.split("@")[0] in SAAS_OPTIMIZERS


CHECKPOINTS = (10, 20, 40)
DEFAULT_OUT = "search_efficiency.jsonl"


@dataclass
class Problem:
    """A benchmark problem: a space, the function, known objectives, reference point and exact best HV."""

    name: str
    space: Space
    function: Callable[[dict[str, Any]], dict[str, float]]
    known: dict[str, Callable[[dict[str, Any]], float]]
    ref_point: dict[str, float]
    max_hv: float


# --------------------------------------------------------------------------- DTLZ2
def dtlz2_problem(dim: int) -> Problem:
    """DTLZ2 with ``dim`` inputs and 3 objectives; the maximum is BoTorch's analytic ``max_hv``."""
    import torch
    from botorch.test_functions.multi_objective import DTLZ2

    fn = DTLZ2(dim=dim, num_objectives=3)
    params = "\n".join(f"  x{i}: {{type: float, low: 0.0, high: 1.0, default: 0.5}}" for i in range(dim))
    name = "dtlz2" if dim == 6 else f"dtlz2-{dim}"
    space = parse_space(f"name: {name}\nobjectives: {{f1: min, f2: min, f3: min}}\nparameters:\n{params}\n", name)

    def evaluate(config: dict[str, Any]) -> dict[str, float]:
        x = torch.tensor([[config[f"x{i}"] for i in range(dim)]], dtype=torch.float64)
        return dict(zip(("f1", "f2", "f3"), fn(x)[0].tolist()))

    ref = {f"f{i}": float(fn._ref_val) for i in (1, 2, 3)}
    return Problem(name, space, evaluate, {}, ref, float(fn.max_hv))


# --------------------------------------------------------------------------- mixed problems
@dataclass(frozen=True)
class MixedShape:
    """The shape of a personalization-like problem.

    quality = 0.2 + 0.6 (1 - exp(-count log2(rank) / scale)) (quality flags on / their number)
    + 0.02 (other flags on / their number); personal = 0.1 + 0.3 (1 - exp(-k / 3)) weight(retriever)
    + 0.15 (personal flag) min(count, cap) / cap; storage = 1000 count rank (flags on).
    """

    name: str
    quality_flags: tuple[int, ...]
    personal_flag: int
    counts: tuple[int, int]
    ranks: tuple[int, ...]
    retrievers: tuple[tuple[str, float], ...]
    scale: float
    cap: int
    ref_point: tuple[float, float, float]
    flags: int = 30
    ks: int = 8

    def space_text(self) -> str:
        """The space YAML (rank conditional on count > 0 when count may be 0)."""
        low, high = self.counts
        when = ', when: "count > 0"' if low == 0 else ""
        names = ", ".join(name for name, _ in self.retrievers)
        return (
            f"name: {self.name}\nobjectives: {{quality: max, personal: max, storage: min}}\nparameters:\n"
            f"  layers: {{type: layer_mask, size: {self.flags}, default: none}}\n"
            f"  count: {{type: int, low: {low}, high: {high}, default: {low}}}\n"
            f"  rank: {{type: choice, values: {list(self.ranks)}, default: {self.ranks[1]}{when}}}\n"
            f"  k: {{type: int, low: 0, high: {self.ks}, default: 0}}\n"
            f"  retriever: {{type: choice, values: [{names}], default: {self.retrievers[0][0]}, when: \"k > 0\"}}\n"
        )


MIXED = MixedShape(
    "mixed", (3, 7, 20), 12, (0, 8), (4, 8, 16, 32),
    (("bm25", 1.0), ("dense", 0.9), ("recency", 0.5), ("random", 0.3)), 8.0, 2, (0.2, 0.1, 8.0e6),
)
MIXED_LARGE = MixedShape(
    "mixed-large", (2, 9, 17, 25), 13, (1, 32), (8, 16, 32, 64, 96),
    (("bm25", 1.0), ("dense", 0.9), ("recency", 0.5)), 48.0, 4, (0.2, 0.1, 2.0e7),
)
SHAPES = {shape.name: shape for shape in (MIXED, MIXED_LARGE)}


def storage(config: dict[str, Any]) -> float:
    """Bytes of the per-user adapters: count x rank x layers on x 1000."""
    return 1000.0 * config["count"] * config["rank"] * sum(config["layers"])


def mixed_values(shape: MixedShape, config: dict[str, Any]) -> dict[str, float]:
    """The three objectives of a mixed problem (see :class:`MixedShape`)."""
    layers = config["layers"]
    on = sum(layers[i] for i in shape.quality_flags)
    others = sum(layers) - on - layers[shape.personal_flag]
    capacity = config["count"] * math.log2(config["rank"])
    quality = 0.2 + 0.6 * (1 - math.exp(-capacity / shape.scale)) * on / len(shape.quality_flags)
    quality += 0.02 * others / (shape.flags - len(shape.quality_flags) - 1)
    weight = dict(shape.retrievers)[config["retriever"]]
    personal = 0.1 + 0.3 * (1 - math.exp(-config["k"] / 3)) * weight
    personal += 0.15 * layers[shape.personal_flag] * min(config["count"], shape.cap) / shape.cap
    return {"quality": quality, "personal": personal, "storage": storage(config)}


def mixed_function(config: dict[str, Any]) -> dict[str, float]:
    """The ``mixed`` problem's objectives."""
    return mixed_values(MIXED, config)


def mixed_large_function(config: dict[str, Any]) -> dict[str, float]:
    """The ``mixed-large`` problem's objectives."""
    return mixed_values(MIXED_LARGE, config)


def enumerate_relevant(shape: MixedShape) -> Iterator[dict[str, Any]]:
    """Configurations covering every value of what matters (see the module docstring).

    Quality flags are switched on in order, then the personalization flag, then the first
    ``o`` of the other flags; ``k`` and the retriever are at their best.
    """
    others = [i for i in range(shape.flags) if i not in shape.quality_flags and i != shape.personal_flag]
    best = max(shape.retrievers, key=lambda item: item[1])[0]
    low, high = shape.counts
    for a, b, o in itertools.product(range(len(shape.quality_flags) + 1), (0, 1), range(len(others) + 1)):
        layers = [0] * shape.flags
        for i in shape.quality_flags[:a] + ((shape.personal_flag,) if b else ()) + tuple(others[:o]):
            layers[i] = 1
        for count in range(low, high + 1):
            for rank in shape.ranks if count > 0 else shape.ranks[1:2]:
                yield {"layers": layers, "count": count, "rank": rank, "k": shape.ks, "retriever": best}


def exact_front(points: Iterable[dict[str, float]]) -> list[dict[str, float]]:
    """The Pareto front of (quality max, personal max, storage min) points, exactly.

    Points are grouped by ``personal`` (few distinct values); each group's (quality, storage)
    front is a sorted sweep, and the union of those fronts is filtered once more in 3-D.
    """
    from search.pareto import pareto_indices

    groups: dict[float, list[dict[str, float]]] = {}
    for p in points:
        groups.setdefault(p["personal"], []).append(p)
    candidates = []
    for group in groups.values():
        best = -math.inf
        for p in sorted(group, key=lambda p: (p["storage"], -p["quality"])):
            if p["quality"] > best:
                candidates.append(p)
                best = p["quality"]
    objectives = {"quality": "max", "personal": "max", "storage": "min"}
    return [candidates[i] for i in pareto_indices(candidates, objectives)]


def mixed_problem(shape: MixedShape = MIXED) -> Problem:
    """A mixed problem with its exact best hypervolume (:func:`exact_front` of :func:`enumerate_relevant`)."""
    space = parse_space(shape.space_text(), shape.name)
    function = {"mixed": mixed_function, "mixed-large": mixed_large_function}[shape.name]
    ref = dict(zip(("quality", "personal", "storage"), shape.ref_point))
    front = exact_front(function(c) for c in enumerate_relevant(shape))
    best = hypervolume(front, space.objectives, ref)
    return Problem(shape.name, space, function, {"storage": storage}, ref, best)


def best_subsets(shape: MixedShape, sizes: Iterable[int]) -> dict[int, float]:
    """What ``k`` evaluations could reach at best: the hypervolume fraction of ``k`` points of the exact front,
    picked greedily (each the point adding the most hypervolume), for each ``k`` in ``sizes``.

    Greedy selection is within ``1 - 1/e`` of the best ``k``-subset (hypervolume is submodular),
    so these are lower bounds of what ``k`` perfectly placed evaluations reach; they say how many of
    a search's evaluations a target needs on the exact front.
    """
    import numpy as np

    from search.pareto import dominated_volume

    signs = np.array([1.0, 1.0, -1.0])  # maximised: quality, personal, -storage
    front = exact_front(mixed_values(shape, c) for c in enumerate_relevant(shape))
    Y = np.array([[p["quality"], p["personal"], p["storage"]] for p in front]) * signs
    ref = np.array(shape.ref_point) * signs
    whole = dominated_volume(Y, ref)  # the problem's max_hv, from the front already enumerated here
    chosen: list[int] = []
    out: dict[int, float] = {}
    for k in range(1, max(sizes) + 1):
        gains = [(dominated_volume(Y[chosen + [i]], ref), i) for i in range(len(front)) if i not in chosen]
        best, pick = max(gains)
        chosen.append(pick)
        if k in sizes:
            out[k] = best / whole
    return out


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "dtlz2": lambda: dtlz2_problem(6),
    "dtlz2-12": lambda: dtlz2_problem(12),
    "mixed": lambda: mixed_problem(MIXED),
    "mixed-large": lambda: mixed_problem(MIXED_LARGE),
}


# --------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Settings:
    """What a run depends on besides problem, optimiser and seed (part of its resume key)."""

    evals: int
    init: int
    nuts: tuple[int, int, int]
    options: dict[str, Any]

    def key(self, problem: str, optimizer: str, seed: int) -> str:
        """The run's identity in the results file."""
        return json.dumps([problem, optimizer, seed, asdict(self)], sort_keys=True)


def run_one(problem: Problem, name: str, seed: int, settings: Settings) -> dict[str, Any]:
    """Run one study; return its record: normalised HV after each evaluation, suggestion seconds.

    The optimiser is given the problem's reference point, the one the hypervolume uses.
    """
    warmup, samples, thinning = settings.nuts
    space = problem.space.with_optimizer(init_trials=settings.init, ref_point=problem.ref_point).with_overrides(
        [f"optimizer.nuts.warmup={warmup}", f"optimizer.nuts.samples={samples}", f"optimizer.nuts.thinning={thinning}"]
    )
    options = AcquisitionOptions(**settings.options)
    optimizer = build_optimizer(name, space.with_optimizer(trials=settings.evals, seed=seed), seed=seed,
                                known_objectives=problem.known, options=options) if name in VARIANTS else name
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optimize(
            space, problem.function, optimizer=optimizer, trials=settings.evals, seed=seed, study_dir=tmp,
            known_objectives=problem.known, options=options,
        )
    values = [t.values for t in study.trials]
    curve = [hypervolume(values[:k], problem.space.objectives, problem.ref_point) / problem.max_hv
             for k in range(1, len(values) + 1)]
    seconds = [t.suggest_seconds for t in study.trials[settings.init :] if t.suggest_seconds is not None]
    return {
        "problem": problem.name, "optimizer": name, "seed": seed, "hv": curve, "max_hv": problem.max_hv,
        "seconds": seconds, "wall_seconds": time.perf_counter() - start, "settings": asdict(settings),
    }


def run_task(task: tuple[str, str, int, Settings]) -> dict[str, Any]:
    """:func:`run_one` by problem name (for worker processes: problems hold closures)."""
    problem, name, seed, settings = task
    return run_one(PROBLEMS[problem](), name, seed, settings)


def plan(problems: list[str], optimizers: list[str], seeds: int | None, settings: Settings,
         done: set[str]) -> list[tuple[str, str, int, Settings]]:
    """Runs still to do, seed by seed (every row gets seed 0 before any gets seed 1, so a benchmark
    stopped early still has a row per optimiser), the slowest optimisers first within a seed (the
    order of ``OPTIMIZERS``)."""
    order = {name: i for i, name in enumerate(OPTIMIZERS)}
    tasks = []
    for name in sorted(optimizers, key=lambda n: order.get(n, len(order))):
        count = seeds if seeds is not None else (SEEDS_SAAS if is_saas(name) else SEEDS_CHEAP)
        for seed, problem in itertools.product(range(count), problems):
            if settings.key(problem, name, seed) not in done:
                tasks.append((problem, name, seed, settings))
    return sorted(tasks, key=lambda task: task[2])  # stable: optimiser order kept within a seed


def run_all(tasks: list[tuple[str, str, int, Settings]], jobs: int, out: Path) -> int:
    """Run ``tasks`` in ``jobs`` processes; append each record to ``out`` and print it as it ends."""
    finished = 0
    for record in _completed(tasks, jobs):
        with out.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        finished += 1
        print(progress_line(record, finished, len(tasks)), flush=True)
    return finished


def _completed(tasks: list[tuple[str, str, int, Settings]], jobs: int) -> Iterator[dict[str, Any]]:
    if jobs <= 1:
        yield from map(run_task, tasks)
        return
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # One XLA thread per worker (NUTS), like the one torch thread each suggestion uses.
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in as_completed([pool.submit(run_task, task) for task in tasks]):
            yield future.result()


def progress_line(record: dict[str, Any], finished: int, total: int) -> str:
    """One line per finished run: HV at the checkpoints reached and the median suggestion time."""
    curve = record["hv"]
    marks = " ".join(f"HV@{k} {curve[k - 1]:.3f}" for k in checkpoints(len(curve)))
    return (f"[{finished}/{total}] {record['problem']} {record['optimizer']} seed {record['seed']}: {marks}, "
            f"median {median_or_nan(record['seconds']):.2f} s per suggestion ({record['wall_seconds']:.0f} s)")


def checkpoints(evals: int) -> list[int]:
    """HV@10, HV@20, HV@40 where the runs are long enough, and the last evaluation."""
    marks = [k for k in CHECKPOINTS if k <= evals]
    return marks if evals in marks or evals == 0 else marks + [evals]


def median_or_nan(values: list[float]) -> float:
    """The median, NaN for no values."""
    return statistics.median(values) if values else float("nan")


# --------------------------------------------------------------------------- results file
def load_records(path: Path) -> list[dict[str, Any]]:
    """The records of a results file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def done_keys(records: list[dict[str, Any]]) -> set[str]:
    """Resume keys of the runs in ``records``."""
    out = set()
    for r in records:
        s = r["settings"]
        out.add(Settings(s["evals"], s["init"], tuple(s["nuts"]), s["options"]).key(r["problem"], r["optimizer"], r["seed"]))
    return out


def summary_table(records: list[dict[str, Any]]) -> str:
    """The markdown table of a results file: one row per problem and optimiser, in a stable order."""
    evals = max((len(r["hv"]) for r in records), default=0)
    marks = checkpoints(evals)
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["problem"], r["optimizer"]), []).append(r)
    order = {name: i for i, name in enumerate(list(PROBLEMS) + OPTIMIZERS + list(VARIANTS))}
    lines = [
        "| problem | optimiser | seeds | " + " | ".join(f"HV@{k}" for k in marks) + " | median s / suggestion |",
        "|---|---|---|" + "---|" * len(marks) + "---|",
    ]
    for (problem, name), runs in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), order.get(kv[0][1], 99))):
        cells = [_mean_sd([r["hv"][k - 1] for r in runs if len(r["hv"]) >= k]) for k in marks]
        seconds = median_or_nan([s for r in runs for s in r["seconds"]])
        lines.append(f"| {problem} | {name} | {len(runs)} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    return "\n".join(lines)


def settings_note(records: list[dict[str, Any]]) -> str:
    """A header line naming the settings of the runs in the file."""
    distinct = sorted({json.dumps(r["settings"], sort_keys=True) for r in records})
    parts = []
    for text in distinct:
        s = json.loads(text)
        parts.append(f"{s['evals']} evaluations ({s['init']} quasi-random), NUTS {'/'.join(map(str, s['nuts']))}")
    mixed = " (the file mixes settings)" if len(parts) > 1 else ""
    return f"# search efficiency: {'; '.join(parts)}{mixed}; HV as a fraction of the exact maximum, mean ± sd over seeds"


def _mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def summarise(path: Path) -> str:
    """The settings line and the markdown table of a results file."""
    records = load_records(path)
    if not records:
        return f"# {path}: no finished runs"
    return settings_note(records) + "\n" + summary_table(records)


# --------------------------------------------------------------------------- timing
def suggestion_timing(name: str, dims: int, observations: int, args: argparse.Namespace) -> list[float]:
    """Seconds of consecutive suggestions of optimiser ``name`` at ``dims`` dimensions, from ``observations``.

    The space is the mixed problem with ``dims - 4`` layer flags (at least 21); the first
    suggestion of a NUTS optimiser includes JAX compilation (unless the persistent cache already
    holds it), the next ones reuse it.
    """
    import random

    from search.optimizers.base import Observation

    flags = dims - 4
    text = MIXED.space_text().replace(f"size: {MIXED.flags}", f"size: {flags}")
    warmup, samples, thinning = args.nuts
    space = parse_space(text, "timing").with_overrides(
        [f"optimizer.nuts.warmup={warmup}", f"optimizer.nuts.samples={samples}", f"optimizer.nuts.thinning={thinning}"]
    ).with_optimizer(init_trials=10)
    rng = random.Random(0)

    def observe(config: dict[str, Any]) -> Observation:
        return Observation(config, mixed_function({**config, "layers": (config["layers"] + [0] * 30)[:30]}))

    history = []
    for _ in range(observations):
        history.append(observe({"layers": [rng.randint(0, 1) for _ in range(flags)], "count": rng.randint(0, 8),
                                "rank": rng.choice(MIXED.ranks), "k": rng.randint(0, 8),
                                "retriever": rng.choice([r for r, _ in MIXED.retrievers])}))
    optimizer = build_optimizer(name, space, seed=0, known_objectives={"storage": storage}, options=args.options)
    seconds = []
    for _ in range(args.timing_repeats):
        start = time.perf_counter()
        (config,) = optimizer.suggest(history, 1)
        seconds.append(time.perf_counter() - start)
        history.append(observe(config))
    return seconds


def print_timing(args: argparse.Namespace) -> None:
    """Seconds per suggestion of each ``--timing-optimizers`` at ``--timing DIMS OBS`` (saas-nehvi goal: < 60 s)."""
    dims, obs = args.timing
    if dims <= 0:
        return
    for name in args.timing_optimizers:
        seconds = suggestion_timing(name, dims, obs, args)
        shown = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"# {name} at {dims} dimensions from {obs} observations: {shown} s for {len(seconds)} consecutive "
              "suggestions", flush=True)


# --------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    p.add_argument("--optimizers", nargs="+", default=OPTIMIZERS)
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per optimiser (default {SEEDS_CHEAP}, {SEEDS_SAAS} for {', '.join(sorted(SAAS_OPTIMIZERS))})")
    p.add_argument("--evals", type=int, default=40, help="evaluations per run (default 40)")
    p.add_argument("--init", type=int, default=10, help="quasi-random initial evaluations (default 10)")
    p.add_argument("--nuts", type=int, nargs=3, metavar=("WARMUP", "SAMPLES", "THINNING"), default=[64, 32, 4])
    p.add_argument("--jobs", type=int, default=1, help="worker processes (each suggests on one thread; default 1)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"results file, appended to and resumed from (default {DEFAULT_OUT})")
    p.add_argument("--summarise", metavar="FILE", help="print the table of a results file and exit")
    p.add_argument("--timing", type=int, nargs=2, metavar=("DIMS", "OBS"), default=[0, 0],
                   help="also time suggestions at DIMS dimensions from OBS observations (e.g. 40 50)")
    p.add_argument("--timing-optimizers", nargs="+", default=["saas-nehvi"])
    p.add_argument("--timing-repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke settings: tiny NUTS and acquisition")
    p.add_argument("--best-subsets", type=int, nargs="+", metavar="K",
                   help="print what K perfectly placed evaluations reach on the mixed problems (best_subsets) and exit")
    args = p.parse_args(argv)
    args.options = AcquisitionOptions()
    if args.quick:
        args.nuts = [16, 8, 2]
        args.options = AcquisitionOptions(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=16)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run what is missing from the results file, then print its table; return the number of new runs."""
    args = parse_args(argv)
    if args.summarise:
        print(summarise(Path(args.summarise)))
        return 0
    if args.best_subsets:
        print("| problem | " + " | ".join(f"{k} points" for k in args.best_subsets) + " |")
        print("|---|" + "---|" * len(args.best_subsets))
        for name in (p for p in args.problems if p in SHAPES):
            reached = best_subsets(SHAPES[name], args.best_subsets)
            print(f"| {name} | " + " | ".join(f"{reached[k]:.3f}" for k in args.best_subsets) + " |")
        return 0
    settings = Settings(args.evals, args.init, tuple(args.nuts), asdict(args.options))
    out = Path(args.out)
    tasks = plan(args.problems, args.optimizers, args.seeds, settings, done_keys(load_records(out)))
    print(f"# {len(tasks)} run(s) to do, results appended to {out}", flush=True)
    finished = run_all(tasks, args.jobs, out)
    print(summarise(out), flush=True)
    print_timing(args)
    return finished


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"# total {time.perf_counter() - start:.0f} s")
