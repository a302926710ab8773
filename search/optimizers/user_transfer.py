"""What the BO surrogates learn from the users searched before (a per-user search's warm start).

The earlier users' observations enter each learned metric's GP beside the current user's, with one
more input: a same-user flag (1 for the current user's trials, 0 for the earlier users'). The
kernel's lengthscale on that input is fitted like every other one, so the surrogate itself learns
how alike the users are: a long lengthscale (the SAAS prior's default, a dimension that does not
matter) shares everything between users, a short one leaves the current user's trials to speak for
themselves. Suggestions ask for the current user (the flag is appended at 1 by
:class:`CurrentUserInput`, so the acquisition search stays in the space's own dimensions).

Before pooling, each earlier user's values of a learned metric are put on the current user's
level. Users of one model and data differ most in their level (one persona's ROUGE-L is higher
whatever the configuration); what carries over is which configurations are better. The level
difference is read from the configurations both users ran (the new user re-runs earlier users'
front points, and each earlier user re-ran its predecessors', so the users link up in a chain):
the earlier values are shifted by the mean difference there (weighted by the values' noise) and
keep their own spread. Matching the users' means over all their trials instead would compare an earlier user's
whole search with the current user's few near-front trials, and put the earlier values too high
for users of the same shape. Without a shared configuration (``warm_start.max_points: 0``, whose
start is the usual quasi-random one), the means over all trials are matched, and the spreads too
once the current user has three values.

However many users came before, the surrogate sees a bounded summary of them
(:func:`cohort_summary`, ``warm_start.max_observations`` rows): the earlier users are first put on
one level among themselves (:func:`common_level`, the same chain through shared configurations),
a configuration several users ran becomes one row (their mean; their spread joins the noise where
noise is known), and the rows kept are the pool's front, then each user's own front and trials in
turn. The summary then enters the model as one earlier group, shifted to the current user's level
through the front points the current user re-ran, which come from the same pool's front
(:func:`pooled_front`, the points a warm start evaluates first). A suggestion's fit grows with the
rows, not the users (issue 34: the 100th user learns from 99 users at the cost of the 3rd).

This is the user-input option of issue 13 (BoTorch's ``MultiTaskGP`` would need one index kernel
per metric and has no SAAS variant that fits with this project's vectorised NUTS; the flag is a
dimension like any other to both the SAAS and the standard GP).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Hashable, Mapping, Sequence

from search.optimizers.base import Observation
from search.pareto import hypervolume, knee_index, pareto_indices, reference_point
from search.numbers import finite
from search.space import Constraint

if TYPE_CHECKING:
    import torch

#: Below this many values of the current user, its standard deviation is the earlier users' median.
MIN_VALUES_FOR_SCALE = 3


def current_user_inputs(X: "torch.Tensor", value: float) -> "torch.Tensor":
    """``X`` with the same-user flag ``value`` appended as a last column."""
    import torch

    return torch.cat([X, torch.full_like(X[..., :1], value)], dim=-1)


def current_user_transform() -> "torch.nn.Module":
    """A BoTorch input transform that appends the flag 1 (the current user) at prediction time only."""
    from botorch.models.transforms.input import InputTransform
    import torch

    class CurrentUserInput(InputTransform, torch.nn.Module):
        """Appends the same-user flag 1 to every input row the model is asked about (not to its training rows)."""

        def __init__(self) -> None:
            super().__init__()
            self.transform_on_train = False
            self.transform_on_eval = True
            self.transform_on_fantasize = True

        def transform(self, X: torch.Tensor) -> torch.Tensor:
            return current_user_inputs(X, 1.0)

    return CurrentUserInput()


def on_current_scale(earlier: Sequence[Sequence[Observation]], current: Sequence[Observation],
                     metrics: Sequence[str], key: Callable[[dict], Hashable], *,
                     match_unlinked: bool = True) -> list[Observation]:
    """The earlier users' usable observations with each learned metric on the current user's level.

    Args:
        earlier: per earlier user, its observations (each with values for every metric in ``metrics``).
        current: the current user's usable observations (may be empty).
        metrics: the learned metrics to rescale (known objectives are computed, not read).
        key: a configuration's identity, equal for equivalent configurations (``search.encoding.config_key``).
        match_unlinked: put a user linked to none on the current level by its mean and spread (below);
            False keeps such a user's values as they are.

    Returns:
        The earlier observations, flattened in the given order. A user that shares configurations
        with the current user, or with an earlier user already put on its level (users re-run their
        predecessors' front points, so the users link up in a chain), is shifted per metric by the
        weighted mean of the differences there (weights ``1 / (var_a + var_b)`` when both values
        carry a variance, repeats averaged first); its variances grow by the shift's own variance.
        A user linked to none: ``(v - mean_u) / sd_u * sd_c + mean_c`` and ``var * (sd_c / sd_u) ** 2``,
        with ``sd_c`` the median of the earlier users' spreads while the current user has fewer than
        three values (a user whose values of a metric do not vary is only shifted).
    """
    stats = [{m: _mean_sd([float(o.values[m]) for o in obs]) for m in metrics} for obs in earlier]
    target = {}
    for m in metrics:
        values = [float(o.values[m]) for o in current]
        spreads = [s[m][1] for s in stats if s[m][1] > 0]
        mean, sd = _mean_sd(values) if values else (statistics.fmean(s[m][0] for s in stats), 0.0)
        if len(values) < MIN_VALUES_FOR_SCALE or sd <= 0:
            sd = statistics.median(spreads) if spreads else 0.0
        target[m] = (mean, sd)
    reference = _by_config(current, metrics, key)  # configuration -> metric -> (value, variance), on the current level
    groups = [_by_config(obs, metrics, key) for obs in earlier]
    shifts: dict[int, dict[str, tuple[float, float]]] = {}
    linked = True
    while linked:  # users sharing with the reference first, then users sharing with those, ...
        linked = False
        for u, theirs in enumerate(groups):
            shared = [k for k in theirs if k in reference]
            if u in shifts or not shared:
                continue
            shifts[u] = {m: _weighted_shift([reference[k][m] for k in shared], [theirs[k][m] for k in shared])
                         for m in metrics}
            for k, cell in theirs.items():
                reference.setdefault(k, {m: (v + shifts[u][m][0], var + shifts[u][m][1])
                                         for m, (v, var) in cell.items()})
            linked = True
    out = []
    for u, (obs, user) in enumerate(zip(earlier, stats)):
        for o in obs:
            values, variances = dict(o.values), dict(o.variances) if o.variances else None
            for m in metrics:
                extra = 0.0
                if u in shifts:
                    ratio, (shift, extra) = 1.0, shifts[u][m]
                elif not match_unlinked:
                    ratio, shift = 1.0, 0.0
                else:
                    (mu, su), (mc, sc) = user[m], target[m]
                    ratio = sc / su if su > 0 and sc > 0 else 1.0
                    shift = mc - mu * ratio
                values[m] = float(values[m]) * ratio + shift
                if variances is not None and finite(variances.get(m)):
                    variances[m] = float(variances[m]) * ratio**2 + extra
            out.append(Observation(o.config, values, variances))
    return out


def _weighted_shift(ours: Sequence[tuple[float, float]], theirs: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean of ``ours - theirs`` over shared configurations, and its variance.

    Each pair is ``(value, variance)``; with every variance known and positive the differences are
    weighted by ``1 / (var_ours + var_theirs)`` (the shift's variance is ``1 / sum(weights)``),
    otherwise equally (variance 0: none is known).
    """
    diffs = [a - b for (a, _), (b, _) in zip(ours, theirs)]
    variances = [va + vb for (_, va), (_, vb) in zip(ours, theirs)]
    if all(math.isfinite(v) and v > 0 for v in variances):
        weights = [1.0 / v for v in variances]
        return sum(w * d for w, d in zip(weights, diffs)) / sum(weights), 1.0 / sum(weights)
    return statistics.fmean(diffs), 0.0


def _by_config(observations: Sequence[Observation], metrics: Sequence[str],
               key: Callable[[dict], Hashable]) -> dict[Hashable, dict[str, tuple[float, float]]]:
    """Per configuration, each metric's (mean value, variance of that mean) over the observations of it.

    The variance is NaN when an observation of the configuration carries none for the metric.
    """
    groups: dict[Hashable, list[Observation]] = {}
    for o in observations:
        groups.setdefault(key(o.config), []).append(o)
    out = {}
    for k, group in groups.items():
        cell = {}
        for m in metrics:
            variances = [(o.variances or {}).get(m) for o in group]
            variances = [float(v) if finite(v) else math.nan for v in variances]
            cell[m] = (statistics.fmean(float(o.values[m]) for o in group), sum(variances) / len(group) ** 2)
        out[k] = cell
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


# --------------------------------------------------------------------------- the cohort's pool
@dataclass(frozen=True)
class PooledRow:
    """One configuration of the earlier users' pool: its values on the common level, and who ran it.

    Attributes:
        observation: the configuration with each metric's mean over the users that ran it (on the
            common level) and, where every one of them carries a noise variance, the variance of
            that mean: ``(mean noise variance + spread across the users) / users``.
        users: indices (in the given order) of the users that ran it, each once.
    """

    observation: Observation
    users: tuple[int, ...]


def common_level(earlier: Sequence[Sequence[Observation]], metrics: Sequence[str],
                 key: Callable[[dict], Hashable]) -> list[list[Observation]]:
    """Every earlier user's observations on one user's level: the user sharing the most configurations.

    The others are shifted as :func:`on_current_scale` shifts them (through the configurations
    users ran in common, in a chain); a user linked to none keeps its values (its level is unknown,
    and a user's mean over a whole search says more about where it searched than about its level).

    Args:
        earlier: per earlier user, its observations (each with values for every metric in ``metrics``).
        metrics: the metrics to shift (the learned ones; computed metrics agree across users already).
        key: a configuration's identity (``search.encoding.config_key``).

    Returns:
        Per user, its observations in the given order, shifted.
    """
    if len(earlier) < 2:
        return [list(obs) for obs in earlier]
    keys = [{key(o.config) for o in obs} for obs in earlier]
    links = [sum(len(mine & theirs) for v, theirs in enumerate(keys) if v != u) for u, mine in enumerate(keys)]
    root = max(range(len(earlier)), key=lambda u: (links[u], u))  # ties: the most recent user
    others = [obs for u, obs in enumerate(earlier) if u != root]
    flat = iter(on_current_scale(others, earlier[root], metrics, key, match_unlinked=False))
    return [list(obs) if u == root else [next(flat) for _ in obs] for u, obs in enumerate(earlier)]


def pool_by_config(per_user: Sequence[Sequence[Observation]], metrics: Sequence[str],
                   key: Callable[[dict], Hashable]) -> dict[Hashable, PooledRow]:
    """The users' observations (on a common level) merged per configuration, in order of first appearance.

    Args:
        per_user: per user, its observations on the common level (:func:`common_level`).
        metrics: the learned metrics, whose spread across users becomes noise; other values are averaged.
        key: a configuration's identity.
    """
    groups: dict[Hashable, list[tuple[int, Observation]]] = {}
    for u, obs in enumerate(per_user):
        for o in obs:
            groups.setdefault(key(o.config), []).append((u, o))
    return {k: PooledRow(_merged([o for _, o in group], metrics), tuple(dict.fromkeys(u for u, _ in group)))
            for k, group in groups.items()}


def _merged(group: Sequence[Observation], metrics: Sequence[str]) -> Observation:
    """One observation of a configuration from several: mean values, the mean's variance (see :class:`PooledRow`)."""
    names = [m for m in group[0].values if all(finite((o.values or {}).get(m)) for o in group)]
    values = {m: statistics.fmean(float(o.values[m]) for o in group) for m in names}
    variances = {}
    for m in metrics:
        noise = [(o.variances or {}).get(m) for o in group]
        if m in values and all(finite(v) for v in noise):
            spread = statistics.variance([float(o.values[m]) for o in group]) if len(group) > 1 else 0.0
            variances[m] = (statistics.fmean(float(v) for v in noise) + spread) / len(group)
    return Observation(group[0].config, values, variances or None)


def front_order(points: Sequence[dict[str, float]], objectives: Mapping[str, str],
                constraints: Sequence[Constraint] = (), ref_point: Mapping[str, float] | None = None,
                greedy: int = 8) -> list[int]:
    """The Pareto front of ``points`` in the order a warm start wants it: what a few of them cover first.

    The knee first (the front point nearest the utopia point, objectives scaled over the front),
    then, up to ``greedy`` points in all, each time the point that adds the most hypervolume to
    those chosen (reference point: ``ref_point`` where given, else inferred from the front), then
    the rest of the front in the given order. A few points so chosen cover the
    front as well as a few can: two front points of ``mixed-large`` chosen so hold 0.92 of the
    front's hypervolume, three 0.95.

    Returns:
        Indices into ``points``.
    """
    front = pareto_indices(points, objectives, constraints)
    if not front:
        return []
    knee = knee_index([points[i] for i in front], objectives, constraints)
    chosen, rest = [front[knee]], [i for j, i in enumerate(front) if j != knee]
    ref = reference_point([points[i] for i in front], objectives, ref_point, constraints)
    while rest and len(chosen) < greedy and ref is not None:
        gains = [hypervolume([points[i] for i in (*chosen, j)], objectives, ref, constraints) for j in rest]
        best = max(range(len(rest)), key=lambda j: (gains[j], -j))
        chosen.append(rest.pop(best))
    return chosen + rest


def pooled_front(per_user: Sequence[Sequence[Observation]], metrics: Sequence[str],
                 key: Callable[[dict], Hashable], objectives: Mapping[str, str],
                 constraints: Sequence[Constraint] = (),
                 ref_point: Mapping[str, float] | None = None) -> list[PooledRow]:
    """The earlier users' common front: their observations on a common level, merged per
    configuration, the front of that pool in :func:`front_order`."""
    shifted = common_level(per_user, metrics, key)
    pool = pool_by_config(shifted, metrics, key)
    rows = [pool[k] for k in _front_candidates(shifted, key, objectives, constraints)]
    order = front_order([r.observation.values for r in rows], objectives, constraints, ref_point)
    return [rows[i] for i in order]


def _front_candidates(per_user: Sequence[Sequence[Observation]], key: Callable[[dict], Hashable],
                      objectives: Mapping[str, str], constraints: Sequence[Constraint]) -> list[Hashable]:
    """The configurations on some user's own front: the pool's front is looked for among these alone.

    A user's shift moves all its values alike, so what it dominates stays dominated; only a
    configuration merged across users could, by averaging, leave every user's dominated set, and a
    configuration no user found on its front is no point to start a new user from. The pool's
    front then costs the users' fronts squared, not their trials squared (1,000 users of 10 trials).
    """
    keys = []
    for observations in per_user:
        keys += [key(observations[i].config) for i in pareto_indices([o.values for o in observations],
                                                                     objectives, constraints)]
    return list(dict.fromkeys(keys))


def cohort_summary(per_user: Sequence[Sequence[Observation]], metrics: Sequence[str],
                   key: Callable[[dict], Hashable], objectives: Mapping[str, str], budget: int,
                   constraints: Sequence[Constraint] = (),
                   ref_point: Mapping[str, float] | None = None) -> list[Observation]:
    """At most ``budget`` observations that stand for every earlier user (a warm start's model input).

    The users are put on a common level (:func:`common_level`) and merged per configuration
    (:func:`pool_by_config`: a configuration several users ran is one row, their mean, their
    spread as noise where noise is known). Then, up to the budget: the pool's front (up to half of
    the budget, in :func:`front_order`, so the points a new user re-runs first are there to link
    its level to), then the users in turn, the most recent first, one row each per turn: each
    user's own front first (users that are not alike have fronts of their own), then its other
    trials in trial order (its quasi-random start first: a sample spread over the space). The
    surrogate's fit grows with its rows, not with the users: a suggestion's time stays bounded
    however many users came before.

    Args:
        per_user: per earlier user, its observations with every metric in ``metrics`` (in search order).
        metrics: the learned metrics (shifted and merged).
        key: a configuration's identity.
        objectives: metric -> ``max``/``min`` (every objective's value in each observation).
        budget: the most rows returned.
        constraints: the space's outcome constraints (infeasible rows are on no front).
        ref_point: the space's raw reference point, where given.

    Returns:
        The rows, the pool's front first.
    """
    if budget <= 0 or not any(per_user):
        return []
    shifted = common_level(per_user, metrics, key)
    rows = pool_by_config(shifted, metrics, key)
    keys = _front_candidates(shifted, key, objectives, constraints)
    front = front_order([rows[k].observation.values for k in keys], objectives, constraints, ref_point)
    picked = list(dict.fromkeys(keys[i] for i in front[: max(1, budget // 2)]))
    queues = [_user_queue(obs, key, objectives, constraints) for obs in reversed(shifted)]
    taken = set(picked)
    while len(picked) < budget and any(queues):
        for queue in queues:
            while queue and queue[0] in taken:
                queue.pop(0)
            if queue and len(picked) < budget:
                taken.add(queue[0])
                picked.append(queue.pop(0))
    return [rows[k].observation for k in picked]


def _user_queue(observations: Sequence[Observation], key: Callable[[dict], Hashable],
                objectives: Mapping[str, str], constraints: Sequence[Constraint]) -> list[Hashable]:
    """One user's configurations in the order the summary takes them: its front, then its trials in order."""
    own = front_order([o.values for o in observations], objectives, constraints, greedy=0)
    order = [key(observations[i].config) for i in own] + [key(o.config) for o in observations]
    return list(dict.fromkeys(order))
