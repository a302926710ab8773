"""Multi-objective BO with qLogNEHVI: the machinery ``gp-nehvi`` and the SAAS optimisers share.

:class:`NEHVIOptimizer` does everything but fit the surrogate of one learned metric
(``gp-nehvi``: :mod:`search.optimizers.gp`; ``saas-nehvi``, ``saas-map``: :mod:`search.optimizers.saas`):

1. the first ``optimizer.init_trials`` suggestions (and any call with fewer than two usable
   observations, one with earlier users' observations) are Sobol points (fewer in a warm-started
   per-user search: :meth:`start_size`);
2. every metric (objectives, then metrics only used in constraints) gets a model: a fitted GP,
   or, for a *known* objective, a ``GenericDeterministicModel`` that decodes (rounds) each
   candidate and computes the exact value, so qLogNEHVI sees it without modelling error;
3. the models form a ``ModelList``; ``min`` objectives are negated (BoTorch maximises);
   outcome constraints become constraint callables (feasible when ``<= 0``);
4. the reference point is the study's (``search.pareto.study_reference_point``): ``optimizer.ref_point``
   (raw units), else inferred from the front of the quasi-random start and then kept fixed;
5. the acquisition is optimised over the mixed space with ``optimize_acqf_mixed_alternating``
   (binary, integer and ordinal dimensions as discrete, string choices as categorical,
   floats by L-BFGS), one pick at a time with earlier picks pending; a pick that decodes to an
   already-observed configuration is replaced by the best new configuration in a pool of random
   points and one-step neighbours, scored by the same acquisition function;
6. continuous dimensions that every learned surrogate deems irrelevant (:meth:`irrelevant_dims`;
   none for a standard GP, weak kernel effects for the SAAS models) are not optimised: picks
   copy them from the knee of the observed front. Left free, L-BFGS follows the posterior
   variance, which grows towards the box's faces, and parks them at the bounds.

Failed trials are left out of the models but count as observed configurations.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from search.encoding import config_key
from search.numbers import finite
from search.optimizers.base import Observation, Optimizer
from search.optimizers.quasi_random import SobolOptimizer, uniform_stream
from search.optimizers.torch_threads import torch_threads
from search.optimizers.user_transfer import current_user_inputs, current_user_transform, on_current_scale
from search.pareto import knee_index, pareto_indices, study_reference_point

if TYPE_CHECKING:
    import torch
    from botorch.models.model import Model


class NEHVIOptimizer(Optimizer):
    """qLogNEHVI over a ``ModelList`` of per-metric surrogates; subclasses implement :meth:`fit_model`."""

    learns_from_prior = True

    def fit_model(self, X: "torch.Tensor", y: "torch.Tensor", seed: int,
                  yvar: "torch.Tensor | None" = None) -> "Model":
        """Fit the surrogate of one learned metric.

        Args:
            X: ``n x d`` float64 inputs in the unit cube.
            y: ``n x 1`` outputs (already signed for maximisation).
            seed: a seed for any randomness in the fit.
            yvar: ``n x 1`` observed noise variances (the trials' squared standard errors), as
                BoTorch's ``train_Yvar``; None: the noise is inferred.

        Returns:
            A fitted BoTorch model with one output.
        """
        raise NotImplementedError

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new configurations (see :meth:`Optimizer.suggest`).

        The quasi-random start covers the first ``optimizer.init_trials`` configurations, pending
        ones included; after it, pending configurations enter qLogNEHVI as ``X_pending``.
        """
        self.notes = {}
        usable = [obs for obs in history if self._usable(obs)]
        started = len(history) + len(pending)
        fewest = 1 if self.usable_prior() else 2  # with earlier users' rows, one value of its own links the user
        if started < self.start_size() or len(usable) < fewest or self.encoder.d == 0:
            return self.initial_design(history, n, pending)
        from botorch.utils.sampling import manual_seed

        seed = self.call_seed(history, pending=pending)
        with manual_seed(seed), torch_threads(self.options.threads), _quiet_restarts():
            acqf = self.build_acquisition(history, seed)
            return self._optimize(acqf, history, n, seed, pending)

    def start_size(self) -> int:
        """Quasi-random suggestions before the model takes over: ``optimizer.init_trials``; with earlier
        users' observations (``prior``) and ``warm_start.max_points`` above 0, at most
        ``max_points + warm_start.own_points``: the earlier users' front points a per-user search
        evaluates first, then that many quasi-random points of the user's own (more when fewer
        front points exist). The model needs one value of the user's own there, not two: the
        earlier users' rows are most of its data, and a front point the user re-ran is what puts
        them on its level (:func:`~search.optimizers.user_transfer.on_current_scale`).

        An own point is where the model could see that this user differs from the earlier ones
        before its first suggestion: on a front point both ran the users agree by construction.
        Without one (the default) the model's own first suggestions show it, and the trial is
        spent near the front. The default of one front point gives the model the second trial
        too: on 20 users of ``mixed-large`` that was better for users alike and level for users
        unlike each other (``docs/benchmarks.md``, "Twenty users"): the model's suggestions are
        what move the cohort's front on, the second front point only re-measured it.
        """
        size, points = self.space.optimizer.init_trials, self.space.warm_start.max_points
        if points > 0 and self.usable_prior():
            size = min(size, self.space.warm_start.start_trials())
        return size

    def usable_prior(self) -> list[list[Observation]]:
        """Per earlier user, its observations with every learned metric (empty users left out)."""
        groups = [[obs for obs in user if self._usable(obs)] for user in self.prior]
        return [g for g in groups if g]

    def initial_design(self, history: list[Observation], n: int,
                       pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """The quasi-random start: Sobol points (the SAAS optimisers override this)."""
        return SobolOptimizer(self.space, seed=self.seed).suggest(history, n, pending)

    # ----------------------------------------------------------------- models
    def _usable(self, obs: Observation) -> bool:
        if obs.values is None:
            return False
        learned = [m for m in self.space.metrics if m not in self.known_objectives]
        return all(finite(obs.values.get(m)) for m in learned)

    def signs(self) -> list[float]:
        """+1 for maximised objectives and constraint-only metrics, -1 for minimised objectives."""
        return [-1.0 if self.space.objectives.get(m) == "min" else 1.0 for m in self.space.metrics]

    def training_data(self, usable: list[Observation]) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The ``n x d`` inputs and ``n x m`` signed outputs (known metrics computed, not read)."""
        import torch

        X = self.encoder.encode_many([obs.config for obs in usable])
        rows = []
        for obs in usable:
            values = self._with_known(obs)
            rows.append([s * float(values[m]) for m, s in zip(self.space.metrics, self.signs())])
        return X, torch.tensor(rows, dtype=torch.float64)

    learn_from_failures = True
    """Failed trials enter the surrogates with the worst values seen (:meth:`failure_stand_ins`)."""

    def failure_stand_ins(self, history: list[Observation], usable: list[Observation]) -> list[Observation]:
        """Failed trials as observations of the worst value seen for every learned objective.

        The optimiser learns from failures by imputing the worst (a penalty, as SMAC does for
        crashed runs): the surrogate's mean drops around configurations that failed, so qLogNEHVI
        moves away from a region of repeated failures instead of only skipping the exact failed
        points. Constraint-only metrics take the mean seen (neither side of the bound); known
        objectives are computed from the configuration as usual; the variance is the largest seen.
        """
        failed = [obs for obs in history if obs.failure]
        if not self.learn_from_failures or not failed or not usable:
            return []
        values, variances = {}, {}
        for metric in self.space.metrics:
            if metric in self.known_objectives:
                continue
            seen = [float(obs.values[metric]) for obs in usable]
            direction = self.space.objectives.get(metric)
            values[metric] = min(seen) if direction == "max" else max(seen) if direction == "min" else sum(seen) / len(seen)
            known = [(obs.variances or {}).get(metric) for obs in usable]
            if all(finite(v) for v in known):
                variances[metric] = max(known)
        return [Observation(obs.config, dict(values), dict(variances) or None) for obs in failed]

    def training_variances(self, usable: list[Observation], metric: str) -> "torch.Tensor | None":
        """The ``n x 1`` observed noise variances of ``metric``, when every usable observation has one.

        Trials report a standard error per metric (``<metric>_se``, a bootstrap over users and
        queries), so the surrogate takes their squares as known noise (``train_Yvar``) instead of
        inferring one noise level for all trials: a trial measured on few queries weighs less. A
        floor of 1e-6 of the outputs' variance keeps a zero standard error (every query scored
        alike) from pinning the surrogate.
        """
        import torch

        values = [(obs.variances or {}).get(metric) for obs in usable]
        if not values or not all(finite(v) and v >= 0 for v in values):
            return None
        ys = torch.tensor([float(obs.values[metric]) for obs in usable], dtype=torch.float64)
        floor = max(float(ys.var()) if len(ys) > 1 else 0.0, 1e-12) * 1e-6
        return torch.tensor(values, dtype=torch.float64).clamp_min(floor).unsqueeze(-1)

    def build_models(self, X: "torch.Tensor", Y: "torch.Tensor", seed: int,
                     usable: list[Observation] | None = None) -> "Model":
        """A ``ModelList`` with one model per metric: deterministic for known ones, fitted otherwise
        (with the observations' noise variances when ``usable`` carries them for that metric).

        ``X`` with one column more than the space has carries the same-user input of a warm-started
        per-user search; the fitted models then predict for the current user (flag 1)."""
        from botorch.models.model import ModelList

        learned = [j for j, metric in enumerate(self.space.metrics) if metric not in self.known_objectives]
        yvars = {j: self.training_variances(usable, self.space.metrics[j]) if usable is not None else None
                 for j in learned}
        fitted = dict(zip(learned, self.fit_learned(X, Y, learned, seed, yvars)))
        if X.shape[-1] > self.encoder.d:  # fitted with the same-user input: predict for the current user
            for model in fitted.values():
                model.input_transform = current_user_transform()
        models = [
            fitted[j] if j in fitted else self.known_model(metric, sign)
            for j, (metric, sign) in enumerate(zip(self.space.metrics, self.signs()))
        ]
        return ModelList(*models)

    def fit_learned(self, X: "torch.Tensor", Y: "torch.Tensor", columns: list[int], seed: int,
                    yvars: "dict[int, torch.Tensor | None] | None" = None) -> list["Model"]:
        """Fit the surrogates of the learned metrics ``columns`` of ``Y``: :meth:`fit_model` per column
        with seed ``seed + column`` and its observed noise ``yvars[column]`` (the fully Bayesian SAAS
        optimiser fits them jointly instead when the noise is to be inferred)."""
        yvars = yvars or {}
        return [self.fit_model(X, Y[:, j : j + 1], seed + j, yvars.get(j)) for j in columns]

    def known_model(self, metric: str, sign: float) -> "Model":
        """A ``GenericDeterministicModel`` computing ``sign * known(decode(x))`` for each row."""
        import torch
        from botorch.models.deterministic import GenericDeterministicModel

        fn, cache = self.known_objectives[metric], {}

        def value(row: tuple[float, ...]) -> float:
            if row not in cache:
                cache[row] = sign * float(fn(self.encoder.decode(row)))
            return cache[row]

        def f(X: torch.Tensor) -> torch.Tensor:
            flat = X.detach().reshape(-1, X.shape[-1]).tolist()
            out = torch.tensor([value(tuple(r)) for r in flat], dtype=X.dtype, device=X.device)
            return out.reshape(*X.shape[:-1], 1)

        return GenericDeterministicModel(f, num_outputs=1)

    # ----------------------------------------------------------------- acquisition
    def build_acquisition(self, history: list[Observation], seed: int) -> Any:
        """qLogNEHVI on the model list, with constraints and the reference point (``history`` in trial order)."""
        import torch
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.acquisition.multi_objective.objective import (
            IdentityMCMultiOutputObjective,
        )
        from botorch.sampling.get_sampler import get_sampler

        measured = [obs for obs in history if self._usable(obs)]
        usable = measured + self.failure_stand_ins(history, measured)
        X, Y = self.training_data(usable)
        prior = self.usable_prior()
        if prior:  # earlier users' trials too, with a same-user input (search.optimizers.user_transfer)
            learned = [m for m in self.space.metrics if m not in self.known_objectives]
            earlier = on_current_scale(prior, measured, learned, key=lambda c: config_key(self.space, c))
            X_prior, Y_prior = self.training_data(earlier)
            model = self.build_models(torch.cat([current_user_inputs(X_prior, 0.0), current_user_inputs(X, 1.0)]),
                                      torch.cat([Y_prior, Y]), seed, earlier + usable)
        else:
            model = self.build_models(X, Y, seed, usable)
        n_obj = len(self.space.objectives)
        objective = None if n_obj == Y.shape[-1] else IdentityMCMultiOutputObjective(outcomes=list(range(n_obj)))
        constraints = self.constraint_callables()
        self.model = model
        self.incumbent = self.knee_input(usable, X)
        points = [self._with_known(obs) for obs in usable]
        self.front_inputs = X[pareto_indices(points, self.space.objectives, self.space.parsed_constraints)]
        with torch.no_grad():
            posterior = model.posterior(X[:1])
        sampler = get_sampler(posterior, sample_shape=torch.Size([self.options.mc_samples]), seed=seed)
        return qLogNoisyExpectedHypervolumeImprovement(
            model=model,
            ref_point=self.reference_point(history).tolist(),
            X_baseline=X,
            sampler=sampler,
            objective=objective,
            constraints=constraints or None,
            prune_baseline=True,
            cache_root=False,
        )

    def knee_input(self, usable: list[Observation], X: "torch.Tensor") -> "torch.Tensor | None":
        """The encoded knee of the observed front (``search.pareto.knee_index``), None without a feasible point."""
        points = [self._with_known(obs) for obs in usable]
        knee = knee_index(points, self.space.objectives, self.space.parsed_constraints)
        return None if knee is None else X[knee]

    def irrelevant_dims(self, model: "Model") -> list[int]:
        """Continuous dimensions that no learned surrogate uses; picks copy them from the front's knee.

        The standard GP claims none (it is the plain baseline); the SAAS optimisers override this.
        """
        return []

    def constraint_callables(self) -> list[Callable[["torch.Tensor"], "torch.Tensor"]]:
        """One callable per outcome constraint, ``<= 0`` when feasible, on signed outputs."""
        out = []
        for c in self.space.parsed_constraints:
            j = self.space.metrics.index(c.metric)
            s = self.signs()[j]
            direction = 1.0 if c.op == "<=" else -1.0
            out.append(lambda Y, j=j, s=s, d=direction, b=c.bound: d * (s * Y[..., j] - b))
        return out

    def reference_point(self, history: list[Observation]) -> "torch.Tensor":
        """The study's reference point (see ``search.pareto.study_reference_point``), signed like the outputs.

        ``history`` is in trial order; known objectives are computed, as in :meth:`training_data`.
        """
        import torch

        points = [None if obs.values is None else self._with_known(obs) for obs in history]
        ref = study_reference_point(
            points, self.space.objectives, self.space.optimizer.ref_point, self.space.parsed_constraints,
            self.space.optimizer.init_trials,
        )
        if ref is None:  # no feasible point yet: infer from all usable outputs
            from botorch.utils.multi_objective.hypervolume import infer_reference_point

            _, Y = self.training_data([obs for obs in history if self._usable(obs)])
            return infer_reference_point(Y[:, : len(self.space.objectives)])
        return torch.tensor([s * ref[m] for m, s in zip(self.space.objectives, self.signs())], dtype=torch.float64)

    def _with_known(self, obs: Observation) -> dict[str, float]:
        """The observation's values with every known objective computed from its (rounded) config."""
        values = dict(obs.values or {})
        if self.known_objectives:
            config = self.encoder.decode(self.encoder.encode(obs.config))
            values.update({m: float(fn(config)) for m, fn in self.known_objectives.items()})
        return values

    def _optimize(self, acqf: Any, history: list[Observation], n: int, seed: int,
                  pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        taken = self.observed_keys(history, pending)
        picks: list[dict[str, Any]] = []
        fixed_dims = [] if self.incumbent is None else self.irrelevant_dims(self.model)
        if len(fixed_dims) == self.encoder.d:
            fixed_dims = []  # nothing would be left to optimise
        fixed = {j: float(self.incumbent[j]) for j in fixed_dims}
        for i in range(n):
            if picks or pending:
                acqf.set_X_pending(self.encoder.encode_many([*pending, *picks]))
            x = self._optimize_one(acqf, fixed, taken, seed + i)
            new = self.take_new([self.encoder.decode(x.tolist())], taken, 1)
            if not new:
                new = self._best_of_pool(acqf, x, taken, seed + i)
            if not new:
                break
            picks += new
        return picks

    def _optimize_one(self, acqf: Any, fixed: dict[int, float], taken: set[str] = frozenset(),
                      seed: int = 0) -> "torch.Tensor":
        """The acquisition's maximiser over the mixed space (``taken`` keys and ``seed``: for overrides)."""
        import torch
        from botorch.optim.optimize import optimize_acqf
        from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating

        d = self.encoder.d
        bounds = torch.stack([torch.zeros(d), torch.ones(d)]).to(torch.float64)
        discrete, categorical = self.encoder.discrete_dims(), self.encoder.categorical_dims()
        opts = self.options
        if discrete or categorical:
            x, _ = optimize_acqf_mixed_alternating(
                acqf, bounds, discrete_dims=discrete or None, cat_dims=categorical or None, q=1,
                raw_samples=opts.raw_samples, num_restarts=opts.num_restarts, fixed_features=fixed or None,
                options={
                    "maxiter_alternating": max(1, opts.maxiter // 8), "maxiter_init": opts.maxiter,
                    "maxiter_continuous": max(1, opts.maxiter // 8), "batch_limit": 64, **opts.extra,
                },
            )
        else:
            x, _ = optimize_acqf(
                acqf, bounds, q=1, raw_samples=opts.raw_samples, num_restarts=opts.num_restarts,
                fixed_features=fixed or None, options={"maxiter": opts.maxiter, "batch_limit": 64},
            )
        return x.reshape(-1)

    def _best_of_pool(self, acqf: Any, x: "torch.Tensor", taken: set[str], seed: int) -> list[dict[str, Any]]:
        import torch

        seen = set(taken)
        pool = self.take_new(_neighbours(self, self.encoder.decode(x.tolist())), seen, 1_000_000)
        pool += self.take_new(uniform_stream(self, seed, self.options.raw_samples), seen, self.options.raw_samples)
        if not pool:
            return []
        with torch.no_grad():
            scores = acqf(self.encoder.encode_many(pool).unsqueeze(1))
        return self.take_new([pool[int(scores.argmax())]], taken, 1)


@contextlib.contextmanager
def _quiet_restarts() -> Iterator[None]:
    """Silence BoTorch's reports of L-BFGS restarts that stopped early (it retries and keeps the best).

    On the relaxed discrete space of the MiLP spaces, the continuous-relaxation start of
    ``optimize_acqf_mixed_alternating`` often ends with scipy's "ABNORMAL" line search (the
    known storage objective is piecewise constant there); each suggestion printed a screenful
    of these over the live display. Other warnings pass.
    """
    from botorch.exceptions.warnings import OptimizationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=OptimizationWarning)
        warnings.filterwarnings("ignore", message="Optimization failed", category=RuntimeWarning)
        yield


def _neighbours(optimizer: Optimizer, config: dict[str, Any]) -> list[dict[str, Any]]:
    """Configurations one grid step (or one flag, or one category) away from ``config``."""
    x = optimizer.encoder.encode(config)
    out = []
    for i, dim in enumerate(optimizer.encoder.dims):
        if dim.grid is None:
            moves = [max(0.0, x[i] - 0.1), min(1.0, x[i] + 0.1)]
        elif dim.kind in ("binary", "categorical"):
            moves = [g for g in dim.grid if g != x[i]]
        else:
            k = min(range(len(dim.grid)), key=lambda j: abs(dim.grid[j] - x[i]))
            moves = [dim.grid[j] for j in (k - 1, k + 1) if 0 <= j < len(dim.grid)]
        out += [optimizer.encoder.decode(x[:i] + [g] + x[i + 1 :]) for g in moves]
    return out
