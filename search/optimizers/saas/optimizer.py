"""SAAS surrogates with qLogNEHVI: ``saas-nehvi`` (fully Bayesian, NUTS) and ``saas-map`` (MAP ensemble).

The sparse axis-aligned subspace prior (Eriksson & Jankowiak, 2021) shrinks every inverse
lengthscale towards zero, so only the few dimensions the data support get used: the right prior
for 30 layer flags of which a handful matter (MiLP, AutoPEFT).

One class does both; the two names differ in their default :class:`SaasSettings` (the switches:
how the surrogates are fitted, the start, the layer screen, how the acquisition is searched), and
a space file may change the ones a user would want under ``optimizer.saas``. What is SAAS-specific
on top of :class:`~search.optimizers.nehvi.NEHVIOptimizer`: continuous dimensions the models drop
are held at the front's knee (:mod:`~search.optimizers.saas.relevance`), and on spaces with grid
dimensions the acquisition is searched on the grid from the observed front
(:mod:`~search.optimizers.saas.acquisition_search`).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from search.optimizers.base import Observation, derive_seed, register_optimizer
from search.optimizers.nehvi import NEHVIOptimizer
from search.optimizers.saas import acquisition_search, start_design
from search.optimizers.saas.fits import fit_botorch_nuts, fit_map_saas, fit_vectorised
from search.optimizers.saas.relevance import IRRELEVANT_EFFECT, dimension_effects
from search.optimizers.saas.settings import MAP_DEFAULTS, NUTS_DEFAULTS, SaasSettings
from search.optimizers.saas.warm_chains import WarmChains

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model

    from search.space import Space


@register_optimizer("saas-nehvi")
class SaasNEHVI(NEHVIOptimizer):
    """A SAAS GP per learned metric, fitted with NUTS (``optimizer.nuts``), and qLogNEHVI.

    When ``optimizer.max_seconds_per_suggestion`` is set and a suggestion took longer, the next
    suggestions use the MAP ensemble fit of ``saas-map`` instead (with a warning).

    The start is the storage-spread design (``design = "spread"``): on ``mixed-large`` it raised
    the start's HV@10 from 0.374 to 0.439 (mean of 10 seeds, no model involved) and, with the
    rest of issue 15's changes, HV@20 from 0.647 (one seed) to 0.738 (three seeds); measured again
    on 2026-12-02 (its first point now the zero-storage stratum's most central one), 0.803 over
    five seeds against Ax SAASBO's 0.621 over three; ``docs/notes/search_efficiency.md``.

    Layer flags are screened (``flag_screen``, :mod:`search.optimizers.saas.flag_screen`) from 20
    observations on: on ``mixed-large`` HV@40 went from 0.959 ± 0.015 to 0.976 ± 0.004 (3 seeds,
    ahead in each), HV@20 unchanged.

    Args:
        space: a bound space.
        settings: the switches; None: :attr:`defaults` with the space's ``optimizer.saas`` laid over them.
        **kwargs: :class:`~search.optimizers.base.Optimizer`'s (``seed``, ``known_objectives``, ...).
    """

    #: The settings of this registered name when the space chooses nothing.
    defaults: SaasSettings = NUTS_DEFAULTS

    def __init__(self, space: "Space", *, settings: SaasSettings | None = None, **kwargs: Any) -> None:
        super().__init__(space, **kwargs)
        self.settings = settings or self.defaults.with_space(space.optimizer.saas)
        self.use_map = self.settings.fit == "map"
        self.last_seconds = 0.0
        self.last_fit: list[Any] = []
        self.chains = WarmChains(self.seed)
        #: The flag dimensions the last fit screened (empty before ``SCREEN_FROM`` observations or without).
        self.screened: list[int] = []
        self._pool: start_design.DesignPool | None = None

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

    # ----------------------------------------------------------------- the start
    def start_size(self) -> int:
        """:meth:`NEHVIOptimizer.start_size`, capped at ``settings.start_points`` when that is set."""
        size = super().start_size()
        points = self.settings.start_points
        return size if points is None else min(size, points)

    def initial_design(self, history: list[Observation], n: int,
                       pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """With ``design = "spread"``, :func:`~search.optimizers.saas.start_design.spread_start`, topped up
        with Sobol points when its pool is used up; else the Sobol start."""
        if self.settings.design != "spread" or self.encoder.d == 0:
            return super().initial_design(history, n, pending)
        if self._pool is None:
            self._pool = start_design.design_pool(self, self.start_size())
        out = start_design.spread_start(self, self._pool, history, n, pending)
        if len(out) < n:
            out += super().initial_design(history, n - len(out), [*pending, *out])
        return out

    # ----------------------------------------------------------------- models
    def build_models(self, X: "torch.Tensor", Y: "torch.Tensor", seed: int,
                     usable: list[Observation] | None = None) -> "Model":
        """:meth:`NEHVIOptimizer.build_models`, with the layer flags screened when ``settings.flag_screen`` is on."""
        from search.optimizers.saas import flag_screen  # its module imports jax (through padded_model): deferred

        flags = [i for i, dim in enumerate(self.encoder.dims) if dim.index is not None]
        learned = [j for j, metric in enumerate(self.space.metrics) if metric not in self.known_objectives]
        self.screened = []
        if self.settings.flag_screen and flags and learned and len(X) >= flag_screen.SCREEN_FROM:
            self.screened = flag_screen.screen_flags(X.numpy(), Y[:, learned].numpy(), flags,
                                                     derive_seed(self.seed, len(X), "flag-screen"))
            self.notes = {"layers_seen": self.layers_seen(flags)}
        if not self.screened:
            return super().build_models(X, Y, seed, usable)
        model = super().build_models(flag_screen.screened_inputs(X, self.screened), Y, seed, usable)
        for j in learned:
            flag_screen.attach_screen(model.models[j], self.screened)
        return model

    def layers_seen(self, flags: list[int]) -> dict[str, list[int]]:
        """Per layer-mask parameter, the layers whose flags the last screen kept (the surrogates see them one by one)."""
        seen: dict[str, list[int]] = {}
        for i in flags:
            dim = self.encoder.dims[i]
            kept = seen.setdefault(dim.param, [])
            if i not in self.screened:
                kept.append(dim.index)
        return seen

    def fit_learned(self, X: "torch.Tensor", Y: "torch.Tensor", columns: list[int], seed: int,
                    yvars: "dict[int, torch.Tensor | None] | None" = None) -> list["Model"]:
        """Fit every learned metric's SAAS GP: one vectorised NUTS run (``settings.nuts_engine``,
        :func:`~search.optimizers.saas.fits.fit_vectorised`), else :meth:`fit_model` per metric."""
        if self.use_map or self.settings.nuts_engine != "vectorised":
            return super().fit_learned(X, Y, columns, seed, yvars)
        # with earlier users' trials (a warm-started per-user search) the anchor rows are theirs, rescaled
        # to the current user at every call: an anchor would never be reused, so each fit is a cold one
        warm = self.settings.warm_chains and not self.usable_prior()
        yvars = {j: (yvars or {}).get(j) for j in columns}
        models, self.last_fit = fit_vectorised(X, Y, columns, yvars, self.space.optimizer.nuts, seed, self.chains, warm)
        return models

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit one SAAS GP: the MAP ensemble (``fit = "map"`` or past the time cap), else NUTS; with
        ``yvar``, the observed noise is fixed instead of sampled."""
        if self.use_map:
            return fit_map_saas(X, y, yvar)
        if self.settings.nuts_engine == "vectorised":
            return self.fit_learned(X, y, [0], seed, {0: yvar})[0]
        return fit_botorch_nuts(X, y, yvar, self.space.optimizer.nuts, seed)

    # ----------------------------------------------------------------- acquisition
    def _optimize_one(self, acqf: Any, fixed: dict[int, float], taken: set[str] = frozenset(),
                      seed: int = 0) -> "torch.Tensor":
        """The acquisition's best new point: ``settings.acquisition_search`` (see :class:`SaasSettings`)."""
        if self.settings.acquisition_search != "local":
            return super()._optimize_one(acqf, fixed, taken, seed)
        if any(dim.grid is not None for dim in self.encoder.dims):
            return acquisition_search.search_grid(self, acqf, fixed, taken, seed)
        return acquisition_search.search_continuous(self, acqf, fixed, seed)

    def irrelevant_dims(self, model: "Model") -> list[int]:
        """Continuous dimensions whose effect is below ``IRRELEVANT_EFFECT`` in every learned model.

        The effect is :func:`~search.optimizers.saas.relevance.dimension_effects`. A dimension a known
        objective depends on (storage, say) is never held: the acquisition computes that objective
        exactly and may trade it.
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


@register_optimizer("saas-map")
class SaasMAP(SaasNEHVI):
    """BoTorch's ``EnsembleMapSaasSingleTaskGP`` per learned metric (MAP fits, seconds), and qLogNEHVI:
    :class:`SaasNEHVI` with ``fit = "map"``, the Sobol start and no layer screen by default."""

    defaults = MAP_DEFAULTS
