"""``gp-nehvi``: a standard GP per learned metric under the shared qLogNEHVI machinery (:mod:`search.optimizers.nehvi`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.optimizers.base import register_optimizer
from search.optimizers.nehvi import NEHVIOptimizer

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model


@register_optimizer("gp-nehvi")
class GPNEHVI(NEHVIOptimizer):
    """A standard ``SingleTaskGP`` per learned metric (ARD Matern, MAP fit), with qLogNEHVI."""

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit a ``SingleTaskGP`` with standardised outputs by maximising the marginal likelihood
        (fixed observed noise ``yvar`` when given)."""
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        model = SingleTaskGP(X, y, train_Yvar=yvar, outcome_transform=Standardize(m=1))
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        return model
