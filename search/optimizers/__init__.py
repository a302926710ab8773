"""Optimisers behind one interface; importing this package registers the built-in ones.

The modules import torch, BoTorch and Optuna inside their methods, so importing is cheap.
"""

from search.optimizers import ax_optimizers, gp, optuna_samplers, quasi_random, saas  # noqa: F401  (registration)
from search.optimizers.base import (
    AcquisitionOptions,
    Observation,
    Optimizer,
    check_optimizer,
    get_optimizer,
    make_optimizer,
    optimizer_names,
    register_optimizer,
)

__all__ = [
    "AcquisitionOptions", "check_optimizer", "Observation", "Optimizer", "get_optimizer", "make_optimizer", "optimizer_names",
    "register_optimizer",
]
