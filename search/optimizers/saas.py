"""SAAS surrogates with qLogNEHVI: ``saas-nehvi`` (fully Bayesian, NUTS) and ``saas-map`` (MAP ensemble).

The sparse axis-aligned subspace prior (Eriksson & Jankowiak, 2021) shrinks every inverse
lengthscale towards zero, so only the few dimensions the data support get used: the right prior
for 30 layer flags of which a handful matter (MiLP, AutoPEFT).
"""

from __future__ import annotations

import hashlib
import time
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from search.encoding import config_key
from search.optimizers.base import Observation, derive_seed, register_optimizer
from search.optimizers.nehvi import NEHVIOptimizer
from search.optimizers.local_search import Scorer, canonical_row, hill_climb, neighbours, random_rows

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


class SaasOptimizer(NEHVIOptimizer):
    """What the SAAS optimisers share: continuous dimensions their models drop are held at the front's knee,
    and on spaces with grid dimensions the acquisition is searched on the grid from the observed front.

    Attributes:
        acquisition_search: ``"local"`` (:mod:`search.optimizers.local_search`: one move at a time
            from the front and from the best random points, continuous dimensions then polished by
            L-BFGS; on an all-continuous space, L-BFGS from the best Sobol points and points sprayed
            around the front) or ``"alternating"`` (BoTorch's ``optimize_acqf_mixed_alternating``,
            ``optimize_acqf`` on a continuous space, as ``gp-nehvi``).
    """

    acquisition_search = "local"
    SPRAY, SPRAY_SD = 4, 0.05
    #: The quasi-random start: ``"sobol"`` (as every optimiser) or ``"spread"`` (:meth:`initial_design`).
    design = "sobol"
    #: At most this many quasi-random points before the model takes over (None: ``optimizer.init_trials``).
    start_points: int | None = None
    #: Layer-flag screening (:mod:`search.optimizers.flag_screen`): from ``SCREEN_FROM`` observations
    #: on, the learned surrogates see the layer flags a sparse linear model finds an effect of one by
    #: one, and the rest only as the share of them on.
    flag_screen = False
    #: The flag dimensions the last fit screened (empty before ``SCREEN_FROM`` observations or without).
    screened: list[int] = []

    def build_models(self, X: "torch.Tensor", Y: "torch.Tensor", seed: int,
                     usable: list[Observation] | None = None) -> "Model":
        """:meth:`NEHVIOptimizer.build_models`, with the layer flags screened when ``flag_screen`` is on."""
        from search.optimizers import flag_screen  # its module imports jax (through saas_padded): deferred

        flags = [i for i, dim in enumerate(self.encoder.dims) if dim.index is not None]
        learned = [j for j, metric in enumerate(self.space.metrics) if metric not in self.known_objectives]
        self.screened = []
        if self.flag_screen and flags and learned and len(X) >= flag_screen.SCREEN_FROM:
            self.screened = flag_screen.screen_flags(X.numpy(), Y[:, learned].numpy(), flags,
                                                     derive_seed(self.seed, len(X), "flag-screen"))
            self.notes = {"layers_seen": self.layers_seen(flags)}
        if not self.screened:
            return super().build_models(X, Y, seed, usable)
        from botorch.models.transforms.input import ChainedInputTransform

        model = super().build_models(flag_screen.screened_inputs(X, self.screened), Y, seed, usable)
        for j in learned:
            fitted = model.models[j]
            screen = flag_screen.screened_flags_transform(self.screened)
            user = getattr(fitted, "input_transform", None)  # the same-user input of a warm-started search
            fitted.input_transform = screen if user is None else ChainedInputTransform(screen=screen, user=user)
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

    def start_size(self) -> int:
        """:meth:`NEHVIOptimizer.start_size`, capped at ``start_points`` when that is set."""
        size = super().start_size()
        return size if self.start_points is None else min(size, self.start_points)

    def initial_design(self, history: list[Observation], n: int,
                       pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """With ``design = "spread"``: a start spread over the known objectives (storage) as well as the space.

        A fixed pool of scrambled Sobol points (seeded by the base seed; the flags of each layer mask
        drawn at a density given by one more Sobol coordinate, so masks from nearly empty to nearly
        full are all there) is split into :meth:`start_size` strata of equal size by the sum of the
        known objectives' ranks (storage: from the smallest adapters to the largest). Start point
        ``i`` comes from stratum ``_stratum(i)`` (so any prefix of the start is spread over
        storage), and within it is the pool point farthest from every configuration observed or
        pending (maximin in the unit cube); the very first is the stratum's point nearest the
        cube's centre (in the zero-storage stratum: retrieval with a middling ``k`` and no memory,
        the baseline every memory configuration has to beat, rather than an arbitrary one).
        Without a known objective every stratum is the pool.
        A function of the history alone, so a resumed study draws the same start.
        """
        if self.design != "spread" or self.encoder.d == 0:
            return super().initial_design(history, n, pending)
        import torch

        rows, strata, configs = self._design_pool()
        taken = self.observed_keys(history, pending)
        chosen = [self.encoder.encode(c) for c in [*(obs.config for obs in history), *pending]]
        chosen_t = torch.tensor(chosen, dtype=torch.float64).reshape(len(chosen), self.encoder.d)
        out: list[dict[str, Any]] = []
        free = torch.tensor([config_key(self.space, c) not in taken for c in configs])
        for i in range(n):
            position = len(history) + len(pending) + i
            count = int(strata.max()) + 1
            want = _stratum(position, count)
            order = sorted(range(count), key=lambda k: abs(k - want))
            for k in order:
                candidates = torch.nonzero(free & (strata == k)).reshape(-1)
                if len(candidates):
                    break
            else:
                break  # the pool is used up: the Sobol optimiser takes over
            if len(chosen_t):
                gap = torch.cdist(rows[candidates], chosen_t).min(dim=1).values
                pick = int(candidates[int(gap.argmax())])
            else:  # the first point: the stratum's most central one (for storage, retrieval without memory)
                pick = int(candidates[int(torch.cdist(rows[candidates], torch.full_like(rows[:1], 0.5)).argmin())])
            new = self.take_new([configs[pick]], taken, 1)
            free[pick] = False
            if new:
                out += new
                chosen_t = torch.cat([chosen_t, rows[pick : pick + 1]])
        if len(out) < n:
            out += super().initial_design(history, n - len(out), [*pending, *out])
        return out

    def _design_pool(self) -> tuple["torch.Tensor", "torch.Tensor", list[dict[str, Any]]]:
        """The spread start's pool: encoded rows, stratum of each row, configurations (cached)."""
        if getattr(self, "_pool", None) is not None:
            return self._pool
        import torch

        size = max(256, 64 * self.start_size())
        engine = torch.quasirandom.SobolEngine(self.encoder.d + 1, scramble=True, seed=self.seed)
        draws = engine.draw(size, dtype=torch.float64)
        configs = []
        for u in draws.tolist():
            density = u[-1]
            x = [
                (1.0 if v < density else 0.0) if dim.kind == "binary" and dim.index is not None else v
                for dim, v in zip(self.encoder.dims, u[:-1])
            ]
            configs.append(self.encoder.from_uniform([min(v, 1.0 - 1e-9) for v in x]))
        rows = self.encoder.encode_many(configs)
        count = max(1, self.start_size())
        if self.known_objectives:
            score = torch.zeros(size, dtype=torch.float64)
            for fn in self.known_objectives.values():
                values = torch.tensor([float(fn(c)) for c in configs], dtype=torch.float64)
                score += values.argsort().argsort().to(torch.float64)
            strata = (score.argsort().argsort() * count // size).to(torch.int64)
        else:
            strata = torch.zeros(size, dtype=torch.int64)
        self._pool = (rows, strata, configs)
        return self._pool

    def _optimize_one(self, acqf: Any, fixed: dict[int, float], taken: set[str] = frozenset(),
                      seed: int = 0) -> "torch.Tensor":
        """The best new grid point found by :func:`local_search.hill_climb` (see the class docstring)."""
        grid = [i for i, dim in enumerate(self.encoder.dims) if dim.grid is not None]
        if self.acquisition_search != "local":
            return super()._optimize_one(acqf, fixed, taken, seed)
        if not grid:
            return self._optimize_continuous(acqf, fixed, seed)
        import torch

        encoder, opts = self.encoder, self.options

        def pinned(row: list[float]) -> tuple[float, ...]:
            return canonical_row(encoder, [fixed.get(i, v) for i, v in enumerate(row)])

        front = [pinned(row) for row in self.front_inputs.tolist()]
        scorer = Scorer(acqf, batch_limit=256)
        raw = random_rows(encoder, opts.raw_samples, torch.Generator().manual_seed(seed), fixed)
        scorer(raw)
        best_raw = sorted(dict.fromkeys(raw), key=lambda r: scorer.values[r], reverse=True)[: opts.num_restarts]
        hill_climb(
            scorer, front + best_raw, lambda row: neighbours(encoder, row, fixed), max_steps=opts.maxiter,
            max_climbers=max(4, 2 * opts.num_restarts),
        )
        ranked = sorted(scorer.values, key=lambda r: scorer.values[r], reverse=True)
        best = next((r for r in ranked if config_key(self.space, encoder.decode(r)) not in taken), ranked[0])
        x = torch.tensor(best, dtype=torch.float64)
        free = [i for i, dim in enumerate(encoder.dims) if dim.grid is None and i not in fixed]
        return self._polish_continuous(acqf, x, free) if free else x

    def _optimize_continuous(self, acqf: Any, fixed: dict[int, float], seed: int) -> "torch.Tensor":
        """L-BFGS from the best of ``raw_samples`` Sobol points and of points sprayed around the observed front.

        Each front point gives ``SPRAY`` perturbed copies (normal, sd ``SPRAY_SD`` per dimension, clipped
        to the cube); with the Sobol points they are scored in one batch and the ``num_restarts``
        best start L-BFGS. Held dimensions (``fixed``) keep their value throughout.
        """
        import torch
        from botorch.optim.optimize import optimize_acqf

        d, opts = self.encoder.d, self.options
        generator = torch.Generator().manual_seed(seed)
        raw = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed).draw(opts.raw_samples, dtype=torch.float64)
        front = self.front_inputs.to(torch.float64)
        spray = front.repeat_interleave(self.SPRAY, dim=0)
        spray = (spray + self.SPRAY_SD * torch.randn(spray.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
        candidates = torch.cat([raw, spray])
        for i, value in fixed.items():
            candidates[:, i] = value
        with torch.no_grad():
            values = torch.cat([acqf(chunk.unsqueeze(1)) for chunk in candidates.split(256)])
        starts = candidates[values.topk(min(opts.num_restarts, len(values))).indices]
        bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
        x, _ = optimize_acqf(
            acqf, bounds, q=1, num_restarts=len(starts), batch_initial_conditions=starts.unsqueeze(1),
            fixed_features=fixed or None, options={"maxiter": opts.maxiter, "batch_limit": 64},
        )
        return x.reshape(-1)

    def _polish_continuous(self, acqf: Any, x: "torch.Tensor", free: list[int]) -> "torch.Tensor":
        """L-BFGS on the continuous dimensions ``free`` of ``x``, every other dimension held."""
        import torch
        from botorch.optim.optimize import optimize_acqf

        d = self.encoder.d
        bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
        held = {i: float(x[i]) for i in range(d) if i not in free}
        polished, _ = optimize_acqf(
            acqf, bounds, q=1, num_restarts=1, batch_initial_conditions=x.reshape(1, 1, d),
            fixed_features=held, options={"maxiter": self.options.maxiter},
        )
        return polished.reshape(-1)

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

    The start is the storage-spread design (``design = "spread"``): on ``mixed-large`` it raised
    the start's HV@10 from 0.374 to 0.439 (mean of 10 seeds, no model involved) and, with the
    rest of issue 15's changes, HV@20 from 0.647 (one seed) to 0.738 (three seeds); measured again
    on 2026-12-02 (its first point now the zero-storage stratum's most central one), 0.803 over
    five seeds against Ax SAASBO's 0.621 over three; ``docs/notes/search_efficiency.md``.

    Layer flags are screened (``flag_screen``, :mod:`search.optimizers.flag_screen`) from 20
    observations on: on ``mixed-large`` HV@40 went from 0.959 ± 0.015 to 0.976 ± 0.004 (3 seeds,
    ahead in each), HV@20 unchanged.
    """

    design = "spread"
    flag_screen = True
    #: ``"vectorised"``: every learned objective's chain in one compiled NUTS program
    #: (:mod:`search.optimizers.saas_nuts`), warm-started, with the trials' observed noise fixed
    #: (``train_Yvar``) or the noise inferred, per metric, as BoTorch's model does; ``"botorch"``:
    #: BoTorch's ``fit_fully_bayesian_model_nuts`` per objective (the padded model of ``saas_padded``).
    fit_engine = "vectorised"
    #: Warm starts (vectorised engine): a fit on n observations starts its chains where a cold fit on
    #: the first ``n - n % ANCHOR_EVERY`` ended, with its step size and mass matrix (:meth:`warm_settings`).
    #: The anchor fit is a function of the history alone (data and seed), so a rebuilt optimiser
    #: refits it and suggests what an uninterrupted one would.
    warm_start = True
    ANCHOR_EVERY = 8

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.use_map = False
        self.last_seconds = 0.0
        self._anchors: dict[str, list[Any]] = {}

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

    def fit_learned(self, X: "torch.Tensor", Y: "torch.Tensor", columns: list[int], seed: int,
                    yvars: "dict[int, torch.Tensor | None] | None" = None) -> list["Model"]:
        """Fit every learned metric's SAAS GP with one vectorised NUTS run (see ``fit_engine``).

        A metric with observed noise (``yvars[j]``, the trials' squared standard errors) gets
        BoTorch's model with ``train_Yvar`` (fixed noise, no noise variable in its chain), one
        without infers the noise; when both kinds are present, each kind is one vectorised run.
        """
        if self.use_map or self.fit_engine != "vectorised":
            return super().fit_learned(X, Y, columns, seed, yvars)
        from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP
        from botorch.models.transforms.outcome import Standardize

        from search.optimizers.saas_nuts import (  # imports jax and numpyro: deferred to the first SAAS fit
            load_samples,
            standardised_targets,
            standardised_variances,
        )
        from search.optimizers.saas_padded import enable_compilation_cache  # imports jax as well: deferred

        enable_compilation_cache()
        yvars = {j: (yvars or {}).get(j) for j in columns}
        models = [
            SaasFullyBayesianSingleTaskGP(X, Y[:, j : j + 1], train_Yvar=yvars[j], outcome_transform=Standardize(m=1))
            for j in columns
        ]
        targets = np.stack([standardised_targets(m).numpy() for m in models], axis=1)
        variances = [standardised_variances(m) for m in models]
        variances = [None if v is None else v.numpy() for v in variances]
        nuts = self.space.optimizer.nuts
        settings = {"warmup": nuts.warmup, "samples": nuts.samples, "thinning": nuts.thinning}
        inputs, raw = X.numpy(), Y[:, columns].numpy()
        raw_var = [None if yvars[j] is None else yvars[j].numpy().reshape(-1) for j in columns]
        n = len(inputs)
        # with earlier users' trials (a warm-started per-user search) the anchor rows are theirs, rescaled
        # to the current user at every call: an anchor would never be reused, so each fit is a cold one
        anchor = n - n % self.ANCHOR_EVERY if self.warm_start and not self.usable_prior() else 0
        if anchor == n:  # this fit is an anchor: its seed is the anchor's, so a resumed study refits it alike
            results = _run_grouped(inputs, targets, variances, seed=derive_seed(self.seed, n, "nuts-anchor"),
                                   **settings)
            self._remember_anchor(inputs, raw, raw_var, results)
        elif anchor >= 2:
            warm = self._anchor_states(inputs[:anchor], raw[:anchor], [v if v is None else v[:anchor] for v in raw_var],
                                       settings)
            results = _run_grouped(inputs, targets, variances, seed=seed, warm=warm, **self.warm_settings(settings))
        else:
            results = _run_grouped(inputs, targets, variances, seed=seed, **settings)
        self.last_fit = results
        for model, result in zip(models, results):
            load_samples(model, result.samples)
        return models

    @staticmethod
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

    def _anchor_states(self, X: Any, raw: Any, raw_var: list[Any], settings: dict[str, int]) -> list[Any]:
        """The end states of the cold fit on ``X``, the raw outputs ``raw`` and their observed variances
        ``raw_var`` (per column, None when inferred), cached by content."""
        from search.optimizers.saas_nuts import standardise  # imports jax and numpyro: deferred

        key = _content_key(X, raw, *[np.zeros(0) if v is None else v for v in raw_var])
        if key not in self._anchors:
            targets = standardise(raw)[0]
            variances = [v if v is None else standardise(raw[:, j : j + 1], v[:, None])[1][:, 0]
                         for j, v in enumerate(raw_var)]
            results = _run_grouped(X, targets, variances, seed=derive_seed(self.seed, len(X), "nuts-anchor"),
                                   **settings)
            self._remember_anchor(X, raw, raw_var, results)
        return self._anchors[key]

    def _remember_anchor(self, X: Any, raw: Any, raw_var: list[Any], results: list[Any]) -> None:
        key = _content_key(X, raw, *[np.zeros(0) if v is None else v for v in raw_var])
        self._anchors = {**dict(list(self._anchors.items())[-3:]), key: [r.state for r in results]}

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit one fully Bayesian SAAS GP with NUTS (or the MAP ensemble past the time cap); with
        ``yvar``, the observed noise is fixed instead of sampled."""
        if self.use_map:
            return fit_map_saas(X, y, yvar)
        if self.fit_engine == "vectorised":
            return self.fit_learned(X, y, [0], seed, {0: yvar})[0]
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


def _run_grouped(X: Any, targets: Any, variances: list[Any], *, seed: int, warm: list[Any] | None = None,
                 **settings: Any) -> list[Any]:
    """:func:`saas_nuts.run_nuts` on the columns of ``targets``, those with observed noise (``variances[j]``
    not None) in one vectorised run and those whose noise is inferred in another; results in column order.

    When every column is of one kind there is one run with ``seed``; with both, the observed-noise run
    takes ``seed + 1``.
    """
    from search.optimizers.saas_nuts import run_nuts  # imports jax and numpyro: deferred to the first SAAS fit

    groups = [[j for j, v in enumerate(variances) if v is None], [j for j, v in enumerate(variances) if v is not None]]
    out: list[Any] = [None] * len(variances)
    for offset, group in enumerate(g for g in groups if g):
        Yvar = None if variances[group[0]] is None else np.stack([variances[j] for j in group], axis=1)
        results = run_nuts(X, targets[:, group], Yvar=Yvar, seed=seed + offset,
                           warm=None if warm is None else [warm[j] for j in group], **settings)
        for j, result in zip(group, results):
            out[j] = result
    return out


def _content_key(*arrays: Any) -> str:
    """A digest of the arrays' shapes and bytes."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(repr(a.shape).encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def _stratum(position: int, count: int) -> int:
    """Stratum of start point ``position``: the rank of ``van_der_corput(position mod count)`` among the
    first ``count`` van der Corput points (a permutation of the strata whose every prefix is spread)."""
    points = [_van_der_corput(i) for i in range(count)]
    return sorted(range(count), key=points.__getitem__).index(position % count)


def _van_der_corput(i: int, base: int = 2) -> float:
    """The ``i``-th point of the van der Corput sequence in [0, 1) (0, 1/2, 1/4, 3/4, 1/8, ...)."""
    out, denominator = 0.0, 1.0
    while i:
        i, digit = divmod(i, base)
        denominator *= base
        out += digit / denominator
    return out
