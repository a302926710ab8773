"""``bench/cohort_scale.py`` at tiny scale: the cohort file, the child's measured peak, the table, one real run."""

import sys

import pytest
from bench_scripts import load_bench

from runners.data.load import load_dataset


@pytest.fixture(scope="module")
def bench():
    return load_bench("cohort_scale")


def test_a_cohort_larger_than_the_demo_repeats_its_users_under_new_ids(bench, tmp_path):
    demo = load_dataset("demo").users
    users = load_dataset(str(bench.write_cohort(tmp_path / "u.jsonl", len(demo) + 3))).users
    assert len(users) == len(demo) + 3 and len({u.user_id for u in users}) == len(users)
    assert [u.user_id for u in users[len(demo):]] == [f"{u.user_id}-r1" for u in demo[:3]]
    again, first = users[len(demo)], demo[0]
    assert (again.profile, again.queries[0].output, len(again.history)) == (first.profile, first.queries[0].output,
                                                                            len(first.history))
    assert again.history[0].as_text() == first.history[0].as_text()


def test_same_user_copies_one_user_whose_copies_share_no_retrieval_text(bench, tmp_path):
    first = load_dataset("demo").users[0]
    users = load_dataset(str(bench.write_cohort(tmp_path / "u.jsonl", 3, same=True))).users
    assert [u.user_id for u in users] == [first.user_id, f"{first.user_id}-r1", f"{first.user_id}-r2"]
    assert all((u.profile, [(q.input, q.output) for q in u.queries], len(u.history))
               == (first.profile, [(q.input, q.output) for q in first.queries], len(first.history)) for u in users)
    assert users[0].history[0].as_text() == first.history[0].as_text()
    assert users[2].history[0].input.endswith(" #2")  # the copies' corpora differ: an index each
    assert len({u.history[-1].as_text() for u in users}) == 3


def test_the_child_peak_is_its_own_and_a_failing_child_is_shown(bench, tmp_path):
    """A child's peak is not its parent's: this process is made larger than any child first."""
    ballast = bytearray(600 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched: resident
    grow = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    peak, seconds = bench.run_child(grow, [], tmp_path, tmp_path / "grow.log")
    assert 300 <= peak < 400 and seconds > 0
    small, _ = bench.run_child("pass", [], tmp_path, tmp_path / "small.log")
    assert small < 100
    with pytest.raises(SystemExit, match="failed with exit code 3(.|\n)*boom"):
        bench.run_child("import sys; print('boom'); sys.exit(3)", [], tmp_path, tmp_path / "fail.log")
    del ballast


def test_the_table_gives_each_size_against_the_smallest(bench):
    rows = [bench.Measured(5, 1100.0, 50.0), bench.Measured(1, 1000.0, 20.0), bench.Measured(20, 1050.0, 120.0)]
    lines = bench.table(rows).splitlines()
    assert lines[0] == "| users | peak RSS MB | wall s | s per user | peak / 1 user |"
    assert lines[2:] == ["| 1 | 1,000 | 20 | 20.0 | 1.00 |", "| 5 | 1,100 | 50 | 10.0 | 1.10 |",
                         "| 20 | 1,050 | 120 | 6.0 | 1.05 |"]


def test_a_tiny_run_measures_each_size_in_a_child_of_its_own(bench, capsys):
    args = bench.parse_args(["--space", "tiny.yaml", "--users", "1", "2", "--set", "training.max_steps=1"])
    assert args.sets == ["training.max_steps=1"] and bench.parse_args([]).sets == list(bench.DEFAULT_SETS)
    argv = bench.cohort_argv(2, bench.ROOT / "x", args, None)
    assert argv[:8] == ["run", "scale-2", "--space", "tiny.yaml", "--per-user", "--users", "2", "--trials"]
    assert {"--no-mlflow", "--no-test"} <= set(argv) and "--data" not in argv
    assert bench.main(["--space", "tiny.yaml", "--users", "1", "2", "--set", "training.max_steps=1"]) == 0
    out = capsys.readouterr().out
    assert f"code {bench.ROOT}" in out and "OMP_NUM_THREADS=" in out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2] and rows[0][4].strip() == "1.00"
    assert all(200 < float(r[1].replace(",", "")) < 4000 for r in rows), rows  # MB of a tiny-model process
    assert bench.parse_args(["--same-user"]).same_user and not args.same_user


def test_bad_sizes_are_refused(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--users", "0"])
    assert "every cohort size must be >= 1" in capsys.readouterr().err


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("the children read their peak from /proc: Linux")


def test_the_table_also_gives_each_size_against_the_largest_user_alone(bench):
    rows = [bench.Measured(1, 1000.0, 20.0), bench.Measured(20, 1150.0, 120.0)]
    alone = [bench.Measured(1, 1000.0, 20.0), bench.Measured(1, 1100.0, 21.0), bench.Measured(1, 1050.0, 19.0)]
    lines = bench.table(rows, alone).splitlines()
    assert lines[0].endswith("| peak / 1 user | peak / largest user alone |")
    assert lines[2:4] == ["| 1 | 1,000 | 20 | 20.0 | 1.00 | 0.91 |", "| 20 | 1,150 | 120 | 6.0 | 1.15 | 1.05 |"]
    assert lines[-1] == "3 users alone: peak RSS 1,000 to 1,100 MB (median 1,050 MB)"


def test_alone_runs_each_user_of_the_largest_cohort_in_a_process_of_its_own(bench, capsys):
    assert bench.main(["--space", "tiny.yaml", "--users", "1", "2", "--set", "training.max_steps=1", "--alone"]) == 0
    out = capsys.readouterr().out
    alone = [line for line in out.splitlines() if line.startswith("  ") and " alone: peak RSS " in line]
    assert len(alone) == 2 and len({line.split()[0] for line in alone}) == 2, out
    assert "| peak / largest user alone |" in out and "2 users alone: peak RSS" in out


def test_phase_summary_splits_the_first_training_from_the_later_ones(bench):
    phases = ({"phase": "_personalized", "peak": 1700.0, "after": 1500.0},
              {"phase": "_run_user", "peak": 1400.0, "after": 1150.0},
              {"phase": "_personalized", "peak": 1900.0, "after": 1550.0},
              {"phase": "_run_user", "peak": 1420.0, "after": 1190.0},
              {"phase": "_personalized", "peak": 1950.0, "after": 1560.0},
              {"phase": "_run_user", "peak": 1410.0, "after": 1200.0})
    line = bench.phase_summary(bench.Measured(3, 1950.0, 30.0, phases))
    assert line == ("3 users, phase peaks MB: first training 1,700, later trainings 1,950 (1,900-1,950, 2), "
                    "evaluations 1,410 (1,400-1,420, 3); between users 1,190 (1,150-1,200, 3)")
    assert "first training -, later trainings -" in bench.phase_summary(bench.Measured(1, 900.0, 5.0, phases[1:2]))


def test_phases_are_read_at_every_boundary_of_a_real_run(bench, tmp_path, capsys):
    args = bench.parse_args(["--space", "tiny.yaml", "--users", "2", "--set", "training.max_steps=1", "--phases"])
    row = bench.measure(2, args, tmp_path, None)
    assert [p["phase"] for p in row.phases] == ["_personalized", "_run_user"] * 2  # each user: training, end
    assert row.peak_mb >= max(p["peak"] for p in row.phases) and all(p["after"] > 100 for p in row.phases)
    assert bench.main(["--space", "tiny.yaml", "--users", "2", "--set", "training.max_steps=1", "--phases"]) == 0
    assert "2 users, phase peaks MB: first training " in capsys.readouterr().out
