"""The vectorised NUTS engine of ``saas-nehvi``: BoTorch's SAAS model exactly, fits loaded like BoTorch's,
warm starts that keep a rebuilt optimiser's suggestions, and no compiled program per fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from search.optimizers import AcquisitionOptions, Observation, make_optimizer
from search.space import parse_space

FAST = AcquisitionOptions(num_restarts=2, raw_samples=32, mc_samples=16, maxiter=8)


def test_potential_is_the_padded_botorch_models():
    """Our log density is NumPyro's for BoTorch's (padded) SAAS model at the same unconstrained point."""
    import jax.numpy as jnp
    from numpyro.infer.util import potential_energy

    from search.optimizers import saas_nuts
    from search.optimizers.saas_padded import PaddedSaasFullyBayesianSingleTaskGP

    torch.manual_seed(0)
    X = torch.rand(11, 5, dtype=torch.double)
    y = torch.randn(11, 1, dtype=torch.double)
    pyro_model = PaddedSaasFullyBayesianSingleTaskGP(X, y).pyro_model
    Xp = np.full((16, 5), 0.5, np.float32)
    Xp[:11] = X.numpy()
    yp = np.zeros(16, np.float32)
    yp[:11] = y.numpy().ravel()
    mask = np.zeros(16, np.float32)
    mask[:11] = 1.0
    rng = np.random.default_rng(0)
    for _ in range(4):
        z = rng.uniform(-2, 2, size=9).astype(np.float32)
        sites = {"outputscale": z[0], "mean": z[1], "noise": z[2], "kernel_tausq": z[3], "_kernel_inv_length_sq": z[4:]}
        ref = potential_energy(pyro_model.sample, (), {}, {k: jnp.asarray(v) for k, v in sites.items()})
        ours = saas_nuts.potential(jnp.asarray(z), jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(mask))
        assert float(ours) == pytest.approx(float(ref), rel=1e-5, abs=1e-4)  # JAX float32


def test_vectorised_fit_learns_the_relevant_dimension_and_warm_starts():
    from search.optimizers import saas_nuts

    rng = np.random.default_rng(1)
    X = rng.random((20, 6))
    Y = np.stack([np.sin(4 * X[:, 2]), X[:, 4] ** 2], axis=1)
    Y = (Y - Y.mean(0)) / Y.std(0)
    cold = saas_nuts.run_nuts(X, Y, warmup=32, samples=16, thinning=2, seed=0)
    assert [r.samples["lengthscale"].shape for r in cold] == [(8, 6), (8, 6)]
    for result, relevant in zip(cold, (2, 4)):
        median = np.median(result.samples["lengthscale"], axis=0)
        assert median.argmin() == relevant  # each chain fits its own column
    again = saas_nuts.run_nuts(X, Y, warmup=32, samples=16, thinning=2, seed=0)
    assert all(np.array_equal(a.samples["lengthscale"], b.samples["lengthscale"]) for a, b in zip(cold, again))
    warm = saas_nuts.run_nuts(X, Y, warmup=32, samples=8, thinning=1, seed=1, warm=[r.state for r in cold],
                              warm_warmup=4, warm_adapt_step=False)
    assert sum(r.leapfrog_steps for r in warm) < sum(r.leapfrog_steps for r in cold)
    assert np.median(warm[0].samples["lengthscale"], axis=0).argmin() == 2


SPACE = parse_space(
    """
name: m
objectives: {a: max, b: max, cost: min}
parameters:
  layers: {type: layer_mask, size: 6}
  count: {type: int, low: 0, high: 4, default: 1}
  rank: {type: choice, values: [2, 4, 8], default: 4, when: "count > 0"}
optimizer: {init_trials: 4, nuts: {warmup: 16, samples: 8, thinning: 2}}
""",
    "m.yaml",
)


def _cost(config: dict) -> float:
    return float(config["count"] * config["rank"] * sum(config["layers"]))


def _history(n: int) -> list[Observation]:
    from search.optimizers.quasi_random import SobolOptimizer

    configs = SobolOptimizer(SPACE, seed=5).suggest([], n)
    return [Observation(c, {"a": c["layers"][1] + 0.3 * c["count"], "b": c["layers"][4] - 0.1 * c["count"],
                            "cost": _cost(c)}) for c in configs]


def test_warm_started_suggestions_survive_a_rebuild():
    """From 11 observations the chains start at the anchor fit on the first 8; a rebuilt optimiser refits
    that anchor and suggests the same configurations as one that fitted it on an earlier call."""
    hist = _history(11)
    running = make_optimizer("saas-nehvi", SPACE, seed=2, known_objectives={"cost": _cost}, options=FAST)
    running.suggest(hist[:8], 1)  # the anchor fit happens here (8 = ANCHOR_EVERY)
    anchors = dict(running._anchors)
    first = running.suggest(hist, 2)
    assert running._anchors.keys() == anchors.keys()  # reused, not refitted
    rebuilt = make_optimizer("saas-nehvi", SPACE, seed=2, known_objectives={"cost": _cost}, options=FAST)
    assert rebuilt.suggest(hist, 2) == first
    assert rebuilt._anchors.keys() == anchors.keys()  # refitted from the history alone


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_consecutive_fits_reuse_one_compiled_program():
    """Fits of the same padded size reuse the compiled sampler: no new memory mappings per fit."""
    from search.optimizers import saas_nuts

    def maps() -> int:
        with open("/proc/self/maps") as handle:
            return sum(1 for _ in handle)

    rng = np.random.default_rng(2)
    X = rng.random((12, 3))
    Y = rng.standard_normal((12, 2))
    saas_nuts.run_nuts(X, Y, warmup=8, samples=4, thinning=2, seed=0)
    before = maps()
    for n in range(12, 16):  # 12..15 rows all pad to 16
        saas_nuts.run_nuts(X[:n], Y[:n], warmup=8, samples=4, thinning=2, seed=n)
    assert maps() - before < 20
