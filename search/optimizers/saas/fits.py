"""The three ways a SAAS surrogate is fitted: the MAP ensemble, BoTorch's NUTS, the vectorised NUTS.

:func:`fit_map_saas` is ``saas-map``'s (and ``saas-nehvi``'s past its time cap); :func:`fit_vectorised`
is ``saas-nehvi``'s (every learned metric's chain in one compiled program, warm chains through
:class:`~search.optimizers.saas.warm_chains.WarmChains`); :func:`fit_botorch_nuts` is BoTorch's own
NUTS fit, kept as the benchmark's reference (``SaasSettings.nuts_engine = "botorch"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model

    from search.optimizers.saas.warm_chains import WarmChains
    from search.space import NutsSettings

# Quantiles 0.2, 0.4, 0.6, 0.8 of HalfCauchy(0.1), BoTorch's prior on the global shrinkage tau:
# fixed rather than sampled so that a fit is reproducible under a seed.
ENSEMBLE_TAUS = (0.0325, 0.0727, 0.1376, 0.3078)


def fit_map_saas(X: "torch.Tensor", y: "torch.Tensor", yvar: "torch.Tensor | None" = None) -> "Model":
    """Fit BoTorch's ``EnsembleMapSaasSingleTaskGP`` (one MAP SAAS GP per tau, ensembled).

    Args:
        X: ``n x d`` inputs in the unit cube.
        y: ``n x 1`` outputs.
        yvar: ``n x 1`` observed noise variances, or None to infer the noise.

    Returns:
        The fitted ensemble model.
    """
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    taus = torch.tensor(ENSEMBLE_TAUS, dtype=X.dtype)
    model = EnsembleMapSaasSingleTaskGP(X, y, train_Yvar=yvar, num_taus=len(taus), taus=taus)  # batched Standardize
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


def fit_botorch_nuts(X: "torch.Tensor", y: "torch.Tensor", yvar: "torch.Tensor | None", nuts: "NutsSettings",
                     seed: int) -> "Model":
    """One fully Bayesian SAAS GP fitted by BoTorch's ``fit_fully_bayesian_model_nuts`` (on the padded
    model of :mod:`search.optimizers.saas.padded_model`); with ``yvar``, the observed noise is fixed."""
    from botorch.fit import fit_fully_bayesian_model_nuts
    from botorch.models.transforms.outcome import Standardize

    from search.optimizers.saas.padded_model import (  # imports jax and numpyro: deferred to the first SAAS fit
        PaddedSaasFullyBayesianSingleTaskGP,
        enable_compilation_cache,
        release_compiled_programs,
    )

    enable_compilation_cache()
    model = PaddedSaasFullyBayesianSingleTaskGP(X, y, train_Yvar=yvar, outcome_transform=Standardize(m=1))
    fit_fully_bayesian_model_nuts(
        model, warmup_steps=nuts.warmup, num_samples=nuts.samples, thinning=nuts.thinning,
        disable_progbar=True, jit_compile=True, seed=seed,
    )
    release_compiled_programs()
    return model


def fit_vectorised(X: "torch.Tensor", Y: "torch.Tensor", columns: list[int],
                   yvars: "dict[int, torch.Tensor | None]", nuts: "NutsSettings", seed: int, chains: "WarmChains",
                   warm: bool) -> tuple[list["Model"], list[Any]]:
    """Every learned metric's SAAS GP fitted by one vectorised NUTS run per kind of noise.

    A metric with observed noise (``yvars[j]``, the trials' squared standard errors) gets BoTorch's
    model with ``train_Yvar`` (fixed noise, no noise variable in its chain), one without infers the
    noise; when both kinds are present, each kind is one vectorised run.

    Args:
        X: ``n x d`` inputs.
        Y: ``n x m`` signed outputs.
        columns: the learned metrics' columns of ``Y``.
        yvars: per column, the observed noise variances (``n x 1``) or None.
        nuts: warm-up, samples and thinning of a cold fit.
        seed: the fit's seed (an anchor fit takes the anchor's).
        chains: the optimiser's warm chains (anchors cached across calls).
        warm: start warm from an anchor (``SaasSettings.warm_chains``, and no earlier users' trials).

    Returns:
        The models (one per column, samples loaded) and the chains' results.
    """
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    from search.optimizers.saas.nuts import (  # imports jax and numpyro: deferred to the first SAAS fit
        load_samples,
        standardised_targets,
        standardised_variances,
    )
    from search.optimizers.saas.padded_model import enable_compilation_cache  # imports jax as well: deferred

    enable_compilation_cache()
    models = [
        SaasFullyBayesianSingleTaskGP(X, Y[:, j : j + 1], train_Yvar=yvars[j], outcome_transform=Standardize(m=1))
        for j in columns
    ]
    targets = np.stack([standardised_targets(m).numpy() for m in models], axis=1)
    variances = [standardised_variances(m) for m in models]
    variances = [None if v is None else v.numpy() for v in variances]
    settings = {"warmup": nuts.warmup, "samples": nuts.samples, "thinning": nuts.thinning}
    raw_var = [None if yvars[j] is None else yvars[j].numpy().reshape(-1) for j in columns]
    results = chains.run(X.numpy(), Y[:, columns].numpy(), raw_var, targets, variances, settings, seed, warm)
    for model, result in zip(models, results):
        load_samples(model, result.samples)
    return models, results
