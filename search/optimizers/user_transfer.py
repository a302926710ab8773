"""What the BO surrogates learn from the users searched before (a per-user search's warm start).

The earlier users' observations enter each learned metric's GP beside the current user's, with one
more input: a same-user flag (1 for the current user's trials, 0 for the earlier users'). The
kernel's lengthscale on that input is fitted like every other one, so the surrogate itself learns
how alike the users are: a long lengthscale (the SAAS prior's default, a dimension that does not
matter) shares everything between users, a short one leaves the current user's trials to speak for
themselves. Suggestions ask for the current user (the flag is appended at 1 by
:class:`CurrentUserInput`, so the acquisition search stays in the space's own dimensions).

Before pooling, each earlier user's values of a learned metric are put on the current user's
scale: standardised per user, then given the current user's mean and standard deviation (the
median of the earlier users' deviations while the current user has fewer than three values).
Users of one model and data differ most in their level (one persona's ROUGE-L is higher
whatever the configuration); what carries over is which configurations are better.

This is the user-input option of issue 13 (BoTorch's ``MultiTaskGP`` would need one index kernel
per metric and has no SAAS variant that fits with this project's vectorised NUTS; the flag is a
dimension like any other to both the SAAS and the standard GP).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Sequence

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
                     metrics: Sequence[str]) -> list[Observation]:
    """The earlier users' usable observations with each learned metric on the current user's scale.

    Args:
        earlier: per earlier user, its observations (each with values for every metric in ``metrics``).
        current: the current user's usable observations (may be empty).
        metrics: the learned metrics to rescale (known objectives are computed, not read).

    Returns:
        The earlier observations, flattened in the given order, values and noise variances rescaled
        (``(v - mean_u) / sd_u * sd_c + mean_c`` and ``var * (sd_c / sd_u) ** 2``); a user whose values
        of a metric do not vary is only shifted.
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
    out = []
    for obs, user in zip(earlier, stats):
        for o in obs:
            values, variances = dict(o.values), dict(o.variances) if o.variances else None
            for m in metrics:
                (mu, su), (mc, sc) = user[m], target[m]
                ratio = sc / su if su > 0 and sc > 0 else 1.0
                values[m] = (float(values[m]) - mu) * ratio + mc
                if variances is not None and finite(variances.get(m)):
                    variances[m] = float(variances[m]) * ratio**2
            out.append(Observation(o.config, values, variances))
    return out


def _mean_sd(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0
