"""Users with one query each (the MedicalDialogue kind): a test split that exists, and runs that end cleanly.

A generated one-query-per-user JSONL file on the tiny model: a cohort study holds out whole users
for the test and shows its front with test values; a per-user study says in one line that it has
no test queries; ``resume``, ``status``, ``export`` and ``baselines --split test`` all end with exit 0.
The slow test runs the MedicalDialogue sample's first users on the embedded model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runners.data.splits import SplitCounts
from runners.errors import DataError
from runners.session import session_for
from runners.spec import TrialConfig, TrialSetup
from runners.trial import run_trial
from search.cli import main
from search.study.study import Study

TINY = ["--space", "tiny.yaml"]
FAST = ["--set", "training.max_steps=1", "--set", "training.max_new_tokens=4"]
MEDDIALOGUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "meddialogue-sample.jsonl"


def one_query_file(path: Path, users: int = 8) -> str:
    """``users`` users with two history pairs and a single query each, as MedicalDialogue gives them."""
    topics = ["tea", "cats", "bikes", "rain", "bread", "maps", "jazz", "boats", "chess", "moss"]
    lines = []
    for i in range(users):
        topic = topics[i % len(topics)]
        history = [{"input": f"what do you think of {topic} number {j}?", "output": f"I like {topic} a lot, {j}"}
                   for j in range(2)]
        lines.append({"user_id": f"u{i}", "profile": f"fond of {topic}", "history": history,
                      "queries": [{"input": f"tell me about {topic}", "output": f"{topic} is what I like"}]})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return str(path)


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture(scope="module")
def cohort_study(tmp_path_factory):
    """A cohort study of 3 trials on 8 one-query users (run once for the tests that read it)."""
    import contextlib
    import io

    tmp = tmp_path_factory.mktemp("one-query")
    data = one_query_file(tmp / "one.jsonl")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["run", "one", *TINY, "--data", data, "--users", "8", "--trials", "3", "--init-trials", "3",
                     "--study-dir", str(tmp / "studies"), "--no-mlflow", *FAST])
    return tmp, data, code, err.getvalue()


def _counts(data: str, **settings) -> SplitCounts:
    setup = TrialSetup.from_dicts({"name": "tiny", "dtype": "float32", "device": "cpu"},
                                  {"source": data, "users": 8, **settings}, {})
    return SplitCounts.of(session_for(setup).splits)


def test_cohort_study_holds_out_users_and_ends_with_test_values(cohort_study):
    tmp, data, code, err = cohort_study
    counts = _counts(data)
    assert code == 0, err
    assert (counts.kind, counts.test_users) == ("users", 2), "a quarter of the 8 users is held out"
    assert "test split: users (6 users search, 2 users test; 6 validation queries, 2 test queries)\n" in err
    assert "each trains the memory of the 2 held-out test users, whom the search never saw" in err
    assert "nothing to score" not in err
    study = Study.load("one", tmp / "studies")
    front = study.pareto_trials()
    assert front and all(t.test_values for t in front), "every front trial has test values"
    assert all(t.test_values["n_users"] == counts.test_users for t in front), "the test users answered them"
    assert all(t.values["n_users"] == 8 - counts.test_users for t in study.completed()), \
        "the search trains and scores its own users only"


def test_resume_status_and_export_of_the_cohort_study(cohort_study, capsys):
    tmp, _, code, err = cohort_study
    assert code == 0, err
    dirs = ["--study-dir", str(tmp / "studies")]
    code, _, err = run_cli(["resume", "one", *dirs, "--no-mlflow"], capsys)
    assert code == 0, err
    assert "test split: users (" in err and "evaluating" not in err, "the front's test values are kept"
    code, out, err = run_cli(["status", "one", *dirs], capsys)
    assert code == 0 and "(test)" in out, err
    trial = next(t for t in Study.load("one", tmp / "studies").pareto_trials())
    code, _, err = run_cli(["export", "one", *dirs, "--pick", f"trial:{trial.number}", "--out", str(tmp / "bundle")],
                           capsys)
    assert code == 0, err
    manifest = yaml.safe_load((tmp / "bundle" / "serving.yaml").read_text())
    held_out = manifest["held_out_users"]["users"]
    assert held_out and not set(held_out) & set(manifest["users"]), "test users are listed apart, not served"
    assert len(held_out) + len(manifest["users"]) == 8
    assert manifest["metrics"]["test"] == trial.test_values


def test_per_user_study_says_once_it_has_no_test_queries(tmp_path, capsys):
    """Each one-query user's own study has no test query: one line says so, every study ends, exit 0."""
    data = one_query_file(tmp_path / "one.jsonl", users=4)
    code, out, err = run_cli(["run", "pu", *TINY, "--per-user", "--data", data, "--users", "2", "--trials", "2",
                              "--init-trials", "2", "--study-dir", str(tmp_path / "studies"), "--no-mlflow", *FAST],
                             capsys)
    assert code == 0, err
    assert "test split: per user (2 users; 2 validation queries, no test queries)" in err
    assert err.count("no test queries: each user has a single query") == 1
    assert "evaluating" not in err and "nothing to score" not in err
    users = sorted((tmp_path / "studies" / "pu" / "users").iterdir())
    assert len(users) == 2
    for user in users:
        study = Study.load(f"pu/users/{user.name}", tmp_path / "studies")
        assert len(study.completed()) == 2 and not any(t.test_values for t in study.trials)
    code, _, err = run_cli(["resume", "pu", "--study-dir", str(tmp_path / "studies"), "--no-mlflow"], capsys)
    assert code == 0 and err.count("no test queries:") == 1, err


def test_queries_split_forced_on_one_query_users(tmp_path, capsys):
    """data.test_split=queries keeps each single query for validation: the study says in one line that
    there are no test queries and prints its front with validation values; exit 0."""
    data = one_query_file(tmp_path / "one.jsonl", users=3)
    code, out, err = run_cli(["run", "q", *TINY, "--data", data, "--users", "3", "--trials", "2", "--init-trials", "2",
                              "--set", "data.test_split=queries", "--study-dir", str(tmp_path / "s"), "--no-mlflow",
                              *FAST], capsys)
    assert code == 0, err
    assert "test split: queries (3 users; 3 validation queries, no test queries)" in err
    assert err.count("no test queries: every user has a single query") == 1
    assert "Pareto front of q" in out
    code, out, err = run_cli(["baselines", *TINY, "--data", data, "--users", "3", "--split", "test", "--set",
                              "data.test_split=queries", "--json"], capsys)
    assert code == 0 and json.loads(out) == [], err


def test_baselines_on_the_held_out_users(tmp_path, capsys):
    data = one_query_file(tmp_path / "one.jsonl", users=4)
    code, out, err = run_cli(["baselines", *TINY, "--data", data, "--users", "4", "--split", "test", "--json",
                              *FAST], capsys)
    counts = _counts(data, users=4)
    rows = json.loads(out)
    assert code == 0 and rows, err
    assert all(r["metrics"]["n_users"] == counts.test_users and r["metrics"]["n_queries"] == counts.test_users
               for r in rows)


def test_run_trial_on_an_empty_test_split_names_the_fix(tmp_path):
    data = one_query_file(tmp_path / "one.jsonl", users=2)
    setup = TrialSetup.from_dicts({"name": "tiny", "dtype": "float32", "device": "cpu"},
                                  {"source": data, "users": 2, "test_split": "queries"}, {"max_steps": 1})
    with pytest.raises(DataError, match=r"run_trial: split='test' has no queries in .*one.jsonl \(test split: "
                                        r"queries \(2 users; 2 validation queries, no test queries\)\); evaluate "
                                        r"split='val'"):
        run_trial(TrialConfig(), setup, split="test")


@pytest.mark.slow
@pytest.mark.skipif(not MEDDIALOGUE.exists(), reason="the MedicalDialogue sample is not on this machine")
def test_meddialogue_first_users_on_the_embedded_model(tmp_path, capsys):
    """Real one-query users: the sample's first 4 dialogues, the embedded SmolLM2, 2 trials at tiny
    budgets (about 40 s of CPU). The study ends with exit 0 and its front has test values from the
    held-out users."""
    first = MEDDIALOGUE.read_text(encoding="utf-8").splitlines()[:4]
    data = tmp_path / "meddialogue-first.jsonl"
    data.write_text("\n".join(first) + "\n", encoding="utf-8")
    code, out, err = run_cli(["run", "med", "--space", "milp.yaml", "--data", str(data), "--users", "4",
                              "--trials", "2", "--init-trials", "2", "--study-dir", str(tmp_path / "studies"),
                              "--no-mlflow", "--set", "training.max_steps=1", "--set", "training.min_steps=1",
                              "--set", "training.epochs=1", "--set", "training.max_new_tokens=8",
                              "--set", "training.max_seq_len=128", "--set", "training.max_prompt_tokens=192",
                              "--set", "rag.retriever=bm25"], capsys)
    assert code == 0, err
    assert "test split: users (" in err and "nothing to score" not in err
    study = Study.load("med", tmp_path / "studies")
    assert [t.state.value for t in study.trials] == ["completed"] * 2
    assert all(t.test_values and 0.0 <= t.test_values["rougeL"] <= 1.0 for t in study.pareto_trials())


def test_a_study_that_scored_the_now_held_out_users_gets_no_test_values(tmp_path, capsys):
    """A study made before data.test_split scored every one-query user for validation; resumed, its
    split now holds some of them out: testing the front on users the optimiser saw would be no test,
    so one line says so and the front keeps its validation values (exit 0)."""
    from search.space import load_space

    data = one_query_file(tmp_path / "one.jsonl", users=4)
    space = load_space("tiny.yaml").bind(4).with_overrides([f"data.source={data}", "data.users=4",
                                                            "optimizer.trials=2"])
    study = Study.create("old", tmp_path / "studies", space)
    for i in range(2):
        record = study.add_trial(space.defaults())
        study.complete_trial(record.number, {"rougeL": 0.1 * i, "persona_f1": 1.0 + i, "storage_bytes": 10.0 * i},
                             user_attrs={"users": {f"u{j}": {} for j in range(4)}})
    code, _, err = run_cli(["resume", "old", "--study-dir", str(tmp_path / "studies"), "--no-mlflow"], capsys)
    assert code == 0, err
    assert "no test values: trials of this study were scored on users now held out for the test" in err
    assert "evaluating" not in err
    assert not any(t.test_values for t in Study.load("old", tmp_path / "studies").trials)
