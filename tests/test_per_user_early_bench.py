"""``bench/per_user_early.py`` on a tiny budget: users, the warm start's first points, results file, table."""

import json

import pytest
from bench_scripts import load_bench

from search.encoding import config_key
from search.pareto import pareto_indices

TINY = ["--users", "2", "--per-user", "4", "--seeds", "1", "--nuts", "8", "4", "2"]


@pytest.fixture(scope="module")
def bench():
    return load_bench("per_user_early")


def test_alike_users_share_their_layers_and_distinct_users_do_not(bench):
    alike, distinct = bench.draw_users("alike", 3, 3), bench.draw_users("distinct", 3, 3)
    assert {(u.shape.quality_flags, u.shape.personal_flag) for u in alike.values()} == {((2, 9, 17, 25), 13)}
    assert len({(u.shape.quality_flags, u.shape.personal_flag) for u in distinct.values()}) == 3
    assert len({u.shape.scale for u in alike.values()}) == 3  # each user its own saturation
    assert alike["u0"].shape.scale == distinct["u0"].shape.scale
    config = {"layers": [1] * 30, "count": 4, "rank": 16, "k": 8, "retriever": "bm25"}
    shifts = {round(u(config)["quality"] - bench.mixed_values(u.shape, config)["quality"], 9) for u in alike.values()}
    assert len(shifts) == 3 and all(abs(s) <= 0.03 for s in shifts)


def test_a_warm_started_user_evaluates_the_earlier_front_first(bench, tmp_path):
    users = bench.draw_users("alike", 0, 2)
    cohort = bench.search_users(users, "learned", 0, 4, tmp_path, nuts=(8, 4, 2))
    first, second = (cohort.studies[u] for u in users)
    space, _ = bench.base_space()
    points = [{**t.values} for t in first.trials]
    front = {config_key(space, first.trials[i].config) for i in pareto_indices(points, space.objectives)}
    opening = [config_key(space, t.config) for t in second.trials[: bench.WARM_POINTS]]
    assert set(opening) <= front and len(set(opening)) == bench.WARM_POINTS
    hv = bench.curves(cohort, users)
    assert all(len(c) == 4 and all(0.0 <= v <= 1.0 + 1e-9 for v in c) for c in hv.values())
    assert hv["u1"] == sorted(hv["u1"])  # a hypervolume never falls


def test_runs_are_appended_resumed_and_summarised(bench, tmp_path, capsys):
    out = tmp_path / "early.jsonl"
    assert bench.main([*TINY, "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["variant"], r["arm"]) for r in records] == [("alike", "cold"), ("alike", "learned")]
    cold, learned = records
    assert cold["hv"]["u0"] == learned["hv"]["u0"]  # the first user is searched cold in both arms
    assert learned["trials"]["u1"][0][2] == "warm_start"  # each trial: configuration, values, origin
    assert {origin for user in cold["trials"].values() for _, _, origin in user} == {None}
    assert [len(t) for t in learned["trials"].values()] == [4, 4] and "layers" in learned["trials"]["u1"][0][0]
    printed = capsys.readouterr().out
    assert "alike learned seed 0: u0 HV@4" in printed

    assert bench.main([*TINY, "--out", str(out)]) == 0  # everything is in the file: nothing runs again
    assert len(out.read_text().splitlines()) == 2
    capsys.readouterr()

    assert bench.main(["--summarise", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [line for line in printed.splitlines() if line.startswith("| alike")]
    assert len(rows) == 3 and f"{learned['hv']['u1'][3]:.3f} ± 0.000" in rows[1]
    assert rows[0].split("|")[3:5] == [" 1 ", " 1 "]  # one seed, one user after the first
    gain = learned["hv"]["u1"][3] - cold["hv"]["u1"][3]  # the paired table: one (seed, user) pair
    assert rows[2].split("|")[2:4] == [" learned (48 rows) ", " 1 "] and f"{gain:.3f} ± 0.000" in rows[2]
    assert rows[2].rstrip(" |").endswith(f"{int(gain > 0)}/1")
    paired = printed.split("alike, learned (48 rows) minus cold, paired by seed and user:\n")[1].splitlines()
    assert paired[2] == f"| 2 | 1 | {gain:.3f} ± 0.000 |"  # per user index: the second user, one seed

    out.write_text(out.read_text() + "{not json\n")
    with pytest.raises(SystemExit, match="line 3: not a record"):
        bench.main(["--summarise", str(out)])


def test_the_per_index_table_pools_cold_users_and_counts_alike_users_reaching_the_target(bench):
    def record(arm, seed, curves, seconds=None):
        return {"variant": "alike", "arm": arm, "seed": seed, "users": len(curves), "per_user": 5, "nuts": [8, 4, 2],
                "optimizer": "saas-nehvi", "max_observations": 48, "seconds": 1.0, "warm_points": 1, "own_points": 0,
                "hv": {f"u{i}": c for i, c in enumerate(curves)},
                "suggest_seconds": seconds or {f"u{i}": [None, 1.0, 3.0, 2.0, 4.0] for i in range(len(curves))}}

    low, high = [0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.9, 0.94, 0.96, 0.97]
    records = [record("cold", s, [low] * 10) for s in (0, 1)] + [record("learned", s, [low] + [high] * 10)
                                                                  for s in (0, 1, 2)]
    table = bench.index_table(records)
    cold, learned = table.split("\n\n")
    assert cold.startswith("alike, cold:") and "| cold, pooled | 2 | 0.300 ± 0.000 | 0.500 ± 0.000 | – |" in cold
    rows = [line for line in learned.splitlines() if line.startswith("| ")][1:]
    assert rows[0] == "| 1 | 3 | 0.300 ± 0.000 | 0.500 ± 0.000 | – | – |", "the first user: cold, no model suggestion"
    assert rows[1] == "| 2 | 3 | 0.940 ± 0.000 | 0.970 ± 0.000 | – | 2.5 (max 4.0) |", "the model from the second trial"
    assert rows[-1] == "| 10.. | pairs 6 | | 0.970 ± 0.000 | | 6/6 at >= 0.95 by 5 |", "users 10 and 11 of 3 seeds"
    assert learned.startswith("alike, learned (48 rows):")
    two = [{**r, "warm_points": 2} for r in records]  # 2 front points (before 2026-12-07): seconds from the 3rd
    assert bench.index_table(two).split("\n\n")[1].startswith("alike, learned (48 rows, 2 front points):")
    assert "| 2 | 3 | 0.940 ± 0.000 | 0.970 ± 0.000 | – | 3.0 (max 4.0) |" in bench.index_table(two)
    earlier = [{**r, "own_points": None, "warm_points": None} for r in records]  # before both fields: 2 + 1 own point
    assert bench.index_table(earlier).split("\n\n")[1].startswith("alike, learned (48 rows, 2 front points, 1 own point):")
    assert "| 2 | 3 | 0.940 ± 0.000 | 0.970 ± 0.000 | – | 3.0 (max 4.0) |" in bench.index_table(earlier)
