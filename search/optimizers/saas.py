"""SAAS surrogates with qLogNEHVI: ``saas-nehvi`` (fully Bayesian, NUTS) and ``saas-map`` (MAP ensemble).

The sparse axis-aligned subspace prior (Eriksson & Jankowiak, 2021) shrinks every inverse
lengthscale towards zero, so only the few dimensions the data support get used: the right prior
for 30 layer flags of which a handful matter (MiLP, AutoPEFT).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from search.optimizers.base import Observation, register_optimizer
from search.optimizers.gp import NEHVIOptimizer

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model

# Quantiles 0.2, 0.4, 0.6, 0.8 of HalfCauchy(0.1), BoTorch's prior on the global shrinkage tau:
# fixed rather than sampled so that a fit is reproducible under a seed.
_ENSEMBLE_TAUS = (0.0325, 0.0727, 0.1376, 0.3078)


def fit_map_saas(X: "torch.Tensor", y: "torch.Tensor") -> "Model":
    """Fit BoTorch's ``EnsembleMapSaasSingleTaskGP`` (one MAP SAAS GP per tau, ensembled).

    Args:
        X: ``n x d`` inputs in the unit cube.
        y: ``n x 1`` outputs.

    Returns:
        The fitted ensemble model.
    """
    import torch
    from botorch.fit import fit_gpytorch_mll
    from botorch.models.map_saas import EnsembleMapSaasSingleTaskGP
    from gpytorch.mlls import ExactMarginalLogLikelihood

    taus = torch.tensor(_ENSEMBLE_TAUS, dtype=X.dtype)
    model = EnsembleMapSaasSingleTaskGP(X, y, num_taus=len(taus), taus=taus)  # default: batched Standardize
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model


@register_optimizer("saas-nehvi")
class SaasNEHVI(NEHVIOptimizer):
    """``SaasFullyBayesianSingleTaskGP`` per learned metric, fitted with NUTS, and qLogNEHVI.

    NUTS warm-up, samples and thinning come from ``optimizer.nuts``. When
    ``optimizer.max_seconds_per_suggestion`` is set and a suggestion took longer, the next
    suggestions use the MAP ensemble fit of ``saas-map`` instead (with a warning).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_map = False
        self.last_seconds = 0.0

    def suggest(self, history: list[Observation], n: int) -> list[dict[str, Any]]:
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
        out = super().suggest(history, n)
        self.last_seconds = time.perf_counter() - start
        return out

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int) -> "Model":
        """Fit a fully Bayesian SAAS GP with NUTS (or the MAP ensemble past the time cap)."""
        if self.use_map:
            return fit_map_saas(X, y)
        from botorch.fit import fit_fully_bayesian_model_nuts
        from botorch.models.transforms.outcome import Standardize

        from search.optimizers.saas_padded import (
            PaddedSaasFullyBayesianSingleTaskGP,
            enable_compilation_cache,
            release_compiled_programs,
        )

        enable_compilation_cache()
        nuts = self.space.optimizer.nuts
        model = PaddedSaasFullyBayesianSingleTaskGP(X, y, outcome_transform=Standardize(m=1))
        fit_fully_bayesian_model_nuts(
            model, warmup_steps=nuts.warmup, num_samples=nuts.samples, thinning=nuts.thinning,
            disable_progbar=True, jit_compile=True, seed=seed,
        )
        release_compiled_programs()
        return model


@register_optimizer("saas-map")
class SaasMAP(NEHVIOptimizer):
    """BoTorch's ``EnsembleMapSaasSingleTaskGP`` per learned metric (MAP fits, seconds), and qLogNEHVI."""

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int) -> "Model":
        """Fit the MAP SAAS ensemble."""
        return fit_map_saas(X, y)
