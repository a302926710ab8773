"""The two-level bootstrap interval (users, then queries within users)."""

from __future__ import annotations

import random

import pytest

from runners.errors import DataError
from runners.metrics.uncertainty import bootstrap_interval, paired_difference_interval


def test_mean_of_user_means_inside_its_interval_and_deterministic():
    values = [[0.1, 0.2, 0.3], [0.5, 0.6], [0.9]]
    a = bootstrap_interval(values, seed=3)
    assert a.mean == pytest.approx((0.2 + 0.55 + 0.9) / 3)
    assert a.low <= a.mean <= a.high
    assert (a.n_users, a.n_queries, a.level) == (3, 6, 0.95)
    assert bootstrap_interval(values, seed=3) == a


def test_no_spread_no_width_and_wider_at_higher_level():
    flat = bootstrap_interval([[2.0] * 4] * 3)
    assert (flat.low, flat.mean, flat.high) == (2.0, 2.0, 2.0)
    rng = random.Random(0)
    values = [[rng.random() for _ in range(5)] for _ in range(6)]
    narrow, wide = bootstrap_interval(values, level=0.5), bootstrap_interval(values, level=0.99)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_width_matches_the_standard_error_of_independent_values():
    # 200 users with one uniform value each: sd 0.289 / sqrt(200) = 0.0204, so +-0.04 at 95%.
    rng = random.Random(1)
    interval = bootstrap_interval([[rng.random()] for _ in range(200)], n_boot=4000)
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * 0.2887 / 200 ** 0.5, rel=0.15)


def test_queries_within_users_add_spread():
    # Same user means, but only the second set varies within users: its interval is wider.
    steady = [[0.5, 0.5, 0.5, 0.5]] * 4
    noisy = [[0.0, 1.0, 0.0, 1.0]] * 4
    assert bootstrap_interval(steady).high - bootstrap_interval(steady).low == 0
    assert bootstrap_interval(noisy).high - bootstrap_interval(noisy).low > 0.2


def test_paired_difference_and_bad_input():
    a = [[0.6, 0.7], [0.8, 0.9]]
    b = [[0.1, 0.2], [0.3, 0.4]]
    diff = paired_difference_interval(a, b)
    assert diff.mean == pytest.approx(0.5) and diff.low > 0
    assert bootstrap_interval(a).overlaps(bootstrap_interval(a))
    assert not bootstrap_interval(a).overlaps(bootstrap_interval(b))
    with pytest.raises(DataError):
        bootstrap_interval([])
    with pytest.raises(DataError):
        bootstrap_interval([[0.1], []])
    with pytest.raises(DataError):
        paired_difference_interval(a, [[0.1], [0.2, 0.3]])
