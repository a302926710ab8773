"""Per-user splits: history into train/held-out, queries into validation/test.

A user's split depends only on the seed and the user (its random source is seeded with
``"{seed}:{user_id}"``), never on the other users, so adding users to a cohort or loading a
different subset leaves every existing user's split unchanged. Within each part the original
order is kept (history stays in time order).
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Sequence, TypeVar

from runners.data.types import Dataset, User, UserSplit
from runners.errors import ConfigError, DataError

T = TypeVar("T")
_NAMES_SHOWN = 10


class SkippedUsersWarning(UserWarning):
    """Some users were left out of a split because they have no history or no queries."""


def _check_fractions(val_fraction: float, heldout_fraction: float, max_val_queries: int | None) -> None:
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"val_fraction={val_fraction!r} is outside [0, 1]; pass a fraction such as 0.5")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction={heldout_fraction!r} is outside [0, 1); pass a fraction such as 0.1")
    if max_val_queries is not None and max_val_queries < 1:
        raise ConfigError(f"max_val_queries={max_val_queries!r} must be >= 1 or None (no cap)")


def _partition(items: Sequence[T], n_first: int, rng: random.Random) -> tuple[list[int], list[int]]:
    """Pick ``n_first`` indices at random; return them (in shuffle order) and the rest (sorted)."""
    order = list(range(len(items)))
    rng.shuffle(order)
    return order[:n_first], sorted(order[n_first:])


def split_user(
    user: User,
    seed: int,
    val_fraction: float = 0.5,
    heldout_fraction: float = 0.1,
    max_val_queries: int | None = None,
) -> UserSplit:
    """Split one user's data.

    History: ``floor(heldout_fraction * n)`` items (capped so at least one stays) are held out,
    the rest are train; a tiny history gets an empty held-out part. Queries:
    ``round(val_fraction * m)`` (at least 1 when ``m > 0``) are validation, the rest test.
    ``max_val_queries`` then keeps only that many validation queries; the ones it drops go
    nowhere, so the test queries do not depend on the cap.

    Args:
        user: The user.
        seed: The split seed, combined with the user id.
        val_fraction: Share of queries used for validation, in [0, 1].
        heldout_fraction: Share of history held out for the validation loss, in [0, 1).
        max_val_queries: Cap on validation queries, or ``None``.

    Returns:
        The split; every part keeps the user's original order.

    Raises:
        ConfigError: If a fraction or the cap is out of range.
    """
    _check_fractions(val_fraction, heldout_fraction, max_val_queries)
    rng = random.Random(f"{seed}:{user.user_id}")
    n_hist, n_query = len(user.history), len(user.queries)
    n_heldout = min(math.floor(heldout_fraction * n_hist), max(n_hist - 1, 0))
    heldout_idx, train_idx = _partition(user.history, n_heldout, rng)
    n_val = min(max(math.floor(val_fraction * n_query + 0.5), 1), n_query)
    val_idx, test_idx = _partition(user.queries, n_val, rng)
    if max_val_queries is not None:
        val_idx = val_idx[:max_val_queries]
    return UserSplit(
        user=user,
        train=tuple(user.history[i] for i in train_idx),
        heldout=tuple(user.history[i] for i in sorted(heldout_idx)),
        val=tuple(user.queries[i] for i in sorted(val_idx)),
        test=tuple(user.queries[i] for i in test_idx),
    )


def _warn_skipped(skipped: list[User], total: int, source: str) -> None:
    names = ", ".join(u.user_id for u in skipped[:_NAMES_SHOWN])
    more = f" and {len(skipped) - _NAMES_SHOWN} more" if len(skipped) > _NAMES_SHOWN else ""
    warnings.warn(
        f"split_dataset: skipped {len(skipped)} of {total} users of {source or 'the dataset'} that have "
        f"no history or no queries ({names}{more}); they can be neither trained nor evaluated",
        SkippedUsersWarning,
        stacklevel=3,
    )


def _cohort(eligible: list[User], users: int | None, seed: int, source: str) -> list[User]:
    if users is None:
        return eligible
    if users < 1:
        raise ConfigError(f"users={users!r} must be >= 1, or None for every user")
    if users > len(eligible):
        raise DataError(
            f"users={users} but {source or 'the dataset'} has only {len(eligible)} users with history "
            f"and queries; pass users <= {len(eligible)}"
        )
    order = list(eligible)
    random.Random(seed).shuffle(order)
    return order[:users]


def _by_id(eligible: list[User], user_ids: Sequence[str], dataset: Dataset) -> list[User]:
    by_id = {u.user_id: u for u in eligible}
    missing = [uid for uid in user_ids if uid not in by_id]
    if missing:
        raise DataError(f"data.user_ids: {missing} are not users with history and queries in "
                        f"{dataset.source or 'the dataset'}; use ids of its users")
    return [by_id[uid] for uid in user_ids]


def split_dataset(
    dataset: Dataset,
    seed: int = 0,
    users: int | None = None,
    val_fraction: float = 0.5,
    heldout_fraction: float = 0.1,
    max_val_queries: int | None = None,
    user_ids: Sequence[str] | None = None,
) -> list[UserSplit]:
    """Split every usable user of a dataset.

    Users with no history or no queries are skipped with one :class:`SkippedUsersWarning`.

    Args:
        dataset: The dataset.
        seed: Seeds the cohort draw and each user's split.
        users: Take the first ``users`` users of a seeded shuffle of the usable ones (the same
            seed gives the same cohort, and ``users + 1`` extends it by one); ``None`` keeps all,
            in dataset order.
        val_fraction: See :func:`split_user`.
        heldout_fraction: See :func:`split_user`.
        max_val_queries: See :func:`split_user`.
        user_ids: Take exactly these users, in this order, instead of a drawn cohort (each
            user's split is the same as in any cohort: it depends on the user and the seed only).

    Returns:
        One split per chosen user.

    Raises:
        DataError: If no user is usable, or ``users`` exceeds the usable users.
        ConfigError: If ``users`` < 1 or a fraction is out of range.
    """
    _check_fractions(val_fraction, heldout_fraction, max_val_queries)
    eligible = [u for u in dataset.users if u.history and u.queries]
    skipped = [u for u in dataset.users if not (u.history and u.queries)]
    if not eligible:
        raise DataError(
            f"{dataset.source or 'the dataset'}: none of its {len(dataset.users)} users has both history "
            f"and queries; every user needs at least one of each"
        )
    if skipped:
        _warn_skipped(skipped, len(dataset.users), dataset.source)
    chosen = _by_id(eligible, user_ids, dataset) if user_ids is not None else _cohort(eligible, users, seed,
                                                                                          dataset.source)
    return [split_user(u, seed, val_fraction, heldout_fraction, max_val_queries) for u in chosen]
