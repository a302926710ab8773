"""The padded SAAS model's likelihood equals the plain one up to a constant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch


def _log_density(model_cls, X, y, params):
    from numpyro.handlers import substitute
    from numpyro.infer.util import log_density

    gp = model_cls(X, y)
    fn = substitute(gp.pyro_model.sample, data=params)
    value, _ = log_density(fn, (), {}, {})
    return float(value)


def test_padding_changes_the_likelihood_by_a_constant_only():
    import jax.numpy as jnp
    from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

    from search.optimizers.saas_padded import PaddedSaasFullyBayesianSingleTaskGP, padded_size

    torch.manual_seed(0)
    X = torch.rand(11, 5, dtype=torch.double)
    y = torch.randn(11, 1, dtype=torch.double)
    assert padded_size(11) == 16 and padded_size(16) == 16 and padded_size(17) == 32
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(4):
        params = {
            "outputscale": jnp.array(rng.uniform(0.5, 2.0)),
            "mean": jnp.array(rng.normal()),
            "noise": jnp.array(rng.uniform(0.01, 0.5)),
            "kernel_tausq": jnp.array(rng.uniform(0.05, 1.0)),
            "_kernel_inv_length_sq": jnp.array(rng.uniform(0.1, 3.0, size=5)),
        }
        plain = _log_density(SaasFullyBayesianSingleTaskGP, X, y, params)
        padded = _log_density(PaddedSaasFullyBayesianSingleTaskGP, X, y, params)
        diffs.append(padded - plain)
    # 5 padded rows, each a unit normal evaluated at its mean: -0.5*log(2*pi) each
    assert diffs == pytest.approx([-2.5 * math.log(2 * math.pi)] * 4, abs=1e-4)  # JAX float32
