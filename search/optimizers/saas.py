"""SAAS surrogates with qLogNEHVI: ``saas-nehvi`` (fully Bayesian, NUTS) and ``saas-map`` (MAP ensemble).

The sparse axis-aligned subspace prior (Eriksson & Jankowiak, 2021) shrinks every inverse
lengthscale towards zero, so only the few dimensions the data support get used: the right prior
for 30 layer flags of which a handful matter (MiLP, AutoPEFT).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from search.optimizers.base import Observation, register_optimizer
from search.optimizers.gp import NEHVIOptimizer

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model

# Quantiles 0.2, 0.4, 0.6, 0.8 of HalfCauchy(0.1), BoTorch's prior on the global shrinkage tau:
# fixed rather than sampled so that a fit is reproducible under a seed.
_ENSEMBLE_TAUS = (0.0325, 0.0727, 0.1376, 0.3078)

# A continuous dimension is irrelevant to a model when moving it across its whole range changes the
# (standardised) output by less than this many standard deviations: the prior standard deviation
# of f(x + e_i) - f(x) under the fitted kernel, median over the MCMC samples or taus. A lengthscale
# alone would not do: a linear effect fits with a long lengthscale and a large outputscale. On
# DTLZ2 the NUTS fits score the four g dimensions 0.1-1.0 and x0, x1 1.0-2.5 in the models where
# they matter; 0.5 held too little (docs/notes/search-core.md).
IRRELEVANT_EFFECT = 1.0


def dimension_effects(model: "Model", d: int) -> "torch.Tensor":
    """Per input dimension, the prior std of the change in output when it moves from 0 to 1.

    ``sqrt(2 (k(x, x) - k(x, x + e_i)))`` for the model's stationary kernel, median over the
    model's batch (MCMC samples, taus).
    """
    import torch

    like = {"dtype": model.train_inputs[0].dtype, "device": model.train_inputs[0].device}
    origin = torch.zeros(1, d, **like)
    with torch.no_grad():
        k00 = model.covar_module(origin, origin).to_dense()[..., 0, 0]
        k0i = model.covar_module(origin, torch.eye(d, **like)).to_dense()[..., 0, :]
    effects = (2 * (k00.unsqueeze(-1) - k0i)).clamp_min(0).sqrt()
    return effects.reshape(-1, d).median(0).values


class SaasOptimizer(NEHVIOptimizer):
    """What the SAAS optimisers share: continuous dimensions their models drop are held at the front's knee."""

    def irrelevant_dims(self, model: "Model") -> list[int]:
        """Continuous dimensions whose effect is below ``IRRELEVANT_EFFECT`` in every learned model.

        The effect is :func:`dimension_effects`. A dimension a known objective depends on (storage,
        say) is never held: the acquisition computes that objective exactly and may trade it.
        """
        continuous = [i for i, dim in enumerate(self.encoder.dims) if dim.grid is None]
        learned = [m for m, metric in zip(model.models, self.space.metrics) if metric not in self.known_objectives]
        if not continuous or not learned:
            return []
        effects = [dimension_effects(m, self.encoder.d) for m in learned]
        return [
            i for i in continuous
            if all(float(e[i]) < IRRELEVANT_EFFECT for e in effects) and not self.moves_known_objectives(i)
        ]

    def moves_known_objectives(self, i: int) -> bool:
        """True when moving dimension ``i`` of the front's knee from 0 to 1 changes a known objective."""
        if not self.known_objectives or self.incumbent is None:
            return False
        x = [float(v) for v in self.incumbent]
        ends = [self.encoder.decode(x[:i] + [end] + x[i + 1 :]) for end in (0.0, 1.0)]
        return any(fn(ends[0]) != fn(ends[1]) for fn in self.known_objectives.values())


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

    taus = torch.tensor(_ENSEMBLE_TAUS, dtype=X.dtype)
    model = EnsembleMapSaasSingleTaskGP(X, y, train_Yvar=yvar, num_taus=len(taus), taus=taus)  # batched Standardize
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


@register_optimizer("saas-nehvi")
class SaasNEHVI(SaasOptimizer):
    """``SaasFullyBayesianSingleTaskGP`` per learned metric, fitted with NUTS, and qLogNEHVI.

    NUTS warm-up, samples and thinning come from ``optimizer.nuts``. When
    ``optimizer.max_seconds_per_suggestion`` is set and a suggestion took longer, the next
    suggestions use the MAP ensemble fit of ``saas-map`` instead (with a warning).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_map = False
        self.last_seconds = 0.0

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new configurations (see :meth:`Optimizer.suggest`)."""
        cap = self.space.optimizer.max_seconds_per_suggestion
        if cap is not None and self.last_seconds > cap and not self.use_map:
            warnings.warn(
                f"saas-nehvi: the last suggestion took {self.last_seconds:.0f} s > "
                f"max_seconds_per_suggestion={cap:g}; switching to the MAP SAAS fit (saas-map)",
                RuntimeWarning,
                stacklevel=2,
            )
            self.use_map = True
        start = time.perf_counter()
        out = super().suggest(history, n, pending)
        self.last_seconds = time.perf_counter() - start
        return out

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit a fully Bayesian SAAS GP with NUTS (or the MAP ensemble past the time cap); with
        ``yvar``, the observed noise is fixed instead of sampled."""
        if self.use_map:
            return fit_map_saas(X, y, yvar)
        from botorch.fit import fit_fully_bayesian_model_nuts
        from botorch.models.transforms.outcome import Standardize

        from search.optimizers.saas_padded import (  # imports jax and numpyro: deferred to the first SAAS fit
            PaddedSaasFullyBayesianSingleTaskGP,
            enable_compilation_cache,
            release_compiled_programs,
        )

        enable_compilation_cache()
        nuts = self.space.optimizer.nuts
        model = PaddedSaasFullyBayesianSingleTaskGP(X, y, train_Yvar=yvar, outcome_transform=Standardize(m=1))
        fit_fully_bayesian_model_nuts(
            model, warmup_steps=nuts.warmup, num_samples=nuts.samples, thinning=nuts.thinning,
            disable_progbar=True, jit_compile=True, seed=seed,
        )
        release_compiled_programs()
        return model


@register_optimizer("saas-map")
class SaasMAP(SaasOptimizer):
    """BoTorch's ``EnsembleMapSaasSingleTaskGP`` per learned metric (MAP fits, seconds), and qLogNEHVI."""

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit the MAP SAAS ensemble (fixed observed noise ``yvar`` when given)."""
        return fit_map_saas(X, y, yvar)
