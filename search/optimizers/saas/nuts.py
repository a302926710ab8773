"""NUTS for SAAS GPs, compiled once per data shape, every learned objective in one vectorised program.

BoTorch's ``fit_fully_bayesian_model_nuts`` builds a NumPyro ``MCMC`` whose model closes over the
training data, so every fit traces and compiles a new XLA program (the data are constants in it)
and fits the objectives one after the other. Here the SAAS model's potential energy takes the data
as *arguments*, and one ``jax.jit``-ed function runs warm-up and sampling of one NUTS chain per
objective under ``jax.vmap``: a fit with the same padded size, dimension and objective count reuses
the compiled program (in this process, and through JAX's persistent cache in later ones), and the
objectives' chains share every kernel launch, which is what costs on a small CPU (the matrices are
48 x 48).

The model is BoTorch's ``SaasPyroModel`` (the same priors: outputscale Gamma(2, 0.15), constant
mean Normal(0, 1), noise 1e-4 + Gamma(0.9, 10), global shrinkage HalfCauchy(0.1) times per
dimension HalfCauchy(1) on the inverse squared lengthscales, Matern-5/2), written as a plain
log-density over an unconstrained vector (``log`` of every positive variable), with the
padding of :mod:`search.optimizers.saas.padded_model`: padded rows contribute a constant only.

Observed noise (BoTorch's ``train_Yvar``: the trials' squared standard errors) is the model of
``SaasFullyBayesianSingleTaskGP(X, Y, train_Yvar=..., outcome_transform=Standardize(m=1))``:
there is no noise variable (the unconstrained vector loses its noise coordinate, ``3 + d``), and
the kernel matrix gets the observed variances on its diagonal as BoTorch's model holds them,
divided by the outcome transform's squared scale and clamped at 1e-4 (no 1e-4 added). The
variances are an argument like the data, so observed and inferred noise are two compiled
programs per (padded size, dimension, objective count); a fit with both kinds of metrics runs
each kind as one vectorised call.

``tests/test_saas_nuts.py`` checks both potentials against NumPyro's for the padded BoTorch model.
The samples are loaded into the BoTorch model exactly as ``fit_fully_bayesian_model_nuts`` loads
its own (raw noise samples, BoTorch clamps them at 1e-4; with observed noise no noise samples,
and BoTorch's ``FixedNoiseGaussianLikelihood`` holds the transformed ``train_Yvar``).

A chain can start warm: from the last state, step size and mass matrix of an earlier fit of the
same objective (:class:`ChainState`). It then skips mass-matrix adaptation and runs a short
step-size warm-up only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln
from numpyro.infer.hmc import hmc

from search.optimizers.saas.padded_model import padded_size

if TYPE_CHECKING:
    import torch
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

MIN_NOISE = 1e-4  # botorch.models.utils.gpytorch_modules.MIN_INFERRED_NOISE_LEVEL
OUTPUTSCALE_PRIOR = (2.0, 0.15)  # Gamma(concentration, rate): SaasPyroModel's
NOISE_PRIOR = (0.9, 10.0)
TAU_SCALE = 0.1  # HalfCauchy scale of the global shrinkage kernel_tausq
MAX_TREE_DEPTH = 6  # fit_fully_bayesian_model_nuts's default
INIT_RADIUS = 2.0  # NumPyro's init_to_uniform: uniform(-2, 2) in unconstrained space
# Unconstrained layouts: log outputscale, mean, [log raw noise,] log tausq, then d log inverse lengthscales.
# The noise coordinate exists only when the noise is inferred; with observed noise (train_Yvar) it is absent.
_HEAD = 4
_HEAD_FIXED = 3


def head_size(fixed_noise: bool) -> int:
    """Coordinates before the ``d`` log inverse lengthscales: 3 with observed noise, 4 when it is inferred."""
    return _HEAD_FIXED if fixed_noise else _HEAD


def _gamma_logpdf(x: jax.Array, log_x: jax.Array, concentration: float, rate: float) -> jax.Array:
    return concentration * math.log(rate) - gammaln(concentration) + (concentration - 1.0) * log_x - rate * x


def _half_cauchy_logpdf(x: jax.Array, scale: float) -> jax.Array:
    return math.log(2.0 / (math.pi * scale)) - jnp.log1p((x / scale) ** 2)


def potential(z: jax.Array, X: jax.Array, y: jax.Array, mask: jax.Array, yvar: jax.Array | None = None) -> jax.Array:
    """Negative log joint density (with the log-Jacobians of the ``exp`` transforms) of the SAAS GP.

    Args:
        z: the unconstrained parameters, ``4 + d`` (inferred noise) or ``3 + d`` (``yvar`` given).
        X: ``n x d`` padded inputs; y: ``n`` padded (standardised) outputs; mask: ``n``, 1 for real rows.
        yvar: ``n`` padded observed noise variances in the units of ``y`` (BoTorch's transformed and
            clamped ``train_Yvar``), or None to infer one noise level (then ``z[2]`` is its log).
    """
    if yvar is None:
        u_scale, mean, u_noise, u_tau, u_inv = z[0], z[1], z[2], z[3], z[_HEAD:]
        noise = jnp.exp(u_noise)
        log_prior = _gamma_logpdf(noise, u_noise, *NOISE_PRIOR) + u_noise
        diagonal = MIN_NOISE + noise
    else:  # BoTorch's sample_noise returns train_Yvar as is: no noise site, no MIN_NOISE added
        u_scale, mean, u_tau, u_inv = z[0], z[1], z[2], z[_HEAD_FIXED:]
        log_prior = 0.0
        diagonal = yvar
    scale, tausq, inv = jnp.exp(u_scale), jnp.exp(u_tau), jnp.exp(u_inv)
    log_prior = log_prior + (
        _gamma_logpdf(scale, u_scale, *OUTPUTSCALE_PRIOR) + u_scale
        - 0.5 * mean**2 - 0.5 * math.log(2 * math.pi)
        + _half_cauchy_logpdf(tausq, TAU_SCALE) + u_tau
        + jnp.sum(_half_cauchy_logpdf(inv, 1.0) + u_inv)
    )
    scaled = X * jnp.sqrt(tausq * inv)
    diff = scaled[:, None, :] - scaled[None, :, :]
    dist = jnp.sqrt(jnp.maximum(jnp.sum(diff**2, axis=-1), 1e-30))
    K = scale * (1 + math.sqrt(5) * dist + 5.0 / 3.0 * dist**2) * jnp.exp(-math.sqrt(5) * dist)
    n = X.shape[0]
    K = (K + jnp.eye(n) * diagonal) * jnp.outer(mask, mask) + jnp.diag(1.0 - mask)
    residual = jnp.where(mask > 0, y - mean, 0.0)
    L = jnp.linalg.cholesky(K)
    white = jax.scipy.linalg.solve_triangular(L, residual, lower=True)
    log_lik = -0.5 * jnp.sum(white**2) - jnp.sum(jnp.log(jnp.diagonal(L))) - 0.5 * n * math.log(2 * math.pi)
    return -(log_prior + log_lik)


def _potential_gen(X: jax.Array, y: jax.Array, mask: jax.Array, yvar: jax.Array | None):
    return partial(potential, X=X, y=y, mask=mask, yvar=yvar)


@partial(jax.jit, static_argnames=("warmup", "samples", "thinning", "adapt_mass", "adapt_step", "max_tree_depth"))
def _run_chains(keys, z0, step0, mass0, X, Y, mask, Yvar=None, *, warmup: int, samples: int, thinning: int,
                adapt_mass: bool, adapt_step: bool = True, max_tree_depth: int = MAX_TREE_DEPTH):
    """One NUTS chain per row of ``Y`` (vectorised): kept samples, last z, step size, mass matrix, leapfrog steps.

    ``Yvar`` (rows as ``Y``) fixes the observed noise of every chain; None infers it. The two are
    different programs (None is part of the traced structure), as are different shapes.
    """

    def one(key, z, step, mass, y, yvar):
        init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_gen, algo="NUTS")
        args = (X, y, mask, yvar)
        state = init_kernel(
            z, warmup, step_size=step, inverse_mass_matrix=mass, adapt_mass_matrix=adapt_mass, dense_mass=True,
            adapt_step_size=adapt_step, max_tree_depth=max_tree_depth, model_args=args, rng_key=key,
        )

        def body(s, _):
            s = sample_kernel(s, model_args=args)
            return s, (s.z, s.num_steps)

        state, (zs, steps) = jax.lax.scan(body, state, None, length=warmup + samples)
        adapt = state.adapt_state
        return zs[warmup::thinning], state.z, adapt.step_size, adapt.inverse_mass_matrix, jnp.sum(steps)

    return jax.vmap(one)(keys, z0, step0, mass0, Y, Yvar)


@dataclass(frozen=True)
class ChainState:
    """Where a chain ended: its last unconstrained point, adapted step size and inverse mass matrix."""

    z: np.ndarray
    step_size: float
    inverse_mass_matrix: np.ndarray


@dataclass(frozen=True)
class ChainResult:
    """One objective's fit: BoTorch-ready samples, the chain's end state and its leapfrog steps."""

    samples: dict[str, np.ndarray]
    state: ChainState
    leapfrog_steps: int


def run_nuts(
    X: np.ndarray,
    Y: np.ndarray,
    *,
    warmup: int,
    samples: int,
    thinning: int,
    seed: int,
    Yvar: np.ndarray | None = None,
    warm: Sequence[ChainState | None] | None = None,
    warm_warmup: int | None = None,
    warm_adapt_step: bool = True,
    max_tree_depth: int = MAX_TREE_DEPTH,
) -> list[ChainResult]:
    """NUTS on the SAAS model of each column of ``Y`` (all chains in one vectorised, cached program).

    Args:
        X: ``n x d`` inputs in the unit cube.
        Y: ``n x m`` standardised outputs, one chain per column.
        warmup, samples, thinning: as BoTorch's ``fit_fully_bayesian_model_nuts``.
        seed: the chains' PRNG seed (chain j uses the j-th split key).
        Yvar: ``n x m`` observed noise variances in the units of ``Y`` (as BoTorch's model holds
            them: divided by the outcome transform's squared scale, clamped at ``MIN_NOISE``;
            :func:`standardised_variances`), or None to infer the noise of every column. To mix
            the two, call once per group.
        warm: per column, an earlier chain's end state to start from, or None. When every column
            has one (of the same layout), the chains adapt the step size only, for ``warm_warmup`` steps.
        warm_warmup: warm-up steps of warm chains (default ``warmup // 4``).

    Returns:
        One :class:`ChainResult` per column; its samples have no ``noise`` when ``Yvar`` is given.
    """
    n, d = X.shape
    m = Y.shape[1]
    fixed = Yvar is not None
    head = head_size(fixed)
    size = padded_size(n)
    Xp = np.full((size, d), 0.5, dtype=np.float32)
    Xp[:n] = X
    Yp = np.zeros((m, size), dtype=np.float32)
    Yp[:, :n] = Y.T
    if fixed:
        Vp = np.ones((m, size), dtype=np.float32)  # padded rows' variance: masked out, as saas_padded's
        Vp[:, :n] = Yvar.T
    mask = np.zeros(size, dtype=np.float32)
    mask[:n] = 1.0
    keys = jax.random.split(jax.random.PRNGKey(seed), m + 1)
    init_keys, chain_keys = keys[:m], jax.random.split(keys[m], m)
    is_warm = warm is not None and all(s is not None and s.z.shape == (head + d,) for s in warm)
    if is_warm:
        z0 = np.stack([s.z for s in warm]).astype(np.float32)
        step0 = np.array([s.step_size for s in warm], dtype=np.float32)
        mass0 = np.stack([s.inverse_mass_matrix for s in warm]).astype(np.float32)
        n_warmup = warmup // 4 if warm_warmup is None else warm_warmup
    else:
        z0 = np.stack([np.asarray(jax.random.uniform(k, (head + d,), minval=-INIT_RADIUS, maxval=INIT_RADIUS))
                       for k in init_keys]).astype(np.float32)
        step0 = np.ones(m, dtype=np.float32)
        mass0 = np.broadcast_to(np.eye(head + d, dtype=np.float32), (m, head + d, head + d)).copy()
        n_warmup = warmup
    kept, last, step, mass, steps = _run_chains(
        chain_keys, jnp.asarray(z0), jnp.asarray(step0), jnp.asarray(mass0), jnp.asarray(Xp), jnp.asarray(Yp),
        jnp.asarray(mask), jnp.asarray(Vp) if fixed else None, warmup=n_warmup, samples=samples,
        thinning=thinning, adapt_mass=not is_warm, adapt_step=not is_warm or warm_adapt_step,
        max_tree_depth=max_tree_depth,
    )
    kept, last, step, mass, steps = (np.asarray(a) for a in (kept, last, step, mass, steps))
    out = []
    for j in range(m):
        zs = kept[j].astype(np.float64)
        draws = {
            "outputscale": np.exp(zs[:, 0]),
            "mean": zs[:, 1],
            "lengthscale": 1.0 / np.sqrt(np.exp(zs[:, head - 1 : head] + zs[:, head:])),
        }
        if not fixed:
            draws["noise"] = np.exp(zs[:, 2])
        out.append(ChainResult(
            samples=draws,
            state=ChainState(last[j].copy(), float(step[j]), mass[j].copy()),
            leapfrog_steps=int(steps[j]),
        ))
    return out


def load_samples(model: "SaasFullyBayesianSingleTaskGP", samples: dict[str, np.ndarray]) -> None:
    """Load samples into a BoTorch SAAS model as ``fit_fully_bayesian_model_nuts`` does, and set it to eval.

    A model built with ``train_Yvar`` takes no ``noise`` samples: BoTorch gives it a
    ``FixedNoiseGaussianLikelihood`` holding its (transformed, clamped) ``train_Yvar``.
    """
    import torch

    like = {"dtype": model.train_inputs[0].dtype, "device": model.train_inputs[0].device}
    model.train()
    model.load_mcmc_samples({k: torch.as_tensor(v, **like) for k, v in samples.items()})
    model.eval()


def standardised_targets(model: "SaasFullyBayesianSingleTaskGP") -> "torch.Tensor":
    """The (outcome-transformed) training targets the model's NUTS fit sees, ``n``."""
    return model.pyro_model.train_Y.reshape(-1)


def standardised_variances(model: "SaasFullyBayesianSingleTaskGP") -> "torch.Tensor | None":
    """The observed noise variances the model's NUTS fit sees, ``n`` (None when the noise is inferred).

    BoTorch divides ``train_Yvar`` by the outcome transform's squared scale (``Standardize``:
    the outputs' sample variance) and then clamps it at ``MIN_NOISE``; this is that tensor.
    """
    yvar = model.pyro_model.train_Yvar
    return None if yvar is None else yvar.reshape(-1)


def standardise(raw: np.ndarray, raw_var: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``n x m`` outputs (and observed variances) standardised per column as BoTorch's ``Standardize(m=1)``
    and ``SaasFullyBayesianSingleTaskGP`` do: sample std (``ddof=1``, 1 when below 1e-8 or n = 1), the
    variances divided by its square and clamped at ``MIN_NOISE``."""
    raw = np.asarray(raw, dtype=np.float64)
    std = raw.std(axis=0, ddof=1) if len(raw) > 1 else np.ones(raw.shape[1])
    std = np.where(std >= 1e-8, std, 1.0)
    targets = (raw - raw.mean(axis=0)) / std
    if raw_var is None:
        return targets, None
    return targets, np.maximum(np.asarray(raw_var, dtype=np.float64) / std**2, MIN_NOISE)
