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
difference is read from the configurations both users ran (a warm start's front points are
always such): the earlier values are shifted by the mean difference there and keep their own
spread. Matching the users' means over all their trials instead would compare an earlier user's
whole search with the current user's few near-front trials, and put the earlier values too high
for users of the same shape. Without a shared configuration (``warm_start.max_points: 0``, whose
start is the usual quasi-random one), the means over all trials are matched, and the spreads too
once the current user has three values.

This is the user-input option of issue 13 (BoTorch's ``MultiTaskGP`` would need one index kernel
per metric and has no SAAS variant that fits with this project's vectorised NUTS; the flag is a
dimension like any other to both the SAAS and the standard GP).
"""

from __future__ import annotations

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
                     metrics: Sequence[str], key: Callable[[dict], Hashable] | None = None) -> list[Observation]:
    """The earlier users' usable observations with each learned metric on the current user's level.

    Args:
        earlier: per earlier user, its observations (each with values for every metric in ``metrics``).
        current: the current user's usable observations (may be empty).
        metrics: the learned metrics to rescale (known objectives are computed, not read).
        key: a configuration's identity (equivalent configurations equal); default: its sorted items.

    Returns:
        The earlier observations, flattened in the given order. For a user that shares configurations
        with the current one, each metric is shifted by the mean of (current - earlier) over the
        shared configurations (repeats averaged), variances kept. Otherwise ``(v - mean_u) / sd_u *
        sd_c + mean_c`` and ``var * (sd_c / sd_u) ** 2``, with ``sd_c`` the median of the earlier users'
        spreads while the current user has fewer than three values (a user whose values of a metric
        do not vary is only shifted).
    """
    key = key or _items_key
    stats = [{m: _mean_sd([float(o.values[m]) for o in obs]) for m in metrics} for obs in earlier]
    target = {}
    for m in metrics:
        values = [float(o.values[m]) for o in current]
        spreads = [s[m][1] for s in stats if s[m][1] > 0]
        mean, sd = _mean_sd(values) if values else (statistics.fmean(s[m][0] for s in stats), 0.0)
        if len(values) < MIN_VALUES_FOR_SCALE or sd <= 0:
            sd = statistics.median(spreads) if spreads else 0.0
        target[m] = (mean, sd)
    mine = _by_config(current, metrics, key)
    out = []
    for obs, user in zip(earlier, stats):
        theirs = _by_config(obs, metrics, key)
        shared = [k for k in theirs if k in mine]
        for o in obs:
            values, variances = dict(o.values), dict(o.variances) if o.variances else None
            for m in metrics:
                if shared:
                    ratio, shift = 1.0, statistics.fmean(mine[k][m] - theirs[k][m] for k in shared)
                else:
                    (mu, su), (mc, sc) = user[m], target[m]
                    ratio = sc / su if su > 0 and sc > 0 else 1.0
                    shift = mc - mu * ratio
                values[m] = float(values[m]) * ratio + shift
                if variances is not None and finite(variances.get(m)):
                    variances[m] = float(variances[m]) * ratio**2
            out.append(Observation(o.config, values, variances))
    return out


def _items_key(config: dict) -> Hashable:
    return repr(sorted(config.items()))


def _by_config(observations: Sequence[Observation], metrics: Sequence[str],
               key: Callable[[dict], Hashable]) -> dict[Hashable, dict[str, float]]:
    """Per configuration, each metric's mean over the observations of it."""
    groups: dict[Hashable, list[Observation]] = {}
    for o in observations:
        groups.setdefault(key(o.config), []).append(o)
    return {k: {m: statistics.fmean(float(o.values[m]) for o in group) for m in metrics} for k, group in groups.items()}


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0
