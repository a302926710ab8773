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
    printed = capsys.readouterr().out
    assert "alike learned seed 0: u0 HV@4" in printed

    assert bench.main([*TINY, "--out", str(out)]) == 0  # everything is in the file: nothing runs again
    assert len(out.read_text().splitlines()) == 2
    capsys.readouterr()

    assert bench.main(["--summarise", str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| alike")]
    assert len(rows) == 3 and f"{learned['hv']['u1'][3]:.3f} ± 0.000" in rows[1]
    assert rows[0].split("|")[3:5] == [" 1 ", " 1 "]  # one seed, one user after the first
    gain = learned["hv"]["u1"][3] - cold["hv"]["u1"][3]  # the paired table: one (seed, user) pair
    assert rows[2].split("|")[2] == " 1 " and f"{gain:.3f} ± 0.000" in rows[2]
    assert rows[2].rstrip(" |").endswith(f"{int(gain > 0)}/1")

    out.write_text(out.read_text() + "{not json\n")
    with pytest.raises(SystemExit, match="line 3: not a record"):
        bench.main(["--summarise", str(out)])
