"""Per-user splits: history into train/held-out, queries into validation/test.

A user's split depends only on the seed and the user (its random source is seeded with
``"{seed}:{user_id}"``), never on the other users, so adding users to a cohort or loading a
different subset leaves every existing user's split unchanged (in a ``users`` split, below, the
user's side also depends on its place in the cohort's order). Within each part the original
order is kept (history stays in time order).

The test queries come from one of two splits (``data.test_split``):

- ``queries``: every user's queries are split into validation and test (:func:`split_user`);
- ``users``: whole users are held out: all their queries are test queries and the search never
  sees them; every query of the other users is a validation query. One user in every
  ``1 / test_users_fraction`` of the cohort, in its order (the seeded draw of ``data.users``,
  else file order), from a start drawn from the seed (:func:`held_out_user_ids`): so
  ``test_users_fraction * n`` test users, rounded up or down, for ``n`` users (8 users at 0.25:
  2), and a larger cohort (``users + 1``, or users appended to the file) keeps every earlier
  user's side. Each side has at least one user; a cohort of one user is split per query.
- ``auto`` (the default) is ``queries`` when every user's own split keeps a test query (any user
  with two or more queries, at the default ``val_fraction``) and ``users`` otherwise: users with a
  single query have no test query of their own.

History is split the same way in both, so a test user's memory trains on the same items and
retrieval draws from the same items as in a per-query split.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass
from typing import Literal, Sequence, TypeVar, get_args

from runners.data.types import Dataset, User, UserSplit
from runners.errors import ConfigError, DataError

T = TypeVar("T")
_NAMES_SHOWN = 10
TestSplit = Literal["auto", "queries", "users"]
QueriesTo = Literal["split", "val", "test"]
TEST_SPLITS: tuple[str, ...] = get_args(TestSplit)
_QUERIES_TO: tuple[str, ...] = get_args(QueriesTo)


class SkippedUsersWarning(UserWarning):
    """Some users were left out of a split because they have no history or no queries."""


def _check_fractions(val_fraction: float, heldout_fraction: float, max_val_queries: int | None) -> None:
    if not 0.0 <= val_fraction <= 1.0:
        raise ConfigError(f"val_fraction={val_fraction!r} is outside [0, 1]; pass a fraction such as 0.5")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction={heldout_fraction!r} is outside [0, 1); pass a fraction such as 0.1")
    if max_val_queries is not None and max_val_queries < 1:
        raise ConfigError(f"max_val_queries={max_val_queries!r} must be >= 1 or None (no cap)")


def _check_test_split(test_split: str, test_users_fraction: float) -> None:
    if test_split not in TEST_SPLITS:
        raise ConfigError(f"data.test_split={test_split!r} is unknown; use one of {list(TEST_SPLITS)}")
    if not 0.0 < test_users_fraction < 1.0:
        raise ConfigError(f"data.test_users_fraction={test_users_fraction!r} is outside (0, 1); pass a share of "
                          "the cohort's users such as 0.25")


def _n_val(val_fraction: float, n_query: int) -> int:
    """Validation queries of a per-query split: ``round(val_fraction * m)``, at least 1 when ``m > 0``."""
    return min(max(math.floor(val_fraction * n_query + 0.5), 1), n_query)


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
    queries_to: QueriesTo = "split",
) -> UserSplit:
    """Split one user's data.

    History: ``floor(heldout_fraction * n)`` items (capped so at least one stays) are held out,
    the rest are train; a tiny history gets an empty held-out part. Queries (``queries_to``
    ``split``): ``round(val_fraction * m)`` (at least 1 when ``m > 0``) are validation, the rest
    test; ``val`` makes them all validation (a search user of a ``users`` split), ``test`` all
    test (a held-out test user). ``max_val_queries`` then keeps only that many validation
    queries; the ones it drops go nowhere, so the test queries do not depend on the cap.

    Args:
        user: The user.
        seed: The split seed, combined with the user id.
        val_fraction: Share of queries used for validation, in [0, 1].
        heldout_fraction: Share of history held out for the validation loss, in [0, 1).
        max_val_queries: Cap on validation queries, or ``None``.
        queries_to: ``split``, ``val`` or ``test``: where the user's queries go.

    Returns:
        The split; every part keeps the user's original order.

    Raises:
        ConfigError: If a fraction or the cap is out of range, or ``queries_to`` is unknown.
    """
    _check_fractions(val_fraction, heldout_fraction, max_val_queries)
    if queries_to not in _QUERIES_TO:
        raise ConfigError(f"split_user: queries_to={queries_to!r} is unknown; use one of {list(_QUERIES_TO)}")
    rng = random.Random(f"{seed}:{user.user_id}")
    n_hist, n_query = len(user.history), len(user.queries)
    n_heldout = min(math.floor(heldout_fraction * n_hist), max(n_hist - 1, 0))
    heldout_idx, train_idx = _partition(user.history, n_heldout, rng)
    n_val = {"split": _n_val(val_fraction, n_query), "val": n_query, "test": 0}[queries_to]
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


def held_out_user_ids(users: Sequence[User], seed: int, fraction: float) -> set[str]:
    """The test users of a ``users`` split: one in every ``1 / fraction`` users, in the cohort's order.

    User ``i`` (from 0) is a test user when ``floor(fraction * (i + 1) + phase)`` exceeds
    ``floor(fraction * i + phase)``, with ``phase`` in [0, 1) drawn from the seed: the first ``n``
    users hold ``floor(fraction * n + phase)`` test users, and a user's side depends on its
    position only, so a cohort that grows at the end keeps every earlier side. With two users or
    more each side keeps at least one: the last user is held out when none is (a small cohort; it
    may search again once the cohort grows), the first searches when all are.
    """
    phase = random.Random(f"{seed}:test-users").random()
    ids = [u.user_id for i, u in enumerate(users)
           if math.floor(fraction * (i + 1) + phase) > math.floor(fraction * i + phase)]
    if not ids and len(users) > 1:
        ids = [users[-1].user_id]
    elif len(ids) == len(users) > 1:
        ids = ids[1:]
    return set(ids)


def resolve_test_split(test_split: TestSplit, users: Sequence[User], val_fraction: float = 0.5) -> str:
    """``queries`` or ``users``: the split ``test_split`` gives these users (see the module docstring).

    ``auto`` is ``queries`` when every user's own split keeps a test query, else ``users``; a
    single user is always split per query (a users split needs a user on each side).
    """
    if len(users) < 2:
        return "queries"
    if test_split != "auto":
        return test_split
    every_user_tested = all(len(u.queries) > _n_val(val_fraction, len(u.queries)) for u in users)
    return "queries" if every_user_tested else "users"


def split_dataset(
    dataset: Dataset,
    seed: int = 0,
    users: int | None = None,
    val_fraction: float = 0.5,
    heldout_fraction: float = 0.1,
    max_val_queries: int | None = None,
    user_ids: Sequence[str] | None = None,
    test_split: TestSplit = "auto",
    test_users_fraction: float = 0.25,
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
        test_split: ``auto``, ``queries`` or ``users``: where the test queries come from (see the
            module docstring).
        test_users_fraction: In a ``users`` split, the share of the cohort held out as test users.

    Returns:
        One split per chosen user, test users included (in a ``users`` split their ``val`` is
        empty and every query is in ``test``).

    Raises:
        DataError: If no user is usable, or ``users`` exceeds the usable users.
        ConfigError: If ``users`` < 1, a fraction is out of range or ``test_split`` is unknown.
    """
    _check_fractions(val_fraction, heldout_fraction, max_val_queries)
    _check_test_split(test_split, test_users_fraction)
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
    if resolve_test_split(test_split, chosen, val_fraction) == "queries":
        return [split_user(u, seed, val_fraction, heldout_fraction, max_val_queries) for u in chosen]
    tested = held_out_user_ids(chosen, seed, test_users_fraction)
    return [split_user(u, seed, val_fraction, heldout_fraction, max_val_queries,
                       queries_to="test" if u.user_id in tested else "val") for u in chosen]


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


@dataclass(frozen=True)
class SplitCounts:
    """How a cohort's users and queries fall on each side of its test split.

    ``kind`` is ``users`` when whole users are held out (``test_users`` of the ``users``), else
    ``queries``; ``users_without_test`` counts the users that have no test query of their own in a
    per-query split (users with one query); ``heldout_items`` the held-out history items (the
    validation loss's), none when every history is too short for ``heldout_fraction``.
    """

    kind: str
    users: int
    test_users: int
    val_queries: int
    test_queries: int
    users_without_test: int
    heldout_items: int

    @classmethod
    def of(cls, splits: Sequence[UserSplit]) -> "SplitCounts":
        """The counts of a cohort's splits (as :func:`split_dataset` returns them)."""
        held_out = sum(1 for s in splits if s.test and not s.val)
        without_test = 0 if held_out else sum(1 for s in splits if not s.test)
        return cls("users" if held_out else "queries", len(splits), held_out, sum(len(s.val) for s in splits),
                   sum(len(s.test) for s in splits), without_test, sum(len(s.heldout) for s in splits))

    def describe(self, label: str | None = None) -> str:
        """``users (6 users search, 2 users test; 6 validation queries, 2 test queries)`` and the like.

        Args:
            label: What to call the split (default: its kind, ``users`` or ``queries``).
        """
        if self.kind == "users":
            sides = f"{_count(self.users - self.test_users, 'user')} search, {_count(self.test_users, 'user')} test"
        else:
            sides = _count(self.users, "user")
        tests = _count(self.test_queries, "test query", "test queries") if self.test_queries else "no test queries"
        val = _count(self.val_queries, "validation query", "validation queries")
        return f"{label or self.kind} ({sides}; {val}, {tests})"

    def no_test_reason(self) -> str:
        """Why there are no test queries (for the one line that says so)."""
        if self.users == 1:
            return "a one-user study splits that user's own queries, and its only query is a validation query"
        who = "every user has" if self.users_without_test == self.users else f"{self.users_without_test} users have"
        return (f"{who} a single query, kept for validation by data.test_split=queries (auto or users holds out "
                "whole users for the test instead)")
