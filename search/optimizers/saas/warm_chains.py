"""Warm NUTS chains of ``saas-nehvi``'s vectorised fit (``SaasSettings.warm_chains``).

A fit on n observations starts its chains where a cold fit on the first ``n - n % ANCHOR_EVERY``
(the anchor) ended, with its step size and mass matrix (:func:`warm_settings`). The anchor fit is
a function of the history alone (data and seed), so a rebuilt optimiser refits it and suggests
what an uninterrupted one would. Not the space's ``warm_start`` (a per-user search's transfer from
the users searched before).

The chains themselves run in :mod:`search.optimizers.saas.nuts`, which imports JAX and NumPyro:
this module imports it inside its functions, so the optimiser can import this one at its top.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from search.optimizers.base import derive_seed

ANCHOR_EVERY = 8
#: Anchors kept per optimiser (the most recent ones; a study only ever reuses the last).
ANCHORS_KEPT = 4


class WarmChains:
    """Runs a fit's NUTS chains cold, as an anchor, or warm from the anchor's end states (cached by content).

    Args:
        seed: the optimiser's base seed (an anchor fit's seed derives from it and the anchor's size).
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        #: content key of an anchor's data -> its chains' end states.
        self.anchors: dict[str, list[Any]] = {}

    def run(self, inputs: np.ndarray, raw: np.ndarray, raw_var: list[Any], targets: np.ndarray,
            variances: list[Any], settings: dict[str, int], seed: int, warm: bool) -> list[Any]:
        """NUTS on every column of ``targets``: :func:`run_grouped`'s results, one per column.

        Args:
            inputs: ``n x d`` inputs.
            raw: ``n x m`` raw outputs (the anchor is standardised from them).
            raw_var: per column, the ``n`` observed noise variances, or None when inferred.
            targets: ``n x m`` standardised outputs.
            variances: per column, the standardised variances, or None.
            settings: the cold fit's ``warmup``, ``samples`` and ``thinning``.
            seed: the seed of a fit that is not an anchor.
            warm: start from an anchor at all (off: every fit is cold).
        """
        n = len(inputs)
        anchor = n - n % ANCHOR_EVERY if warm else 0
        if anchor == n:  # this fit is an anchor: its seed is the anchor's, so a resumed study refits it alike
            results = run_grouped(inputs, targets, variances, seed=derive_seed(self.seed, n, "nuts-anchor"), **settings)
            self._remember(inputs, raw, raw_var, results)
            return results
        if anchor >= 2:
            states = self._anchor_states(inputs[:anchor], raw[:anchor],
                                         [v if v is None else v[:anchor] for v in raw_var], settings)
            return run_grouped(inputs, targets, variances, seed=seed, warm=states, **warm_settings(settings))
        return run_grouped(inputs, targets, variances, seed=seed, **settings)

    def _anchor_states(self, X: Any, raw: Any, raw_var: list[Any], settings: dict[str, int]) -> list[Any]:
        """The end states of the cold fit on ``X``, the raw outputs ``raw`` and their observed variances
        ``raw_var`` (per column, None when inferred), cached by content."""
        from search.optimizers.saas.nuts import standardise  # imports jax and numpyro: deferred

        key = _anchor_key(X, raw, raw_var)
        if key not in self.anchors:
            targets = standardise(raw)[0]
            variances = [v if v is None else standardise(raw[:, j : j + 1], v[:, None])[1][:, 0]
                         for j, v in enumerate(raw_var)]
            results = run_grouped(X, targets, variances, seed=derive_seed(self.seed, len(X), "nuts-anchor"), **settings)
            self._remember(X, raw, raw_var, results)
        return self.anchors[key]

    def _remember(self, X: Any, raw: Any, raw_var: list[Any], results: list[Any]) -> None:
        kept = dict(list(self.anchors.items())[-(ANCHORS_KEPT - 1) :])
        self.anchors = {**kept, _anchor_key(X, raw, raw_var): [r.state for r in results]}


def warm_settings(settings: dict[str, int]) -> dict[str, Any]:
    """NUTS settings of a warm chain: ``warmup // 8`` burn-in steps at the anchor's step size and mass
    matrix (no adaptation), then ``samples // 2`` draws thinned by ``thinning // 2``: as many kept
    samples as a cold fit, at about a third of its leapfrog steps."""
    thinning = max(1, settings["thinning"] // 2)
    kept = max(1, settings["samples"] // settings["thinning"])
    return {
        "warmup": settings["warmup"], "warm_warmup": max(1, settings["warmup"] // 8), "warm_adapt_step": False,
        "samples": kept * thinning, "thinning": thinning,
    }


def run_grouped(X: Any, targets: Any, variances: list[Any], *, seed: int, warm: list[Any] | None = None,
                **settings: Any) -> list[Any]:
    """:func:`~search.optimizers.saas.nuts.run_nuts` on the columns of ``targets``, those with observed
    noise (``variances[j]`` not None) in one vectorised run and those whose noise is inferred in
    another; results in column order.

    When every column is of one kind there is one run with ``seed``; with both, the observed-noise run
    takes ``seed + 1``.
    """
    from search.optimizers.saas.nuts import run_nuts  # imports jax and numpyro: deferred to the first SAAS fit

    groups = [[j for j, v in enumerate(variances) if v is None], [j for j, v in enumerate(variances) if v is not None]]
    out: list[Any] = [None] * len(variances)
    for offset, group in enumerate(g for g in groups if g):
        Yvar = None if variances[group[0]] is None else np.stack([variances[j] for j in group], axis=1)
        results = run_nuts(X, targets[:, group], Yvar=Yvar, seed=seed + offset,
                           warm=None if warm is None else [warm[j] for j in group], **settings)
        for j, result in zip(group, results):
            out[j] = result
    return out


def _anchor_key(X: Any, raw: Any, raw_var: list[Any]) -> str:
    """A digest of an anchor's data: the shapes and bytes of the inputs, outputs and variances."""
    digest = hashlib.sha256()
    for a in (X, raw, *[np.zeros(0) if v is None else v for v in raw_var]):
        digest.update(repr(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()
