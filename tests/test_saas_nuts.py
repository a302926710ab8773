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

    from search.optimizers.saas import nuts as saas_nuts
    from search.optimizers.saas.padded_model import PaddedSaasFullyBayesianSingleTaskGP

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


def test_fixed_noise_potential_is_the_padded_botorch_models_with_train_yvar():
    """With observed noise (train_Yvar, standardised with Y and clamped by BoTorch) there is no noise site:
    our 3 + d layout's density is NumPyro's for the padded BoTorch model, and our standardisation is BoTorch's."""
    import jax.numpy as jnp
    from botorch.models.transforms.outcome import Standardize
    from numpyro.infer.util import potential_energy

    from search.optimizers.saas import nuts as saas_nuts
    from search.optimizers.saas.padded_model import PaddedSaasFullyBayesianSingleTaskGP

    torch.manual_seed(0)
    X = torch.rand(11, 5, dtype=torch.double)
    y = 3 * torch.randn(11, 1, dtype=torch.double) + 1
    yvar = 0.5 * torch.rand(11, 1, dtype=torch.double)
    yvar[0] = 1e-7  # clamped at 1e-4 after standardising
    model = PaddedSaasFullyBayesianSingleTaskGP(X, y, train_Yvar=yvar, outcome_transform=Standardize(m=1))
    targets, variances = saas_nuts.standardise(y.numpy(), yvar.numpy())
    assert np.allclose(targets[:, 0], saas_nuts.standardised_targets(model).numpy())
    assert np.allclose(variances[:, 0], saas_nuts.standardised_variances(model).numpy())
    assert variances[0, 0] == saas_nuts.MIN_NOISE
    Xp = np.full((16, 5), 0.5, np.float32)
    Xp[:11] = X.numpy()
    yp, vp, mask = np.zeros(16, np.float32), np.ones(16, np.float32), np.zeros(16, np.float32)
    yp[:11], vp[:11], mask[:11] = targets[:, 0], variances[:, 0], 1.0
    rng = np.random.default_rng(0)
    for _ in range(4):
        z = rng.uniform(-2, 2, size=saas_nuts.head_size(True) + 5).astype(np.float32)
        sites = {"outputscale": z[0], "mean": z[1], "kernel_tausq": z[2], "_kernel_inv_length_sq": z[3:]}
        ref = potential_energy(model.pyro_model.sample, (), {}, {k: jnp.asarray(v) for k, v in sites.items()})
        ours = saas_nuts.potential(jnp.asarray(z), jnp.asarray(Xp), jnp.asarray(yp), jnp.asarray(mask), jnp.asarray(vp))
        assert float(ours) == pytest.approx(float(ref), rel=1e-5, abs=1e-4)  # JAX float32


def test_vectorised_fit_learns_the_relevant_dimension_and_warm_starts():
    from search.optimizers.saas import nuts as saas_nuts

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


def _history(n: int, noisy: bool = False) -> list[Observation]:
    """``n`` Sobol configurations; ``noisy``: metric ``a`` comes with standard errors, ``b`` without."""
    from search.optimizers.quasi_random import SobolOptimizer

    configs = SobolOptimizer(SPACE, seed=5).suggest([], n)
    return [Observation(c, {"a": c["layers"][1] + 0.3 * c["count"], "b": c["layers"][4] - 0.1 * c["count"],
                            "cost": _cost(c)}, {"a": (0.02 + 0.01 * (i % 3)) ** 2} if noisy else None)
            for i, c in enumerate(configs)]


@pytest.mark.parametrize("noisy", [False, True], ids=["inferred-noise", "mixed-noise"])
def test_warm_started_suggestions_survive_a_rebuild(noisy):
    """From 11 observations the chains start at the anchor fit on the first 8; a rebuilt optimiser refits
    that anchor and suggests the same configurations as one that fitted it on an earlier call (also when
    one metric has observed noise and the other not: two vectorised runs, each warm-started)."""
    hist = _history(11, noisy)
    running = make_optimizer("saas-nehvi", SPACE, seed=2, known_objectives={"cost": _cost}, options=FAST)
    running.suggest(hist[:8], 1)  # the anchor fit happens here (8 = ANCHOR_EVERY)
    anchors = dict(running.chains.anchors)
    first = running.suggest(hist, 2)
    assert running.chains.anchors.keys() == anchors.keys()  # reused, not refitted
    rebuilt = make_optimizer("saas-nehvi", SPACE, seed=2, known_objectives={"cost": _cost}, options=FAST)
    assert rebuilt.suggest(hist, 2) == first
    assert rebuilt.chains.anchors.keys() == anchors.keys()  # refitted from the history alone
    if noisy:
        assert "noise" not in running.last_fit[0].samples and "noise" in running.last_fit[1].samples


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_consecutive_fits_reuse_one_compiled_program():
    """Fits of the same padded size reuse the compiled sampler: no new memory mappings per fit."""
    from search.optimizers.saas import nuts as saas_nuts

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


NOISY = parse_space(
    """
name: noisy
objectives: {q: max, r: max}
parameters:
  x0: {type: float, low: 0.0, high: 1.0}
  x1: {type: float, low: 0.0, high: 1.0}
  x2: {type: float, low: 0.0, high: 1.0}
  x3: {type: float, low: 0.0, high: 1.0}
optimizer: {init_trials: 4, nuts: {warmup: 64, samples: 64, thinning: 4}}
""",
    "noisy.yaml",
)


def test_observed_noise_is_fitted_by_the_vectorised_engine_like_botorch(monkeypatch):
    """A metric with the trials' standard errors (q) and one without (r): both fitted by the vectorised
    engine (BoTorch's NUTS is never called), q with BoTorch's fixed-noise likelihood and no noise
    samples, r inferring its noise; q's posterior mean is close to BoTorch's own NUTS fit's."""
    import botorch.fit
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood, GaussianLikelihood

    from search.optimizers.saas import SaasSettings
    from search.optimizers.saas import nuts as saas_nuts

    rng = np.random.default_rng(3)
    n = 16  # an anchor fit (16 % ANCHOR_EVERY == 0): one cold vectorised run per kind of noise
    X = rng.random((n, 4))
    se = rng.uniform(0.02, 0.15, n)
    se[5] = 1.0  # a trial scored on few queries: observed 1.0 too high, with a standard error of 1

    def f(X):
        return np.sin(3 * X[:, 0]) + 0.5 * X[:, 1]

    q = f(X) + se * rng.standard_normal(n)
    q[5] += 1.0
    Y = torch.tensor(np.stack([q, X[:, 2] + 0.05 * rng.standard_normal(n)], axis=1))
    yvars = {0: torch.tensor(se[:, None] ** 2), 1: None}
    X = torch.tensor(X)

    def refuse(*args, **kwargs):
        raise AssertionError("the vectorised engine called BoTorch's NUTS")

    optimizer = make_optimizer("saas-nehvi", NOISY, seed=0)
    with monkeypatch.context() as patch:
        patch.setattr(botorch.fit, "fit_fully_bayesian_model_nuts", refuse)
        ours = optimizer.fit_learned(X, Y, [0, 1], seed=1, yvars=yvars)
    assert "noise" not in optimizer.last_fit[0].samples and "noise" in optimizer.last_fit[1].samples
    assert type(ours[0].likelihood) is FixedNoiseGaussianLikelihood
    assert torch.allclose(ours[0].likelihood.noise[0], saas_nuts.standardised_variances(ours[0]))
    assert type(ours[1].likelihood) is GaussianLikelihood
    botorch_nuts = make_optimizer("saas-nehvi", NOISY, seed=0, settings=SaasSettings(nuts_engine="botorch"))
    reference = botorch_nuts.fit_learned(X, Y, [0], seed=1, yvars=yvars)[0]
    Xq = torch.tensor(rng.random((32, 4)))
    with torch.no_grad():
        means = [m.posterior(Xq).mixture_mean.reshape(-1).numpy() for m in (ours[0], reference)]
    sd = q.std()
    gap = np.abs(means[0] - means[1]) / sd
    errors = [float(np.sqrt(np.mean((m - f(Xq.numpy())) ** 2)) / sd) for m in means]
    print(f"\nvectorised vs BoTorch NUTS, posterior means: max gap {gap.max():.3f} sd, mean {gap.mean():.3f} sd; "
          f"RMSE against the truth {errors[0]:.3f} and {errors[1]:.3f} sd")
    assert gap.mean() < 0.1 and gap.max() < 0.3
    assert max(errors) < 0.35
