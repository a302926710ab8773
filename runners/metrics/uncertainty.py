"""Uncertainty of a cohort mean: a two-level bootstrap over users, then queries within users.

A trial's score is a mean over users of each user's mean over queries. Both levels are
samples (which users, which queries), so the interval resamples users with replacement,
then, within each drawn user, that user's queries with replacement, and takes the same
mean of means. :func:`bootstrap_interval` is the one function the benches and reports use;
:func:`paired_difference_interval` bootstraps the difference of two configurations scored on
the same users and queries (the same draws for both sides).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from runners.errors import DataError


@dataclass(frozen=True)
class Interval:
    """A mean with its bootstrap interval.

    Attributes:
        mean: The mean over users of per-user means (the trial's aggregate).
        low: The lower percentile bound.
        high: The upper percentile bound.
        n_users: Users scored.
        n_queries: Queries scored, over all users.
        level: The interval's coverage, e.g. 0.95.
    """

    mean: float
    low: float
    high: float
    n_users: int
    n_queries: int
    level: float = 0.95

    def overlaps(self, other: "Interval") -> bool:
        """Whether the two intervals share any value."""
        return self.low <= other.high and other.low <= self.high

    def format(self, digits: int = 3) -> str:
        """``mean [low, high]``."""
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _check(values: Sequence[Sequence[float]]) -> list[list[float]]:
    groups = [list(map(float, v)) for v in values]
    if not groups or any(not g for g in groups):
        raise DataError("bootstrap_interval: needs at least one user and one value per user; "
                        "pass one list of per-query values per user")
    return groups


def _draws(groups: list[list[float]], n_boot: int, seed: int):
    """The resampled mean of per-user means, one per draw: users with replacement, then each
    drawn user's queries with replacement (a user drawn twice gets two independent resamples)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_users = len(groups)
    arrays = [np.asarray(g) for g in groups]
    users = rng.integers(0, n_users, size=(n_boot, n_users))
    totals = np.zeros(n_boot)
    for u, arr in enumerate(arrays):
        draw, _ = np.nonzero(users == u)  # one entry per time user u is drawn
        if draw.size:
            means = arr[rng.integers(0, len(arr), size=(draw.size, len(arr)))].mean(axis=1)
            np.add.at(totals, draw, means)
    return totals / n_users


def bootstrap_interval(per_user_query_values: Sequence[Sequence[float]], level: float = 0.95,
                       n_boot: int = 2000, seed: int = 0) -> Interval:
    """Percentile interval of the mean of per-user means, resampling users then queries.

    Args:
        per_user_query_values: One sequence per user of that user's per-query values.
        level: Coverage of the interval (0.95: the 2.5 and 97.5 percentiles).
        n_boot: Bootstrap draws.
        seed: Seeds the draws (the same seed gives the same interval).

    Returns:
        The point estimate (mean over users of per-user means) and the interval.

    Raises:
        DataError: no users, or a user without values.
    """
    import numpy as np

    groups = _check(per_user_query_values)
    mean = float(np.mean([np.mean(g) for g in groups]))
    draws = _draws(groups, n_boot, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(draws, [tail, 1.0 - tail])
    return Interval(mean, float(low), float(high), len(groups), sum(len(g) for g in groups), level)


def paired_difference_interval(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], level: float = 0.95,
                               n_boot: int = 2000, seed: int = 0) -> Interval:
    """Interval of ``mean(a) - mean(b)`` for two configurations scored on the same users and queries.

    The per-query differences are bootstrapped as :func:`bootstrap_interval` does, so both
    sides see the same draws; an interval above 0 means ``a`` is ahead beyond the noise.

    Raises:
        DataError: the two sides do not have the same users and queries per user.
    """
    ga, gb = _check(a), _check(b)
    if [len(g) for g in ga] != [len(g) for g in gb]:
        raise DataError("paired_difference_interval: both sides need the same users and the same number of "
                        "queries per user, in the same order")
    return bootstrap_interval([[x - y for x, y in zip(p, q)] for p, q in zip(ga, gb)], level, n_boot, seed)
