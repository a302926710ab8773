"""A SAAS GP whose NUTS fit reuses JAX compilations as the data grow.

NumPyro compiles the NUTS kernel for the shape of the training data, so every new
observation (n -> n+1) costs a fresh compilation: on a 2-core CPU that is most of a
``saas-nehvi`` suggestion. :class:`PaddedSaasPyroModel` pads the data the sampler sees to a
bucket of ``PAD_BUCKET`` rows and makes the padded rows exactly irrelevant: their covariance
rows and columns are zero except a unit diagonal, and their mean is their own (padded)
value, so the likelihood is that of the real rows times a constant. Fits with n in the same
bucket then share one compiled sampler (the second fit of a suggestion always does).

:func:`enable_compilation_cache` also turns on JAX's persistent compilation cache under
``$PERS_SEARCH_HOME/jax-cache``, so a new process (a resumed study, the next study) reuses
the compiled samplers of earlier ones.

Measured on this project's 2-core CPU (NUTS 16/8/2, 40 dimensions, ``bench`` noise aside):
n 20 -> 21 recompiles 286 XLA programs (24 s) for the plain model and 22 (11 s) padded; a new
process with the persistent cache fits n=21 in 3.6 s after the first fit.

This subclasses BoTorch's ``SaasPyroModel`` (the same priors and post-processing); only the
observation likelihood is masked. The posterior BoTorch builds after the fit uses the real,
unpadded data.
"""

from __future__ import annotations

import gc
import math

import jax.numpy as jnp
import numpyro
import numpyro.distributions as numpyro_dist
from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP, SaasPyroModel

from runners.home import tool_home

PAD_BUCKET = 16
_CACHE_ENABLED = False


def enable_compilation_cache() -> None:
    """Point JAX's persistent compilation cache at the tool home (once per process)."""
    global _CACHE_ENABLED
    if _CACHE_ENABLED:
        return
    import jax

    directory = tool_home() / "jax-cache"
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _CACHE_ENABLED = True


RELEASE_EVERY = 8
_fits_since_release = 0


def release_compiled_programs() -> bool:
    """Every ``RELEASE_EVERY`` NUTS fits, drop JAX's in-memory compiled programs (the disk cache stays).

    Every fit jit-compiles a new closure over its data and JAX keeps each compiled program alive,
    with its LLVM code mappings: about 600 memory mappings and 50 MB a fit, never released. A
    bench process reached Linux's ``vm.max_map_count`` (65530) after about 50 suggestions and
    LLVM crashed with "Cannot allocate memory". Clearing (``jax.clear_caches``) costs a few
    seconds of re-tracing and cache reloads, so it is done every few fits, which bounds both.

    Returns:
        True when the programs were released by this call.
    """
    global _fits_since_release
    _fits_since_release += 1
    if _fits_since_release < RELEASE_EVERY:
        return False

    import jax

    jax.clear_caches()
    gc.collect()
    _fits_since_release = 0
    return True


def padded_size(n: int) -> int:
    """``n`` rounded up to a multiple of :data:`PAD_BUCKET` (at least one bucket)."""
    return max(PAD_BUCKET, int(math.ceil(n / PAD_BUCKET)) * PAD_BUCKET)


class PaddedSaasPyroModel(SaasPyroModel):
    """``SaasPyroModel`` with training data padded to a bucket size and masked out."""

    def set_inputs(self, train_X, train_Y, train_Yvar=None, task_feature=None, task_rank=None) -> None:
        super().set_inputs(train_X, train_Y, train_Yvar, task_feature, task_rank)
        n = self.train_X_jax.shape[0]
        size = padded_size(n)
        pad = size - n
        # padded inputs sit at the centre of the cube; their kernel entries are masked anyway
        self.train_X_jax = jnp.concatenate([self.train_X_jax, jnp.full((pad, self.train_X_jax.shape[1]), 0.5)])
        self.train_Y_jax = jnp.concatenate([self.train_Y_jax, jnp.zeros((pad, 1))])
        if self.train_Yvar_jax is not None:  # observed noise (the trials' squared standard errors)
            self.train_Yvar_jax = jnp.concatenate([self.train_Yvar_jax, jnp.ones((pad, 1))])
        self.row_mask = jnp.concatenate([jnp.ones(n), jnp.zeros(pad)])

    def sample_observations(self, mean, K_noiseless, noise) -> None:
        mask = getattr(self, "row_mask", None)
        if mask is None or self._prior_mode:
            return super().sample_observations(mean, K_noiseless, noise)
        n = self.train_X_jax.shape[0]
        y = jnp.squeeze(self.train_Y_jax, axis=-1)
        K = (K_noiseless + noise * jnp.eye(n)) * jnp.outer(mask, mask) + jnp.diag(1.0 - mask)
        loc = jnp.where(mask > 0, jnp.broadcast_to(jnp.reshape(mean, (-1,)), (n,)), y)
        numpyro.sample("Y", numpyro_dist.MultivariateNormal(loc=loc, covariance_matrix=K), obs=y)


class PaddedSaasFullyBayesianSingleTaskGP(SaasFullyBayesianSingleTaskGP):
    """``SaasFullyBayesianSingleTaskGP`` fitted through :class:`PaddedSaasPyroModel`."""

    _pyro_model_class = PaddedSaasPyroModel
