"""``bench/flag_identifiability.py``: the sparse regression finds the quality flags when the data allow it."""


import pytest
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("flag_identifiability")


def test_random_design_draws_flags_at_the_density(bench):
    import numpy as np

    configs = bench.random_design(bench.MIXED_LARGE, 200, 0.3, np.random.default_rng(0))
    share = sum(sum(c["layers"]) for c in configs) / (200 * 30)
    assert 0.27 < share < 0.33
    assert all(1 <= c["count"] <= 32 and c["rank"] in bench.MIXED_LARGE.ranks for c in configs)


def test_many_evaluations_identify_the_quality_flags(bench):
    # 60 independent evaluations are plenty: the horseshoe fit must rank the quality flags first
    assert bench.quality_flags_found(bench.MIXED_LARGE, 60, 0.5, seed=0, warmup=150, samples=150) >= 3


def test_table_and_bad_density(bench, capsys):
    results = bench.main(["--sizes", "60", "--designs", "1", "--nuts", "150", "150"])
    assert [n for n, _ in results] == [60] and len(results[0][1]) == 1
    printed = capsys.readouterr().out
    assert "a random ranking finds 0.53 of 4" in printed and "| 60 | 1 |" in printed
    with pytest.raises(SystemExit):
        bench.main(["--density", "1.5"])
    assert "--density must be strictly between 0 and 1 (got 1.5)" in capsys.readouterr().err
