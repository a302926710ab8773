"""The optimiser interface, its registry and the shared observation record."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from search.encoding import Encoder, canonical, config_key
from runners.registry import Registry
from search.errors import RegistryError, SpaceError

if TYPE_CHECKING:
    from search.space import Space

KnownObjective = Callable[[dict[str, Any]], float]


@dataclass(frozen=True)
class Observation:
    """One evaluated configuration as an optimiser sees it.

    Attributes:
        config: the trial configuration (flat mapping of parameter names to values).
        values: the reported metrics, or None when the trial failed (the configuration still
            counts as observed, so it is never suggested again).
        variances: per metric, the noise variance of its value (the squared standard error a
            trial reports, larger for a pruned trial's estimated values); None when unknown.
        failure: the trial failed (raised, returned NaN, ran out of memory or time); a pruned
            trial without values is no failure.
    """

    config: dict[str, Any]
    values: dict[str, float] | None = None
    variances: dict[str, float] | None = None
    failure: bool = False

    @property
    def failed(self) -> bool:
        """True when the trial produced no values."""
        return self.values is None


@dataclass(frozen=True)
class AcquisitionOptions:
    """How hard the BO optimisers search the acquisition function (the defaults are production's;
    tests and benchmarks pass smaller ones).

    Attributes:
        num_restarts: gradient / local-search restarts of the acquisition optimiser.
        raw_samples: random points scored to pick the restarts.
        mc_samples: quasi-MC samples of the acquisition function.
        maxiter: iterations per restart (alternating rounds for the mixed optimiser).
        threads: torch intra-op threads while a BO optimiser suggests (restored afterwards).
            The many tiny tensor ops of model fits and box decompositions run several times
            faster on one thread than on two contended ones; None leaves torch's setting alone.
        extra: more options for ``optimize_acqf_mixed_alternating``.

    The defaults keep a ``saas-nehvi`` suggestion near a minute on a 2-core CPU: at 40
    dimensions and 50 observations (``bench/search_efficiency.py``'s ``suggestion_timing``),
    8 restarts, 256 raw samples, 128 MC samples and 12 alternating rounds took over 5 minutes
    per suggestion, these settings 55-64 s.
    """

    num_restarts: int = 4
    raw_samples: int = 128
    mc_samples: int = 32
    maxiter: int = 24
    threads: int | None = 1
    extra: dict[str, Any] = field(default_factory=dict)


class Optimizer(ABC):
    """Suggests configurations from the history of a study.

    Subclasses implement :meth:`suggest`. Suggestions are deterministic given the seed and the
    history length, so a resumed study asks for the same configurations it would have asked for.

    Args:
        space: a bound space (layer masks know their size).
        seed: the base seed; combined with ``len(history)`` at each call.
        known_objectives: metric -> exact function of the configuration; BO optimisers compute
            these instead of modelling them.
        options: caps on the acquisition optimisation (BO optimisers only).
        prior: a per-user search's earlier users, each as its observations (usable ones): the BO
            optimisers learn from them (:mod:`search.optimizers.user_transfer`); the others ignore
            them (``learns_from_prior``).
    """

    name: str = ""
    #: True for optimisers whose model learns from ``prior`` (earlier users' observations).
    learns_from_prior: bool = False
    #: What the model behind the last :meth:`suggest` found, for the user (JSON-ready; empty when it
    #: has nothing to say). The study records it with the suggested trials (``suggest_notes``);
    #: ``search.results.suggest_notes`` words it. Set by ``saas-nehvi``'s layer screen: ``{"layers_seen":
    #: {mask parameter: [layers its surrogates see one by one]}}``.
    notes: dict[str, Any] = {}

    def __init__(
        self,
        space: "Space",
        *,
        seed: int = 0,
        known_objectives: Mapping[str, KnownObjective] | None = None,
        options: AcquisitionOptions | None = None,
        prior: Sequence[Sequence[Observation]] = (),
    ) -> None:
        self.space = space
        self.encoder = Encoder(space)
        self.seed = seed
        self.known_objectives = dict(known_objectives or {})
        self.options = options or AcquisitionOptions()
        self.prior = [list(obs) for obs in prior if obs]
        self.notes = {}

    @abstractmethod
    def suggest(self, history: list[Observation], n: int,
                pending: Sequence[dict[str, Any]] = ()) -> list[dict[str, Any]]:
        """Return up to ``n`` distinct configurations, none already in ``history`` or ``pending``.

        ``pending`` are configurations being evaluated now (by other workers): a suggestion
        conditions on them (the BO optimisers treat them as ``X_pending``, TPE as running trials,
        the quasi-random ones skip them), so that workers never run the same configuration.
        Fewer than ``n`` are returned only when the space has no unobserved configuration left.
        """

    def observed_keys(self, history: list[Observation], pending: Sequence[dict[str, Any]] = ()) -> set[str]:
        """Canonical keys of every configuration in ``history`` (failed ones included) and ``pending``."""
        return {config_key(self.space, config) for config in [*(obs.config for obs in history), *pending]}

    def take_new(self, candidates: Any, taken: set[str], n: int) -> list[dict[str, Any]]:
        """The first ``n`` candidates whose key is not in ``taken`` (which is updated)."""
        out: list[dict[str, Any]] = []
        for config in candidates:
            key = config_key(self.space, config)
            if key not in taken:
                taken.add(key)
                out.append(canonical(self.space, config))
                if len(out) == n:
                    break
        return out

    def call_seed(self, history: list[Observation], salt: str = "", pending: Sequence[Any] = ()) -> int:
        """A seed for this call: a hash of the base seed, the history and pending lengths and ``salt``."""
        return derive_seed(self.seed, len(history), self.name + salt + (f"+{len(pending)}" if pending else ""))


def derive_seed(seed: int, index: int, salt: str = "") -> int:
    """Combine a base seed and an index into a 31-bit seed (stable across processes)."""
    digest = hashlib.sha256(f"{seed}:{index}:{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


OPTIMIZERS: Registry[type[Optimizer]] = Registry(
    "optimizer", Optimizer, RegistryError, how_to_add="or register one with @register_optimizer({name})")


def register_optimizer(name: str) -> Callable[[type[Optimizer]], type[Optimizer]]:
    """Class decorator registering an optimiser under ``name``.

    Raises:
        RegistryError: ``name`` is already registered.
    """
    return OPTIMIZERS.register(name)


def optimizer_names() -> list[str]:
    """The registered optimiser names, sorted."""
    return OPTIMIZERS.names()


def get_optimizer(name: str) -> type[Optimizer]:
    """The optimiser class registered under ``name``.

    Raises:
        RegistryError: unknown name; the message lists the known ones.
    """
    return OPTIMIZERS.get(name)


def check_optimizer(space: "Space") -> None:
    """The space's ``optimizer.name`` must be registered (checked before anything slow).

    Raises:
        SpaceError: an unknown name; the message names the space file and lists the known optimisers.
    """
    try:
        get_optimizer(space.optimizer.name)
    except RegistryError as err:
        raise SpaceError(f"space {space.source}: optimizer.name: {err}") from err


def make_optimizer(name: str, space: "Space", **kwargs: Any) -> Optimizer:
    """Build the optimiser registered under ``name`` for a bound space.

    Args:
        name: a registered optimiser name.
        space: a bound space.
        **kwargs: ``seed``, ``known_objectives``, ``options``, ``prior``.

    Raises:
        RegistryError: unknown name.
    """
    return get_optimizer(name)(space, **kwargs)


def study_optimizer(space: Space, optimizer: str | Optimizer | None = None, *,
                    known_objectives: Mapping[str, KnownObjective] | None = None,
                    options: AcquisitionOptions | None = None,
                    prior: Sequence[Sequence[Observation]] = ()) -> tuple[Space, Optimizer]:
    """The space with its optimiser's name set, and the optimiser (a built one is used as it is).

    Raises:
        SpaceError: an unknown optimiser name.
    """
    if isinstance(optimizer, Optimizer):
        return space, optimizer
    space = space.with_optimizer(name=optimizer)
    check_optimizer(space)
    return space, make_optimizer(space.optimizer.name, space, seed=space.optimizer.seed,
                                 known_objectives=known_objectives, options=options, prior=prior)
