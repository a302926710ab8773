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

    from search.optimizers.saas.padded_model import PaddedSaasFullyBayesianSingleTaskGP, padded_size

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


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_consecutive_nuts_fits_do_not_pile_up_memory_mappings(monkeypatch):
    """Each fit used to keep its compiled program: ~600 mappings a fit, a crash at vm.max_map_count."""
    from search.optimizers import make_optimizer
    from search.optimizers.saas import padded_model as saas_padded

    monkeypatch.setattr(saas_padded, "RELEASE_EVERY", 2)
    monkeypatch.setattr(saas_padded, "_fits_since_release", 0)  # earlier tests fitted too
    from search.space import parse_space

    space = parse_space(
        "name: m\nobjectives: {a: max}\nparameters:\n  x: {type: float, low: 0.0, high: 1.0}\n"
        "  y: {type: float, low: 0.0, high: 1.0}\noptimizer: {nuts: {warmup: 8, samples: 4, thinning: 2}}\n", "m.yaml")
    optimizer = make_optimizer("saas-nehvi", space)
    torch.manual_seed(0)
    X = torch.rand(12, 2, dtype=torch.double)
    y = (X.sum(dim=-1, keepdim=True) - 1.0) ** 2

    def maps() -> int:
        with open("/proc/self/maps") as handle:
            return sum(1 for _ in handle)

    optimizer.fit_model(X, y, seed=0)
    optimizer.fit_model(X, y, seed=1)  # released here
    before = maps()
    for seed in range(2, 6):
        optimizer.fit_model(X, y, seed=seed)
    assert maps() - before < 100  # released after fits 4 and 6: nothing piles up
    assert [saas_padded.release_compiled_programs() for _ in range(4)] == [False, True, False, True]
