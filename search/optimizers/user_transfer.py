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

This is the user-input option of issue 13 (BoTorch's ``MultiTaskGP`` would need one index kernel
per metric and has no SAAS variant that fits with this project's vectorised NUTS; the flag is a
dimension like any other to both the SAAS and the standard GP).
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Callable, Hashable, Sequence

from search.optimizers.base import Observation
from search.space import finite

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
                     metrics: Sequence[str], key: Callable[[dict], Hashable]) -> list[Observation]:
    """The earlier users' usable observations with each learned metric on the current user's level.

    Args:
        earlier: per earlier user, its observations (each with values for every metric in ``metrics``).
        current: the current user's usable observations (may be empty).
        metrics: the learned metrics to rescale (known objectives are computed, not read).
        key: a configuration's identity, equal for equivalent configurations (``search.encoding.config_key``).

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
