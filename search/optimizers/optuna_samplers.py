"""Optuna's multi-objective samplers as baselines: ``optuna-tpe`` and ``optuna-nsga2``.

Each call rebuilds an in-memory Optuna study from the history (``add_trial`` with the space's
distributions; inactive conditional parameters are simply absent, as in define-by-run), then
asks for new trials. Outcome constraints are passed as trial constraints (feasible when
``<= 0``). NSGA-II generation numbers are rebuilt with Optuna's own rule, so a rebuilt study is
in the state an uninterrupted one would be in.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from search.encoding import canonical
from search.optimizers.base import Observation, Optimizer, register_optimizer
from search.optimizers.quasi_random import uniform_stream
from search.numbers import finite
from search.space import ChoiceParam, FloatParam, IntParam, LayerMaskParam

if TYPE_CHECKING:
    import optuna

_MAX_ASKS = 64


class OptunaOptimizer(Optimizer):
    """Drives an Optuna sampler through ask/tell; subclasses implement :meth:`make_sampler`."""

    def make_sampler(self, seed: int) -> "optuna.samplers.BaseSampler":
        """Build the sampler for one call."""
        raise NotImplementedError

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new configurations (see :meth:`Optimizer.suggest`).

        Pending configurations enter the rebuilt study as RUNNING trials (TPE's constant liar
        then treats them as bad; NSGA-II skips them), and are never suggested again.
        """
        import optuna
        from optuna.trial import TrialState, create_trial

        seed = self.call_seed(history, pending=pending)
        with _quiet(optuna):
            study = optuna.create_study(
                directions=["maximize" if d == "max" else "minimize" for d in self.space.objectives.values()],
                sampler=self.make_sampler(seed),
            )
            for trial in self._frozen_trials(history):
                study.add_trial(trial)
            for config in (canonical(self.space, c) for c in pending):
                study.add_trial(create_trial(state=TrialState.RUNNING, params=self.params(config),
                                             distributions=self.distributions(config)))
            taken = self.observed_keys(history, pending)
            out: list[dict[str, Any]] = []
            for _ in range(_MAX_ASKS * n):
                if len(out) == n:
                    break
                trial = study.ask()
                out += self.take_new([self._sample(trial)], taken, 1)
        if len(out) < n:
            out += self.take_new(uniform_stream(self, seed, n), taken, n - len(out))
        return out

    # ----------------------------------------------------------------- space <-> optuna
    def distributions(self, config: dict[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the parameters active in ``config`` (searched ones only)."""
        import optuna.distributions as od

        out: dict[str, Any] = {}
        for dim_param in dict.fromkeys(d.param for d in self.encoder.dims):
            if not self.space.is_active(dim_param, config):
                continue
            param = self.space.parameters[dim_param]
            if isinstance(param, LayerMaskParam):
                out.update({f"{dim_param}[{i}]": od.CategoricalDistribution([0, 1]) for i in range(param.size)})
            elif isinstance(param, IntParam):
                out[dim_param] = od.IntDistribution(param.low, param.high, log=param.log)
            elif isinstance(param, FloatParam):
                out[dim_param] = od.FloatDistribution(param.low, param.high, log=param.log)
            elif isinstance(param, ChoiceParam):
                out[dim_param] = od.CategoricalDistribution(param.values)
        return out

    def params(self, config: dict[str, Any]) -> dict[str, Any]:
        """Optuna parameter values of the searched parameters active in ``config``."""
        out: dict[str, Any] = {}
        for name in self.distributions(config):
            base, _, index = name.partition("[")
            out[name] = config[base][int(index[:-1])] if index else config[name]
        return out

    def _sample(self, trial: "optuna.Trial") -> dict[str, Any]:
        config = self.space.defaults()
        for name in dict.fromkeys(d.param for d in self.encoder.dims):
            if not self.space.is_active(name, config):
                continue
            param = self.space.parameters[name]
            if isinstance(param, LayerMaskParam):
                config[name] = [trial.suggest_categorical(f"{name}[{i}]", [0, 1]) for i in range(param.size)]
            elif isinstance(param, IntParam):
                config[name] = trial.suggest_int(name, param.low, param.high, log=param.log)
            elif isinstance(param, FloatParam):
                config[name] = trial.suggest_float(name, param.low, param.high, log=param.log)
            elif isinstance(param, ChoiceParam):
                config[name] = trial.suggest_categorical(name, param.values)
        return config

    def _frozen_trials(self, history: list[Observation]) -> Iterator["optuna.trial.FrozenTrial"]:
        from optuna.trial import TrialState, create_trial

        for obs in history:
            config = canonical(self.space, obs.config)
            values = self._objective_values(obs, config)
            kwargs = {"params": self.params(config), "distributions": self.distributions(config)}
            if values is None:
                yield create_trial(state=TrialState.FAIL, **kwargs)
            else:
                yield create_trial(
                    values=values, constraints=self._constraints(obs, config), system_attrs=self.system_attrs(), **kwargs
                )

    def system_attrs(self) -> dict[str, Any]:
        """Extra system attributes of a completed trial added to the rebuilt study."""
        return {}

    def _metric(self, obs: Observation, config: dict[str, Any], metric: str) -> Any:
        if metric in self.known_objectives and (obs.values is None or metric not in obs.values):
            return float(self.known_objectives[metric](config))
        return None if obs.values is None else obs.values.get(metric)

    def _objective_values(self, obs: Observation, config: dict[str, Any]) -> list[float] | None:
        if obs.values is None:
            return None
        values = [self._metric(obs, config, m) for m in self.space.objectives]
        return [float(v) for v in values] if all(finite(v) for v in values) else None

    def _constraints(self, obs: Observation, config: dict[str, Any]) -> dict[str, float] | None:
        out = {}
        for k, c in enumerate(self.space.parsed_constraints):
            value = self._metric(obs, config, c.metric)
            violation = (value - c.bound if c.op == "<=" else c.bound - value) if finite(value) else 1.0
            out[str(k)] = float(violation)
        return out or None


@contextlib.contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


@register_optimizer("optuna-tpe")
class OptunaTPE(OptunaOptimizer):
    """Optuna's multivariate, grouped TPE (MOTPE for several objectives); random for ``init_trials``."""

    def make_sampler(self, seed: int) -> "optuna.samplers.BaseSampler":
        """A ``TPESampler`` with ``n_startup_trials = optimizer.init_trials``."""
        import optuna

        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=max(1, self.space.optimizer.init_trials), multivariate=True, group=True,
            constant_liar=True,
        )


@register_optimizer("optuna-nsga2")
class OptunaNSGA2(OptunaOptimizer):
    """Optuna's NSGA-II with a population of ``max(4, optimizer.init_trials)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population = max(4, self.space.optimizer.init_trials)
        self._completed = 0

    def make_sampler(self, seed: int) -> "optuna.samplers.BaseSampler":
        """An ``NSGAIISampler`` with the population above."""
        import optuna

        self._completed = 0
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population)

    def system_attrs(self) -> dict[str, Any]:
        """The generation Optuna would have given this completed trial (``population`` per generation)."""
        from optuna.samplers import NSGAIISampler

        generation = self._completed // self.population
        self._completed += 1
        return {NSGAIISampler._get_generation_key(): generation}
