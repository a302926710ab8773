"""Which continuous dimensions a fitted SAAS surrogate ignores (they are then held at the front's knee).

A continuous dimension is irrelevant to a model when moving it across its whole range changes the
(standardised) output by less than :data:`IRRELEVANT_EFFECT` standard deviations: the prior standard
deviation of f(x + e_i) - f(x) under the fitted kernel, median over the MCMC samples or taus. A
lengthscale alone would not do: a linear effect fits with a long lengthscale and a large
outputscale. On DTLZ2 the NUTS fits score the four g dimensions 0.1-1.0 and x0, x1 1.0-2.5 in the
models where they matter; 0.5 held too little (docs/notes/search-core.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model

IRRELEVANT_EFFECT = 1.0


def dimension_effects(model: "Model", d: int) -> "torch.Tensor":
    """Per input dimension, the prior std of the change in output when it moves from 0 to 1.

    ``sqrt(2 (k(x, x) - k(x, x + e_i)))`` for the model's stationary kernel, median over the
    model's batch (MCMC samples, taus). A model with more inputs than ``d`` (the same-user input of
    a warm-started per-user search) is measured on all of them and the first ``d`` are returned.
    """
    import torch

    like = {"dtype": model.train_inputs[0].dtype, "device": model.train_inputs[0].device}
    inputs = model.train_inputs[0].shape[-1]
    origin = torch.zeros(1, inputs, **like)
    with torch.no_grad():
        k00 = model.covar_module(origin, origin).to_dense()[..., 0, 0]
        k0i = model.covar_module(origin, torch.eye(inputs, **like)).to_dense()[..., 0, :]
    effects = (2 * (k00.unsqueeze(-1) - k0i)).clamp_min(0).sqrt()
    return effects.reshape(-1, inputs).median(0).values[:d]
