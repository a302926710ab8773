"""Ax as a peer: ``ax-default`` and ``ax-saasbo``, driven through Ax's public API.

Both optimisers rebuild an Ax experiment from the history at every call (so they are stateless,
like ours, and a resumed study asks for what an uninterrupted one would): an
``ax.api.client.Client`` gets the search space (:class:`AxSpace`), the objectives with their
directions, the outcome constraints and objective thresholds (:func:`optimization_strings`), and
each observation as an attached trial, completed with its values or marked failed. The Client then
asks a generation strategy for ``n`` trials.

The generation strategy is the one Ax's Client builds itself (``choose_generation_strategy`` of
``ax.api.utils.generation_strategy_dispatch``, what ``Client.configure_generation_strategy``
calls), set with ``Client.set_generation_strategy`` because the Client cannot say three things we
need:

- ``ax-default``: method ``fast``, Sobol then Ax's default modular BoTorch model (its default
  surrogate; qLogNEHVI for 2-4 objectives, qLogNEI for one);
- ``ax-saasbo``: method ``custom`` with the model configuration of Ax's ``quality`` method
  (``SaasFullyBayesianSingleTaskGP`` with input warping, fitted by NUTS), plus the NUTS warm-up,
  samples and thinning of ``optimizer.nuts`` and a per-call NUTS seed, which the Client's
  ``quality`` method leaves at BoTorch's defaults (512 / 256 / 16, minutes per fit).

The Sobol start has ``optimizer.init_trials`` points (at least one: Ax's model needs data), no
centre point, our base seed, and continues at position ``len(history)`` (the generator's
``init_position``), so the start is one Sobol sequence across calls, as in our ``sobol``.
Trials that failed do not count towards the start (Ax's rule), so an all-failed history stays
quasi-random.

Known objectives (storage) are *modelled*: Ax has no way to take a metric as a function of the
parameters, so their values, computed from the configuration, are attached as data like any
other metric and Ax fits a surrogate to them. That is Ax used as Ax is used; our optimisers
compute them inside the acquisition instead (``docs/notes/ax.md``).

Conditions (``when:``) are not given to Ax: Ax's hierarchical search spaces hang dependents on
values of a choice parameter, our conditions are inequalities on ints. Ax sees a flat space with
every searched parameter; inactive parameters are attached at their default (the history is
canonical) and each suggestion is canonicalised (``search.encoding.canonical``) so an inactive
parameter takes its default. A suggestion that then equals an observed configuration is
dropped by ``take_new`` and replaced by a random unseen configuration, as is any shortfall when
Ax repeats points.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from search.encoding import Encoder, canonical
from search.optimizers.base import Observation, Optimizer, register_optimizer
from search.optimizers.torch_threads import torch_threads
from search.optimizers.quasi_random import uniform_stream
from search.numbers import finite
from search.pareto import study_reference_point
from search.space import (
    ChoiceParam,
    FloatParam,
    IntParam,
    LayerMaskParam,
    Space,
)

if TYPE_CHECKING:
    from ax.api.client import Client
    from ax.generation_strategy.generation_strategy import GenerationStrategy

# Warnings from these packages during an Ax call are Ax's chatter (winsorization notes, jitter
# added to a Cholesky, tensor-copy hints); the study's own warnings are untouched.
_QUIET_MODULES = r"(ax|botorch|gpytorch|linear_operator|pyro|numpyro|jax)(\.|$)"


@dataclass(frozen=True)
class AxParam:
    """One Ax parameter: which of our parameters it stands for, and how values map.

    Attributes:
        ax_name: the Ax parameter name.
        param: our parameter name.
        index: the layer index for a layer-mask flag, else None.
        config: the Ax parameter config (``RangeParameterConfig`` or ``ChoiceParameterConfig``).
        labels: Ax value -> our value, for choices whose Ax values differ from ours.
    """

    ax_name: str
    param: str
    index: int | None
    config: Any
    labels: dict[Any, Any] | None = None


class AxSpace:
    """Our searched parameters as Ax parameters, and configurations both ways.

    - a layer mask: one ordered choice ``{0, 1}`` per layer, named ``<param>[<i>]``;
    - an int: an int ``RangeParameterConfig`` (log scaling when ``log``);
    - a float: a float ``RangeParameterConfig`` (log scaling when ``log``);
    - a numeric choice: an ordered ``ChoiceParameterConfig`` of the sorted values;
    - a string (or mixed) choice: an unordered ``ChoiceParameterConfig`` of string labels.

    Parameters without a dimension (fixed, single-valued, a pinned mask) are left out of Ax
    and take their value from the space.

    Args:
        space: a bound space.
    """

    def __init__(self, space: Space) -> None:
        self.space = space
        searched = dict.fromkeys(dim.param for dim in Encoder(space).dims)
        self.params: list[AxParam] = [p for name in searched for p in _ax_params(name, space.parameters[name])]

    def configs(self) -> list[Any]:
        """The Ax parameter configs, for ``Client.configure_experiment``."""
        return [p.config for p in self.params]

    def to_ax(self, config: dict[str, Any]) -> dict[str, Any]:
        """Ax parameters of a configuration (canonicalised first)."""
        config = canonical(self.space, config)
        out = {}
        for p in self.params:
            value = config[p.param] if p.index is None else config[p.param][p.index]
            out[p.ax_name] = value if p.labels is None else _label_of(p, value)
        return out

    def from_ax(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The canonical configuration of Ax parameters (inactive parameters at their default)."""
        config = {name: list(v) if isinstance(v, list) else v for name, v in self.space.defaults().items()}
        for p in self.params:
            value = parameters[p.ax_name]
            value = p.labels[value] if p.labels is not None else value
            if p.index is None:
                config[p.param] = value
            else:
                config[p.param][p.index] = int(value)
        return canonical(self.space, config)


def _label_of(p: AxParam, value: Any) -> Any:
    """The Ax value standing for our ``value`` of a choice (same type preferred: ``True`` is not ``1``).

    Raises:
        ValueError: ``value`` is not one of the parameter's values.
    """
    labels = p.labels or {}
    same = [label for label, v in labels.items() if v == value and type(v) is type(value)]
    equal = [label for label, v in labels.items() if v == value]
    if not (same or equal):
        raise ValueError(
            f"parameter {p.param}: value {value!r} is not one of {list(labels.values())}; "
            "the history does not match the space (resume with the space the study was run with)"
        )
    return (same or equal)[0]


def _ax_params(name: str, param: Any) -> list[AxParam]:
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

    if isinstance(param, LayerMaskParam):
        return [
            AxParam(f"{name}[{i}]", name, i, ChoiceParameterConfig(f"{name}[{i}]", [0, 1], "int", is_ordered=True))
            for i in range(param.size or 0)
        ]
    if isinstance(param, (IntParam, FloatParam)):
        kind = "int" if isinstance(param, IntParam) else "float"
        bounds = (param.low, param.high) if kind == "int" else (float(param.low), float(param.high))
        config = RangeParameterConfig(name, bounds, kind, scaling="log" if param.log else "linear")
        return [AxParam(name, name, None, config)]
    if isinstance(param, ChoiceParam) and param.numeric:
        values = sorted(param.values)
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        ax_values = [int(v) if kind == "int" else float(v) for v in values]
        labels = dict(zip(ax_values, values))
        return [AxParam(name, name, None, ChoiceParameterConfig(name, ax_values, kind, is_ordered=True), labels)]
    if isinstance(param, ChoiceParam):
        texts = all(isinstance(v, str) for v in param.values)
        labels = {(v if texts else repr(v)): v for v in param.values}
        return [AxParam(name, name, None, ChoiceParameterConfig(name, list(labels), "str", is_ordered=False), labels)]
    raise TypeError(f"parameter {name}: no Ax mapping for {type(param).__name__}")  # unreachable for searched params


# --------------------------------------------------------------------------- objectives and constraints
def metric_names(space: Space) -> dict[str, str]:
    """Our metric -> its Ax metric name.

    Ax parses objectives and constraints as SymPy expressions, which rejects names such as ``E``
    or ``beta`` and splits ``a-b``; every name becomes ``m_`` plus its word characters.
    """
    out: dict[str, str] = {}
    for metric in space.metrics:
        base = "m_" + re.sub(r"\W", "_", metric)
        name, k = base, 2
        while name in out.values():
            name, k = f"{base}_{k}", k + 1
        out[metric] = name
    return out


@dataclass(frozen=True)
class AxGoals:
    """What ``Client.configure_optimization`` takes, and how to fill each Ax metric from our values.

    Attributes:
        objective: e.g. ``"m_rougeL, -m_storage_bytes"``.
        constraints: outcome constraints and objective thresholds, e.g. ``"m_storage_bytes <= 5e6"``.
        sources: Ax metric -> our metric whose value it carries.
    """

    objective: str
    constraints: list[str]
    sources: dict[str, str]


def optimization_strings(space: Space, ref_point: dict[str, float] | None) -> AxGoals:
    """Objectives, outcome constraints and objective thresholds as Ax expression strings.

    Objective thresholds come from ``ref_point`` (raw units; None leaves them to Ax). An outcome
    constraint on an objective that bounds it from its worse side (``storage_bytes <= 5e6`` on a
    minimised objective) tightens that objective's threshold: Ax allows no other constraint on an
    objective, and for the hypervolume a point beyond the reference point is worth as little as an
    infeasible one. Any other constraint on an objective goes on a copy of the metric (named
    ``<ax name>_c<k>``) that carries the same values.

    Args:
        space: the space (objectives, constraints).
        ref_point: the study's reference point in raw units, or None.
    """
    names = metric_names(space)
    multi = len(space.objectives) > 1
    objective = ", ".join(("-" if d == "min" else "") + names[m] for m, d in space.objectives.items())
    thresholds = dict(ref_point or {}) if multi else {}
    sources = {names[m]: m for m in space.metrics}
    constraints = []
    for k, c in enumerate(space.parsed_constraints):
        direction = space.objectives.get(c.metric)
        worse_side = (direction == "min" and c.op == "<=") or (direction == "max" and c.op == ">=")
        if direction is None:
            constraints.append(f"{names[c.metric]} {c.op} {c.bound!r}")
        elif multi and worse_side:
            tighter = min if direction == "min" else max
            thresholds[c.metric] = tighter(thresholds.get(c.metric, c.bound), c.bound)
        else:
            alias = f"{names[c.metric]}_c{k}"
            sources[alias] = c.metric
            constraints.append(f"{alias} {c.op} {c.bound!r}")
    for metric, bound in thresholds.items():
        op = "<=" if space.objectives[metric] == "min" else ">="
        constraints.append(f"{names[metric]} {op} {float(bound)!r}")
    return AxGoals(objective, constraints, sources)


# --------------------------------------------------------------------------- the optimisers
class AxOptimizer(Optimizer):
    """Suggests through an Ax ``Client`` rebuilt from the history; subclasses pick the surrogate.

    Known objectives are modelled by Ax, not computed (see the module docstring). ``options.threads``
    is honoured; the other acquisition options (``options``) are not passed: Ax optimises
    its acquisition with its own settings.
    """

    method = "fast"

    def model_config(self, seed: int) -> Any:
        """The ``ModelConfig`` of the Bayesian-optimisation node, or None for the ``method``'s own."""
        return None

    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` new configurations (see :meth:`Optimizer.suggest`).

        Pending configurations are attached as running trials (Ax conditions on them). Ax's
        proposals are canonicalised; any that is already observed or pending (or that Ax could
        not make) is replaced by a random unseen configuration, counted in ``random_fills``.
        """
        taken = self.observed_keys(history, pending)
        if self.encoder.d == 0:
            return self.take_new([self.space.defaults()], taken, n)
        seed = self.call_seed(history, pending=pending)
        with _quiet_ax(), torch_threads(self.options.threads), self.fitting():
            client = self.build_client(history, seed, pending)
            proposals = self.ask(client, n)
        self.client = client  # kept for inspection, like ``NEHVIOptimizer.model``
        out = self.take_new(proposals, taken, n)
        self.random_fills = n - len(out)
        if len(out) < n:
            out += self.take_new(uniform_stream(self, self.call_seed(history, "fill", pending), n), taken, n - len(out))
        return out

    @functools.cached_property
    def mapping(self) -> AxSpace:
        """The space as Ax parameters (built on first use: it imports Ax)."""
        return AxSpace(self.space)

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """Context of one Ax call (``ax-saasbo`` sets up and releases JAX's compiled programs)."""
        yield

    # ----------------------------------------------------------------- the Ax experiment
    def build_client(self, history: list[Observation], seed: int,
                     pending: Sequence[dict[str, Any]] = ()) -> "Client":
        """A ``Client`` holding the space, the goals, the generation strategy, every observation,
        and the pending configurations as running trials."""
        from ax.api.client import Client

        mapping = self.mapping
        goals = optimization_strings(self.space, self.reference_point(history))
        client = Client(random_seed=seed)
        client.configure_experiment(parameters=mapping.configs(), name=self.space.name)
        client.configure_optimization(objective=goals.objective, outcome_constraints=goals.constraints)
        client.set_generation_strategy(self.generation_strategy(len(history) + len(pending), seed))
        for obs in history:
            index = client.attach_trial(mapping.to_ax(obs.config))
            values = self.values_of(obs)
            if values is None:
                client.mark_trial_failed(index, "failed trial (or a metric missing) in the study")
            else:
                client.complete_trial(index, {ax: values[ours] for ax, ours in goals.sources.items()})
        for config in pending:
            client.attach_trial(mapping.to_ax(config))
        return client

    def generation_strategy(self, position: int, seed: int) -> "GenerationStrategy":
        """Ax's own Sobol + MBM strategy, its Sobol node continuing at ``position``.

        Args:
            position: Sobol points drawn before this call (the history length).
            seed: this call's seed (NUTS, for ``ax-saasbo``).
        """
        from ax.api.utils.generation_strategy_dispatch import choose_generation_strategy
        from ax.api.utils.structs import GenerationStrategyDispatchStruct

        model_config = self.model_config(seed)
        struct = GenerationStrategyDispatchStruct(
            method="custom" if model_config is not None else self.method,
            initialization_budget=max(1, self.space.optimizer.init_trials),
            initialization_random_seed=self.seed,
            initialize_with_center=False,
            use_existing_trials_for_initialization=True,
            allow_exceeding_initialization_budget=True,  # a batch is all Sobol or all model-based, as ours
        )
        strategy = choose_generation_strategy(struct, model_config=model_config)
        sobol = strategy.nodes_by_name["Sobol"].generator_specs[0]
        sobol.generator_kwargs["init_position"] = position
        return strategy

    def ask(self, client: "Client", n: int) -> list[dict[str, Any]]:
        """Up to ``n`` configurations from Ax (fewer when Ax runs out of new points)."""
        from ax.exceptions.generation_strategy import GenerationStrategyCompleted

        try:
            trials = client.get_next_trials(max_trials=n)
        except GenerationStrategyCompleted:  # Ax kept suggesting observed points
            return []
        return [self.mapping.from_ax(parameters) for parameters in trials.values()]

    # ----------------------------------------------------------------- data
    def values_of(self, obs: Observation) -> dict[str, float] | None:
        """Every metric of an observation, known objectives computed; None when it cannot be used.

        An observation without values, or with a learned metric missing or not finite, is
        attached as a failed trial.
        """
        if obs.values is None:
            return None

        values = dict(obs.values)
        config = canonical(self.space, obs.config)
        values.update({m: float(fn(config)) for m, fn in self.known_objectives.items()})
        if not all(finite(values.get(m)) for m in self.space.metrics):
            return None
        return {m: float(values[m]) for m in self.space.metrics}

    def reference_point(self, history: list[Observation]) -> dict[str, float] | None:
        """The study's reference point in raw units (``search.pareto.study_reference_point``), or None."""
        opt = self.space.optimizer
        points = [self.values_of(obs) for obs in history]
        return study_reference_point(
            points, self.space.objectives, opt.ref_point, self.space.parsed_constraints, opt.init_trials
        )


@register_optimizer("ax-default")
class AxDefault(AxOptimizer):
    """Ax's default strategy: Sobol, then its modular BoTorch model and qLogNEHVI (multi-objective).

    Known objectives are modelled by Ax (passed as data), not computed.
    """

    method = "fast"


@register_optimizer("ax-saasbo")
class AxSaasBO(AxOptimizer):
    """Ax's fully Bayesian SAAS strategy: Sobol, then a NUTS-fitted SAAS GP per metric and qLogNEHVI.

    The model configuration is that of Ax's ``quality`` method (``SaasFullyBayesianSingleTaskGP``
    with input warping); NUTS warm-up, samples and thinning come from ``optimizer.nuts`` and the
    NUTS seed from the call's seed. Known objectives are modelled by Ax (passed as data), not
    computed.
    """

    input_warping = True

    def model_config(self, seed: int) -> Any:
        """Ax's ``quality`` SAAS model configuration with our NUTS settings."""
        from ax.generators.torch.botorch_modular.surrogate import ModelConfig
        from botorch.models.fully_bayesian import SaasFullyBayesianSingleTaskGP

        nuts = self.space.optimizer.nuts
        return ModelConfig(
            botorch_model_class=SaasFullyBayesianSingleTaskGP,
            model_options={"use_input_warping": self.input_warping},
            mll_options={
                "warmup_steps": nuts.warmup, "num_samples": nuts.samples, "thinning": nuts.thinning,
                "disable_progbar": True, "seed": seed,
            },
            name="WarpedSAAS" if self.input_warping else "SAAS",
        )

    @contextlib.contextmanager
    def fitting(self) -> Iterator[None]:
        """JAX's persistent compilation cache on; compiled NUTS programs released every few fits.

        Ax fits one model per metric; ``padded_model.release_compiled_programs`` counts them, so the
        memory mappings of JAX's compiled programs stay bounded over a long study.
        """
        from search.optimizers.saas.padded_model import (  # imports jax and numpyro: deferred to the first fit
            enable_compilation_cache,
            release_compiled_programs,
        )

        enable_compilation_cache()
        try:
            yield
        finally:
            for _ in self.space.metrics:
                release_compiled_programs()


@contextlib.contextmanager
def _quiet_ax() -> Iterator[None]:
    """Hide Ax's INFO/WARNING log lines and the warnings raised inside Ax, BoTorch and friends.

    Ax's loggers all write through the handlers of the ``ax`` logger; their level is raised to
    ERROR for the duration and restored afterwards.
    """
    _import_ax_quietly()
    handlers = logging.getLogger("ax").handlers
    levels = [h.level for h in handlers]
    for h in handlers:
        h.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=_QUIET_MODULES)
            yield
    finally:
        for h, level in zip(handlers, levels):
            h.setLevel(level)


def _import_ax_quietly() -> None:
    """Import Ax with INFO records and warnings off (its import logs its SQL storage and warns of its own shims)."""
    if "ax.api.client" in sys.modules:
        return
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation shims Ax itself still imports
            import ax.api.client  # noqa: F401
    finally:
        logging.disable(previous)
