"""``bench/history_signal.py``: the own history against other users' histories, on the demo users."""

import pytest
from bench_scripts import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("history_signal")


def test_a_users_own_history_predicts_their_answers_better_than_others_on_the_demo_data(bench):
    splits = bench.evaluated_users("demo", 3)
    values = bench.signal(splits)
    assert [len(v) for v in values["rouge_own"]] == [len(s.val) for s in splits] and len(splits) == 3
    for key in ("rouge", "copy"):
        own = [x for user in values[f"{key}_own"] for x in user]
        others = [x for user in values[f"{key}_others"] for x in user]
        assert all(0.0 <= x <= 1.0 for x in own + others)
        assert sum(own) / len(own) > sum(others) / len(others)  # the demo personas answer from their histories
    lines = bench.report(values, n_boot=200)
    assert lines[0].startswith("3 users, ") and lines[2].startswith("ROUGE-L ") and lines[2].endswith("*")


def test_best_rouge_takes_the_closest_text_and_zero_without_texts(bench):
    assert bench.best_rouge("the cat sat on the mat", ["a dog ran", "the cat sat on the mat"]) == pytest.approx(1.0)
    assert bench.best_rouge("anything", []) == 0.0


def test_a_missing_source_file_is_refused_with_its_name(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--source", "/nonexistent/meddialogue.jsonl"])
    assert "/nonexistent/meddialogue.jsonl: no such file" in capsys.readouterr().err
