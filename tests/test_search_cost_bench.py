"""``bench/search_cost.py`` on a tiny budget: rows appended per seed, labels, the summary from the file alone."""

import json

import pytest
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("search_cost")


def test_seeds_are_appended_and_summarised_from_the_file(bench, tmp_path, capsys):
    out = tmp_path / "cost.jsonl"
    tiny = ["--problems", "synthetic", "--seeds", "1", "--per-user", "3", "--trials", "5", "--out", str(out)]
    assert bench.main([*tiny, "--first-seed", "2"]) == 0
    assert bench.main([*tiny, "--first-seed", "3", "--parts", "warm", "--optima", "0.5", "0.4"]) == 0
    printed = capsys.readouterr().out
    assert "synthetic stopping seed 2:" in printed
    assert "synthetic, optima 0.5 ± 0.4, 1 front point warm-start seed 3:" in printed

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["part"], r["seed"]) for r in records] == [("stopping", 2), ("warm", 2), ("warm", 3)]
    stopping, alike, distinct = records
    assert stopping["trials"] == 5 and stopping["row"]["full_steps"] == 5 * bench.STEPS  # no stop: every step
    assert stopping["row"]["stop_steps"] <= stopping["row"]["full_steps"]
    assert alike["optima"] == list(bench.DEFAULT_OPTIMA) and distinct["optima"] == [0.5, 0.4]
    for record in (alike, distinct):
        assert record["arms"] == list(bench.ARMS) and record["warm_points"] == 1
        for arm in bench.ARMS:
            assert 0.0 < record["row"][f"{arm}_hv"] <= 1.05 and len(record["row"][f"{arm}_users"]) == 3

    assert bench.main(["--summarise", str(out)]) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| synthetic")}
    alike_label, distinct_label = ("synthetic, 3 trials per user, 1 front point",
                                   "synthetic, optima 0.5 ± 0.4, 3 trials per user, 1 front point")
    assert set(rows) == {"synthetic", alike_label, distinct_label}
    assert f"{alike['row']['cold_hv']:.4g} ± 0" in rows[alike_label]  # one seed: sd 0
    assert rows["synthetic"].split("|")[2].strip() == "1"  # the stopping row
    assert f"{distinct['row']['learned_hv']:.4g} ± 0" in rows[distinct_label]


def test_arms_run_apart_merge_by_seed_and_old_warm_rows_are_the_fronts_arm(bench, tmp_path, capsys):
    out = tmp_path / "arms.jsonl"
    old = {"problem": "embedded", "part": "warm", "seed": 0, "per_user": 6, "train_steps": None,
           "row": {"cold_hv": 2.0, "warm_hv": 2.5}}
    later = [{"problem": "embedded", "part": "warm", "seed": s, "per_user": 6, "train_steps": None, "warm_points": 4,
              "arms": ["learned"], "row": {"learned_hv": v}} for s, v in ((0, 3.0), (1, 1.0))]
    two = {**later[0], "warm_points": 2, "row": {"learned_hv": 4.0}}
    eight = {**later[0], "per_user": 8, "row": {"learned_hv": 9.0}}
    out.write_text("\n".join(json.dumps(r) for r in [old, *later, two, eight]) + "\n")
    assert bench.main(["--summarise", str(out)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| embedded")]
    assert len(rows) == 3 and rows[2].startswith("| embedded, 8 trials per user, 4 front points | 1 | – |"), \
        "another budget is a row of its own"
    points = [c.strip() for c in rows[1].split("|")[1:-1]]
    assert points[:3] == ["embedded, 2 front points", "1", "2 ± 0"], "the cold arm joins every front-point setting"
    assert rows[0].startswith("| embedded, 4 front points |"), "files written before --warm-points: 4 points"
    assert points[3] == "–" and points[6:] == ["2 ± 0", "1/1"]
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[1] == "2", "two seeds"
    assert cells[2] == "2 ± 0 (1)" and cells[3] == "2.5 ± 0 (1)", "cold and fronts from the old record, seed 0 only"
    assert cells[4].startswith("2 ± 1.4"), "learned over both seeds"
    assert cells[5] == "0.5 ± 0" and cells[6] == "1 ± 0" and cells[7] == "1/1", "gains over the seeds with both arms"


def test_labels_name_non_default_settings(bench):
    assert bench._label("embedded", None) == "embedded"
    assert bench._label("embedded", 16) == "embedded, 16 steps"
    assert bench._label("synthetic", None, bench.DEFAULT_OPTIMA) == "synthetic"
    assert bench._label("synthetic", None, (0.5, 0.4)) == "synthetic, optima 0.5 ± 0.4"
    assert bench._with_points("synthetic, optima 0.5 ± 0.4", 2) == "synthetic, optima 0.5 ± 0.4, 2 front points"
    assert bench._with_points("embedded", 4) == bench._with_points("embedded", None) == "embedded, 4 front points"
    assert bench._with_points("synthetic", 1) == "synthetic, 1 front point"
    assert bench.arm_overrides("cold", 2) == []
    assert bench.arm_overrides("fronts", 2) == ["warm_start.max_points=2", "warm_start.max_observations=0"]
    assert bench.arm_overrides("learned", 2) == ["warm_start.max_points=2"]
    assert bench.training_overrides(16) == ["training.max_steps=16", "training.min_steps=16"]
    assert bench.training_overrides(None) == []
    rule = ("early_stopping.margin=0.02", "early_stopping.min_finished=2")
    assert bench._label("synthetic", None, rule=rule) == "synthetic, margin=0.02, min_finished=2"


def test_bad_results_files_and_flags_name_the_file_the_line_and_the_fix(bench, tmp_path, capsys):
    truncated, keyless = tmp_path / "truncated.jsonl", tmp_path / "keyless.jsonl"
    truncated.write_text('{"problem": "synthetic", "part": "warm", "row": {"cold_hv": 0.9}}\n{"problem": \n')
    keyless.write_text('\n{"problem": "synthetic"}\n')
    expected = {
        str(tmp_path / "missing.jsonl"): "missing.jsonl does not exist; check the path",
        str(truncated): "truncated.jsonl line 2: invalid JSON",
        str(keyless): "keyless.jsonl line 2: no part, row; pass a file written by --out",
    }
    for path, message in expected.items():
        with pytest.raises(SystemExit):
            bench.main(["--summarise", path])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--problems", "synthetic", "--train-steps", "16"])
    assert "add --problems embedded or drop it" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--problems", "synthetic", "--stop-set", "margin=0.02"])
    assert "--stop-set margin=0.02: give early_stopping.KEY=VALUE" in capsys.readouterr().err
    for item, message in (("early_stopping.margin=abc", "early_stopping.margin: input should be a valid number"),
                          ("early_stopping.foo=1", "early_stopping.foo: unknown key; allowed keys:"),
                          ("early_stopping.margin", "expected key=value")):
        with pytest.raises(SystemExit):
            bench.main(["--problems", "synthetic", "--stop-set", item])
        assert message in capsys.readouterr().err, item


def test_a_stopping_rule_set_on_the_command_line_is_used_recorded_and_its_own_row(bench, tmp_path, capsys):
    out = tmp_path / "rule.jsonl"
    tiny = ["--problems", "synthetic", "--parts", "stopping", "--seeds", "1", "--trials", "6", "--out", str(out)]
    assert bench.main(tiny) == 0
    # min_finished 9 of 6 trials: no trial can ever be stopped, so every step is spent
    assert bench.main([*tiny, "--stop-set", "early_stopping.min_finished=9"]) == 0
    default, strict = [json.loads(line) for line in out.read_text().splitlines()]
    assert default["rule"] == [] and strict["rule"] == ["early_stopping.min_finished=9"]
    assert default["row"]["stop_pruned"] > 0, "the space's own rule stops trials of this seed"
    assert strict["row"]["stop_pruned"] == 0 and strict["row"]["stop_steps"] == strict["row"]["full_steps"]
    capsys.readouterr()
    assert bench.main(["--summarise", str(out)]) == 0
    labels = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| synth")]
    assert labels == ["synthetic", "synthetic, min_finished=9"]


def test_trial_lines_name_the_arm_the_user_and_the_trial(bench, capsys):
    space = bench.parse_space(bench.SYNTHETIC, "curves.yaml").with_optimizer(trials=2, init_trials=2)
    users = {f"u{i}": bench.SyntheticUser(0.5 + 0.1 * i) for i in range(2)}
    row = bench.search_arms(space, users, ("cold",), 4, {"cost": bench.cost}, lines=True)
    assert set(row) == {"cold_hv", "cold_users"} and len(row["cold_users"]) == 1
    err = capsys.readouterr().err
    assert "cold user 1/2 u0 [1/2] trial 0 completed" in err and "cold user 2/2 u1 [2/2] trial 1 completed" in err
