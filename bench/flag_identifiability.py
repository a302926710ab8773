"""How many evaluations does it take to tell which layer flags carry quality on ``mixed-large``?

``bench/search_efficiency.py``'s ``mixed-large`` problem has 30 layer flags of which four (2, 9, 17,
25) carry quality, scaled by the adapters' capacity (count x log2 rank). Its front needs exactly
those flags on (and the personalization flag): every other flag costs storage for almost no
quality. A search that has not found *which* four flags matter cannot build the front's points,
whatever its acquisition does.

This script measures how well the data of ``n`` evaluations can tell, at best: for each size ``n``
it draws ``--designs`` designs of ``n`` configurations, every flag on independently with
probability ``--density`` (the design that decorrelates the flags best; a search's own points are
more correlated than that), count, rank, k and retriever uniform; it evaluates the true quality,
fits the sparse Bayesian linear regression ``saas-nehvi``'s flag screen uses
(:func:`search.optimizers.saas.flag_screen.horseshoe_effects`: a horseshoe prior on every encoded input,
NumPyro NUTS, as BOCS does for binary inputs) to the standardised quality, and ranks the 30 flags by their
posterior mean absolute effect. Printed per ``n``: how many of the four quality flags are among the
top four (mean ± standard error over designs; a random ranking finds 4 x 4 / 30 = 0.53), and in
how many designs all four are.

Usage::

    python bench/flag_identifiability.py                         # n = 10, 16, 20, 30, 40; 10 designs each
    python bench/flag_identifiability.py --sizes 16 --designs 3 --density 0.3
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.search_efficiency import MIXED_LARGE, MixedShape, mixed_values  # noqa: E402
from search.encoding import Encoder  # noqa: E402
from search.optimizers.saas.flag_screen import horseshoe_effects  # noqa: E402
from search.space import parse_space  # noqa: E402


def random_design(shape: MixedShape, n: int, density: float, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` configurations: each flag on with probability ``density``, the rest uniform."""
    low, high = shape.counts
    names = [name for name, _ in shape.retrievers]
    return [
        {
            "layers": [int(rng.random() < density) for _ in range(shape.flags)],
            "count": int(rng.integers(low, high + 1)),
            "rank": int(rng.choice(shape.ranks)),
            "k": int(rng.integers(0, shape.ks + 1)),
            "retriever": str(rng.choice(names)),
        }
        for _ in range(n)
    ]


def quality_flags_found(shape: MixedShape, n: int, density: float, seed: int, *, warmup: int = 300,
                        samples: int = 300) -> int:
    """How many of the quality flags are among the top ``len(quality_flags)`` flags by estimated effect."""
    space = parse_space(shape.space_text(), shape.name)
    encoder = Encoder(space)
    configs = random_design(shape, n, density, np.random.default_rng(seed))
    X = np.array([encoder.encode(c) for c in configs], dtype=np.float64)
    y = np.array([mixed_values(shape, c)["quality"] for c in configs])
    effects = horseshoe_effects(X, y[:, None], seed, warmup=warmup, samples=samples)[0]
    flag_dims = {i: dim.index for i, dim in enumerate(encoder.dims) if dim.index is not None}
    ranked = sorted(flag_dims, key=lambda i: -effects[i])[: len(shape.quality_flags)]
    return len({flag_dims[i] for i in ranked} & set(shape.quality_flags))


def chance(shape: MixedShape) -> float:
    """Expected quality flags among a random top four: ``q * q / flags``."""
    return len(shape.quality_flags) ** 2 / shape.flags


def main(argv: list[str] | None = None) -> list[tuple[int, list[int]]]:
    """Print one line per size; return (size, found per design) pairs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 16, 20, 30, 40], help="evaluations per design")
    p.add_argument("--designs", type=int, default=10, help="random designs per size (default 10)")
    p.add_argument("--density", type=float, default=0.5, help="probability that a flag is on (default 0.5)")
    p.add_argument("--nuts", type=int, nargs=2, metavar=("WARMUP", "SAMPLES"), default=[300, 300])
    args = p.parse_args(argv)
    if not 0.0 < args.density < 1.0:
        p.error(f"--density must be strictly between 0 and 1 (got {args.density})")
    shape = MIXED_LARGE
    q = len(shape.quality_flags)
    print(f"# {shape.name}: {q} quality flags of {shape.flags}; a random ranking finds {chance(shape):.2f} of {q}; "
          f"flag density {args.density}, {args.designs} design(s) per size", flush=True)
    print(f"| evaluations | designs | quality flags in the top {q} (mean ± SE) | all {q} found | seconds |")
    print("|---|---|---|---|---|")
    results = []
    for n in args.sizes:
        start = time.perf_counter()
        found = [quality_flags_found(shape, n, args.density, seed=1000 * n + s, warmup=args.nuts[0],
                                     samples=args.nuts[1]) for s in range(args.designs)]
        mean = statistics.fmean(found)
        se = statistics.stdev(found) / math.sqrt(len(found)) if len(found) > 1 else float("nan")
        print(f"| {n} | {len(found)} | {mean:.2f} ± {se:.2f} | {sum(f == q for f in found)}/{len(found)} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)
        results.append((n, found))
    return results


if __name__ == "__main__":
    main()
