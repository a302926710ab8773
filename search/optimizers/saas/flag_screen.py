"""Layer-flag screening: a sparse linear model decides which layer flags the SAAS surrogates see one by one.

At 20-40 observations of a 30-flag layer mask, the SAAS GP's lengthscales do not separate the few
flags that carry an objective from the many that only cost storage: the flags of a study's points
are correlated (dense masks early, the front's flags later), and the surrogate ends up crediting
the *number* of flags on. A sparse Bayesian linear regression does separate them once the data
can (BOCS, Baptista & Poloczek 2018, uses the same horseshoe model for binary inputs):
``bench/flag_identifiability.py`` finds 2.8 of the 4 quality flags of ``mixed-large`` at 20
independent random evaluations, 3.5 at 30 and all 4 at 40.

:func:`screen_flags` fits, for each learned objective, ``y = b0 + (X - mean X) beta + noise`` with a
horseshoe prior on every encoded input (NumPyro NUTS, data padded to a bucket of 16 rows) and keeps a layer flag when its posterior mean
``|beta|`` (the objective's change, in its standard deviations, when the flag turns on) is at
least ``threshold`` for some objective. :class:`ScreenedFlags` is the input transform the fitted
surrogates then carry: the kept flags stay as they are; the others are summed into one input, the
share of them that is on (in the first screened flag's column; the rest read 0). The surrogates
keep what the number of layers on is worth, lose which of the screened layers they are, and a
screened flag costs only its storage in the acquisition: the search turns it off, and when that
loses quality, the next screen sees the flag.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from search.optimizers.saas.padded_model import padded_size, release_compiled_programs

if TYPE_CHECKING:
    import torch

#: Keep a flag whose posterior mean |effect| reaches this many standard deviations of some objective.
THRESHOLD = 0.1
#: Screen only from this many observations on: with fewer, independent random designs identify
#: half of the quality flags or less (``bench/flag_identifiability.py``), so the screen would guess.
SCREEN_FROM = 20
WARMUP, SAMPLES = 200, 200
GLOBAL_SCALE = 0.1  # HalfCauchy scale of the global shrinkage tau


def _model(X, y, mask):  # noqa: ANN001 - NumPyro model
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    tau = numpyro.sample("tau", dist.HalfCauchy(GLOBAL_SCALE))
    lam = numpyro.sample("lam", dist.HalfCauchy(jnp.ones(X.shape[1])))
    beta = numpyro.sample("beta", dist.Normal(0.0, tau * lam))
    b0 = numpyro.sample("b0", dist.Normal(0.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.handlers.mask(mask=mask > 0):
        numpyro.sample("y", dist.Normal(b0 + X @ beta, sigma), obs=y)


def horseshoe_effects(X: np.ndarray, Y: np.ndarray, seed: int, *, warmup: int = WARMUP,
                      samples: int = SAMPLES) -> np.ndarray:
    """Posterior mean ``|beta|`` of every input for every column of ``Y`` (``m x d``), in standard deviations.

    Args:
        X: ``n x d`` encoded inputs.
        Y: ``n x m`` outputs; each column is standardised (a constant column gets zero effects).
        seed: the chains' PRNG seed (column j uses ``seed + j``).
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    size = padded_size(n)
    Xp = np.zeros((size, d), dtype=np.float32)
    Xp[:n] = X - X.mean(axis=0)
    mask = np.zeros(size, dtype=np.float32)
    mask[:n] = 1.0
    out = np.zeros((Y.shape[1], d))
    for j in range(Y.shape[1]):
        y = np.asarray(Y[:, j], dtype=np.float64)
        std = y.std()
        if n < 2 or std < 1e-12:
            continue
        yp = np.zeros(size, dtype=np.float32)
        yp[:n] = (y - y.mean()) / std
        mcmc = MCMC(NUTS(_model), num_warmup=warmup, num_samples=samples, progress_bar=False, jit_model_args=True)
        mcmc.run(jax.random.PRNGKey(seed + j), Xp, yp, mask)
        out[j] = np.abs(np.asarray(mcmc.get_samples()["beta"], dtype=np.float64)).mean(axis=0)
        # NumPyro compiles each run anew (about 1000 memory mappings a fit, measured): without this a bench
        # process hit vm.max_map_count after about 60 screened suggestions ("LLVM compilation error: Cannot
        # allocate memory"). Every few fits the compiled programs are dropped (the disk cache keeps them).
        release_compiled_programs()
    return out


def screen_flags(X: np.ndarray, Y: np.ndarray, flag_dims: Sequence[int], seed: int) -> list[int]:
    """The flag dimensions whose effect stays below :data:`THRESHOLD` for every column of ``Y`` (sorted)."""
    if not flag_dims:
        return []
    effects = horseshoe_effects(X, Y, seed)
    return sorted(i for i in flag_dims if effects[:, i].max() < THRESHOLD)


def screened_inputs(X: "torch.Tensor", screened: Sequence[int]) -> "torch.Tensor":
    """``X`` with the ``screened`` columns replaced by the share of them on (first column) and zeros."""
    if not screened:
        return X
    out = X.clone()
    share = X[..., list(screened)].mean(dim=-1)
    out[..., list(screened)] = 0.0
    out[..., screened[0]] = share
    return out


def screened_flags_transform(screened: Sequence[int]) -> "torch.nn.Module":
    """A BoTorch input transform applying :func:`screened_inputs` at prediction time (training rows are
    given to the model already screened)."""
    import torch
    from botorch.models.transforms.input import InputTransform

    class ScreenedFlags(InputTransform, torch.nn.Module):
        """The screened layer flags seen as one input: the share of them on."""

        def __init__(self) -> None:
            super().__init__()
            self.screened = list(screened)
            self.transform_on_train = False
            self.transform_on_eval = True
            self.transform_on_fantasize = True

        def transform(self, X: torch.Tensor) -> torch.Tensor:
            return screened_inputs(X, self.screened)

    return ScreenedFlags()


def attach_screen(model: "torch.nn.Module", screened: Sequence[int]) -> None:
    """Give a fitted surrogate (trained on :func:`screened_inputs`) the screen as its input transform, chained
    before the one it has (the same-user input of a warm-started per-user search)."""
    from botorch.models.transforms.input import ChainedInputTransform

    screen = screened_flags_transform(screened)
    user = getattr(model, "input_transform", None)
    model.input_transform = screen if user is None else ChainedInputTransform(screen=screen, user=user)
