"""``saas-nehvi`` with observed noise: the vectorised NUTS engine against BoTorch's per-metric NUTS, in one run.

Every trial reports a standard error per metric, so the SAAS fits take the squared standard
errors as fixed noise (``train_Yvar``). This measures, for the two ``nuts_engine`` values of
:class:`search.optimizers.saas.SaasSettings` in the same process:

- seconds per suggestion, and the part of it spent fitting the models, at ``--dims`` continuous
  dimensions, two learned objectives with heteroscedastic observed noise, and ``--sizes``
  observations: ``--repeats`` consecutive suggestions from n observations (n, n + 1, ...), after an
  untimed one on n - 1 as in a running study (programs compiled, the vectorised engine's anchor
  fitted). The vectorised engine fits cold every 8 observations (n = 40 is such an anchor) and
  warm in between, so its times alternate; each suggestion is printed;
- the predictive agreement of the fitted models: per objective, the mean and largest gap between
  the two engines' posterior means at ``--test-points`` random points, and each engine's RMSE
  against the noiseless truth (all divided by the outputs' standard deviation).

The ratios (BoTorch / vectorised) are the usable part on a shared machine.

    PYTHONPATH=. python bench/saas_fit_noise.py                   # 30 dims, 20 and 40 observations
    PYTHONPATH=. python bench/saas_fit_noise.py --sizes 20 --dims 10
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.optimizers import AcquisitionOptions, Observation, make_optimizer  # noqa: E402
from search.optimizers.saas import SaasSettings  # noqa: E402
from search.space import Space, parse_space  # noqa: E402

ENGINES = ("vectorised", "botorch")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dims", type=int, default=30, help="continuous dimensions (default 30)")
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40], help="observations per timed suggestion")
    p.add_argument("--nuts", type=int, nargs=3, default=[64, 32, 4], metavar=("WARMUP", "SAMPLES", "THINNING"),
                   help="NUTS settings (default the space default 64 32 4)")
    p.add_argument("--test-points", type=int, default=128, help="points of the agreement check (default 128)")
    p.add_argument("--repeats", type=int, default=2,
                   help="timed suggestions per engine and size, at n, n + 1, ... (default 2)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def make_space(dims: int, nuts: list[int]) -> Space:
    params = "\n".join(f"  x{i}: {{type: float, low: 0.0, high: 1.0}}" for i in range(dims))
    warmup, samples, thinning = nuts
    return parse_space(
        f"name: noise\nobjectives: {{f1: max, f2: max}}\nparameters:\n{params}\n"
        f"optimizer: {{init_trials: 8, nuts: {{warmup: {warmup}, samples: {samples}, thinning: {thinning}}}}}\n",
        "noise.yaml",
    )


def truth(X: np.ndarray) -> np.ndarray:
    """Two objectives on a few of the dimensions (the rest are irrelevant, as SAAS assumes)."""
    f1 = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]
    f2 = np.cos(2 * X[:, 0]) + 0.8 * X[:, 3] - 0.3 * X[:, 4] * X[:, 1]
    return np.stack([f1, f2], axis=1)


def history(space: Space, n: int, seed: int) -> list[Observation]:
    """``n`` uniform random configurations, observed with a standard error of 0.02-0.15 (one trial 0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, len(space.parameters)))
    se = rng.uniform(0.02, 0.15, (n, 2))
    se[n // 3] = 0.5  # a trial scored on few queries
    Y = truth(X) + se * rng.standard_normal((n, 2))
    names = list(space.parameters)
    return [Observation({k: float(v) for k, v in zip(names, x)}, {"f1": float(y[0]), "f2": float(y[1])},
                        {"f1": float(s[0]) ** 2, "f2": float(s[1]) ** 2}) for x, y, s in zip(X, Y, se)]


def timed_optimizer(space: Space, engine: str, seed: int):
    optimizer = make_optimizer("saas-nehvi", space, seed=seed, settings=SaasSettings(nuts_engine=engine),
                               options=AcquisitionOptions(num_restarts=2, raw_samples=64, mc_samples=32, maxiter=12))
    optimizer.fit_seconds = 0.0
    fit = optimizer.fit_learned

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fit(*args, **kwargs)
        finally:
            optimizer.fit_seconds += time.perf_counter() - start

    optimizer.fit_learned = timed
    return optimizer


def posterior_means(optimizer, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        Xt = torch.tensor(X, dtype=torch.float64)
        return np.stack([m.posterior(Xt).mixture_mean.reshape(-1).numpy() for m in optimizer.model.models], axis=1)


def main(argv=None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("PERS_SEARCH_HOME", tempfile.mkdtemp(prefix="saas-fit-noise-"))  # a fresh JAX cache
    warnings.filterwarnings("ignore")
    space = make_space(args.dims, args.nuts)
    hist = history(space, max(args.sizes) + args.repeats, args.seed)
    Xtest = np.random.default_rng(args.seed + 1).random((args.test_points, args.dims))
    sd = np.array([obs.values["f1"] for obs in hist]).std(), np.array([obs.values["f2"] for obs in hist]).std()
    print(f"saas-nehvi, {args.dims} dims, 2 learned objectives with observed noise, NUTS {args.nuts}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    rows = []
    for n in args.sizes:
        means, seconds = {}, {}
        for engine in ENGINES:
            optimizer = timed_optimizer(space, engine, args.seed)
            optimizer.suggest(hist[: n - 1], 1)  # untimed: programs compiled, the anchor fitted
            for size in range(n, n + args.repeats):
                optimizer.fit_seconds = 0.0
                start = time.perf_counter()
                optimizer.suggest(hist[:size], 1)
                seconds.setdefault(engine, []).append((time.perf_counter() - start, optimizer.fit_seconds))
                if size == n:
                    means[engine] = posterior_means(optimizer, Xtest)
                print(f"n={size} {engine:10s} suggestion {seconds[engine][-1][0]:6.1f} s, "
                      f"of which fit {seconds[engine][-1][1]:6.1f} s", flush=True)
            if engine == "vectorised":  # observed noise went through the vectorised engine: no noise variable
                assert all("noise" not in r.samples for r in optimizer.last_fit)
        true = truth(Xtest)
        gaps = [np.abs(means["vectorised"][:, j] - means["botorch"][:, j]) / sd[j] for j in range(2)]
        rmse = {e: [math.sqrt(np.mean((means[e][:, j] - true[:, j]) ** 2)) / sd[j] for j in range(2)] for e in ENGINES}
        rows.append((n, seconds, gaps, rmse))
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end (2-core CPU shared with other jobs)\n")
    print(f"seconds per suggestion (of which fit), mean of {args.repeats} consecutive suggestions from n; "
          "gaps and RMSE of the posterior means at n, in standard deviations of the outputs\n")
    print("| n | vectorised | botorch | botorch / vectorised, suggestion (fit) "
          "| posterior-mean gap, mean / max (f1; f2) | RMSE vs truth, vectorised (f1; f2) | RMSE vs truth, botorch |")
    print("|---|---|---|---|---|---|---|")
    for n, seconds, gaps, rmse in rows:
        (vs, vf), (bs, bf) = (np.mean(seconds[e], axis=0) for e in ENGINES)
        print(f"| {n} | {vs:.1f} ({vf:.1f}) | {bs:.1f} ({bf:.1f}) | {bs / vs:.1f}x ({bf / vf:.1f}x) "
              f"| {gaps[0].mean():.3f} / {gaps[0].max():.3f}; {gaps[1].mean():.3f} / {gaps[1].max():.3f} "
              f"| {rmse['vectorised'][0]:.3f}; {rmse['vectorised'][1]:.3f} "
              f"| {rmse['botorch'][0]:.3f}; {rmse['botorch'][1]:.3f} |")


if __name__ == "__main__":
    main()
