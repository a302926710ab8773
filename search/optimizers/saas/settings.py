"""The switches of the SAAS optimisers, as one frozen settings object passed to the constructor.

``saas-nehvi`` and ``saas-map`` differ only in their defaults (:data:`NUTS_DEFAULTS`,
:data:`MAP_DEFAULTS`). The switches a user may want are settable in the space file under
``optimizer.saas`` (``fit``, ``design``, ``flag_screen``; :class:`search.space.SaasChoices`), the
others are the benchmark's ablations (``bench/search_efficiency.py`` builds its variants with
settings): :meth:`SaasSettings.with_space` lays the space's choices over an optimiser's defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from search.space import SaasDesign, SaasFit

if TYPE_CHECKING:
    from search.space import SaasChoices

NutsEngine = Literal["vectorised", "botorch"]
AcquisitionSearch = Literal["local", "alternating"]


@dataclass(frozen=True)
class SaasSettings:
    """How a SAAS optimiser fits, starts and searches.

    Attributes:
        fit: ``"nuts"`` (fully Bayesian: NUTS samples of the SAAS GP, ``optimizer.nuts``) or ``"map"``
            (BoTorch's ``EnsembleMapSaasSingleTaskGP``: MAP fits for four fixed global shrinkages,
            seconds). ``"nuts"`` falls back to ``"map"`` past ``optimizer.max_seconds_per_suggestion``.
        nuts_engine: ``"vectorised"`` (every learned objective's chain in one compiled NUTS program,
            :mod:`search.optimizers.saas.nuts`, with the trials' observed noise fixed or the noise
            inferred, per metric, as BoTorch's model does) or ``"botorch"`` (BoTorch's
            ``fit_fully_bayesian_model_nuts`` per objective, on the padded model of
            :mod:`search.optimizers.saas.padded_model`).
        warm_chains: warm NUTS chains (vectorised engine, :mod:`search.optimizers.saas.warm_chains`):
            a fit starts its chains where the cold fit on an anchor prefix of the history ended.
            Not the space's ``warm_start`` (a per-user search's transfer from earlier users).
        acquisition_search: ``"local"`` (:mod:`search.optimizers.saas.acquisition_search`: moves on
            the grid from the front and from the best random points, continuous dimensions polished
            by L-BFGS) or ``"alternating"`` (BoTorch's ``optimize_acqf_mixed_alternating``, as
            ``gp-nehvi``).
        design: the quasi-random start: ``"spread"`` (spread over storage as well as the space,
            :mod:`search.optimizers.saas.start_design`) or ``"sobol"`` (as every optimiser).
        start_points: at most this many quasi-random points before the model takes over (None:
            ``optimizer.init_trials``).
        flag_screen: layer-flag screening (:mod:`search.optimizers.saas.flag_screen`): from
            ``SCREEN_FROM`` observations on, the learned surrogates see the layer flags a sparse
            linear model finds an effect of one by one, and the rest only as the share of them on.

    Raises:
        ValueError: a value outside the allowed ones (the message names the field and lists them).
    """

    fit: SaasFit = "nuts"
    nuts_engine: NutsEngine = "vectorised"
    warm_chains: bool = True
    acquisition_search: AcquisitionSearch = "local"
    design: SaasDesign = "spread"
    start_points: int | None = None
    flag_screen: bool = True

    def __post_init__(self) -> None:
        kinds = {"fit": SaasFit, "nuts_engine": NutsEngine, "acquisition_search": AcquisitionSearch, "design": SaasDesign}
        for name, kind in kinds.items():
            values = get_args(kind)
            if getattr(self, name) not in values:
                raise ValueError(f"SaasSettings.{name}={getattr(self, name)!r} is not allowed; "
                                 f"use one of: {', '.join(values)}")
        if self.start_points is not None and self.start_points < 0:
            raise ValueError(f"SaasSettings.start_points={self.start_points} is negative; use None or a count >= 0")

    def with_space(self, choices: "SaasChoices") -> "SaasSettings":
        """These settings with the space's ``optimizer.saas`` choices laid over them (unset ones keep ours)."""
        given = {k: v for k, v in choices.model_dump().items() if v is not None}
        return dataclasses.replace(self, **given) if given else self


#: ``saas-nehvi``: NUTS, warm chains, the spread start, the layer screen, the local acquisition search.
NUTS_DEFAULTS = SaasSettings()
#: ``saas-map``: the MAP ensemble, the Sobol start, no layer screen.
MAP_DEFAULTS = SaasSettings(fit="map", design="sobol", flag_screen=False)
