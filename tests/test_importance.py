"""``pers-search importance``: parameter importances per objective on problems whose drivers are known."""

from __future__ import annotations

import json

import pytest

from bench_scripts import load_bench
from search.api import optimize
from search.cli import main
from search.results.importance import HOW_MANY, WHICH, ImportanceError, compute, which_layers
from search.space import parse_space
from search.study.study import Study

accuracy = load_bench("importance_accuracy")


def _stored(tmp_path, n: int, seed: int = 0) -> Study:
    """A study of ``n`` random trials of the mixed problem, written as a real study directory."""
    space, trials = accuracy.random_trials(n, seed)
    study = Study.create("mixed", tmp_path, space)
    for t in trials:
        study.add_trial(t.config)
        study.complete_trial(t.number, t.values)
    return Study.load("mixed", tmp_path)


def test_the_drivers_of_each_objective_come_first(tmp_path):
    found = compute(_stored(tmp_path, 80))
    quality, personal, storage = (found.groups[m] for m in ("quality", "personal", "storage"))
    assert min(quality["count"], quality["rank"], quality["layers" + WHICH]) > max(quality["k"], quality["retriever"])
    assert min(personal["k"], personal["retriever"]) > personal["rank"]
    # storage is count x rank x layers on; random masks vary little in how many are on (15 +- 2.7 of 30)
    assert min(storage["count"], storage["rank"]) > max(storage["k"], storage["retriever"], storage["layers" + WHICH])
    assert {i for i, _ in found.layers["quality"]} == {3, 7, 20}  # the quality layers, one by one
    assert found.layers["personal"][0][0] == 12
    for column in found.columns.values():
        assert sum(column.values()) == pytest.approx(1.0, abs=1e-6)
    assert set(found.groups) == {"quality", "personal", "storage", "front"} and found.readable


def test_the_same_seed_gives_the_same_table(tmp_path):
    study = _stored(tmp_path, 30)
    assert compute(study, seed=3).columns == compute(study, seed=3).columns


def test_noise_across_flags_is_not_read_as_which_layers_matter():
    assert which_layers([0.01] * 30) == 0.0
    assert which_layers([0.01] * 27 + [0.2, 0.1, 0.05]) == pytest.approx(0.19 + 0.09 + 0.04)


def test_too_few_trials_is_one_line_with_the_fix(tmp_path, capsys):
    _stored(tmp_path, 6)
    with pytest.raises(ImportanceError, match="has 6 completed trials; importances need 10 at least"):
        compute(Study.load("mixed", tmp_path))
    assert main(["importance", "mixed", "--study-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pers-search resume mixed --trials" in err


def test_the_command_prints_a_table_json_and_a_plot_and_writes_nothing_in_the_study(tmp_path, capsys):
    studies = tmp_path / "studies"
    _stored(studies, 24)
    before = {p: p.read_bytes() for p in (studies / "mixed").iterdir()}
    assert main(["importance", "mixed", "--study-dir", str(studies)]) == 0
    out = capsys.readouterr()
    assert "parameter importance in mixed (24 completed trials" in out.out and "layers: which" in out.out
    assert "the ranking is rough below 30" in out.err
    assert main(["importance", "mixed", "--study-dir", str(studies), "--json",
                 "--plot", str(tmp_path / "imp.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trials"] == 24 and set(data["importance"]) == {"quality", "personal", "storage", "front"}
    assert (tmp_path / "imp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p: p.read_bytes() for p in (studies / "mixed").iterdir()} == before
    assert main(["importance", "mixed", "--study-dir", str(studies), "--plot", str(tmp_path / "imp.png")]) == 1


def test_a_cohort_shows_each_users_top_rows(tmp_path, capsys):
    from search.execution.per_user import optimize_tasks

    space = parse_space("name: c\nobjectives: {q: max, cost: min}\nparameters:\n"
                        "  a: {type: float, low: 0, high: 1}\n  b: {type: float, low: 0, high: 1}\n"
                        "optimizer: {name: random, init_trials: 12, trials: 12, seed: 0}\n", "c.yaml")
    objectives = {"u1": _ab, "u2": _ba}
    optimize_tasks(space, objectives, study_name="c", study_dir=tmp_path)
    assert main(["importance", "c", "--study-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "u1" in out and "u2" in out and "the top 3 rows" in out
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--json"]) == 0
    users = json.loads(capsys.readouterr().out)["users"]
    assert max(users["u1"]["importance"]["q"]["rows"], key=users["u1"]["importance"]["q"]["rows"].get) == "a"
    assert max(users["u2"]["importance"]["q"]["rows"], key=users["u2"]["importance"]["q"]["rows"].get) == "b"

    # read as status and pareto read a per-user study: a page of users, one user's whole table, --plot with --user
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--rows", "1", "--page", "2"]) == 0
    said = capsys.readouterr()
    assert "users 2-2 of 2 searched" in said.out and "│ u2 " in said.out and "│ u1 " not in said.out
    assert f"one user's whole table (and --plot): `pers-search importance c --study-dir {tmp_path} --user USER`" \
        in said.err
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--user", "u2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["study"] == "c/users/u2"
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--user", "u1"]) == 0
    assert "parameter importance in c/users/u1 (12" in capsys.readouterr().out
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--plot", str(tmp_path / "c.png")]) == 2
    assert "is a per-user study, with one set of importances per user; add --user USER" in capsys.readouterr().err
    assert main(["importance", "c", "--study-dir", str(tmp_path), "--user", "u2", "--plot", str(tmp_path / "u2.png")]) == 0
    assert (tmp_path / "u2.png").stat().st_size > 1000


def _ab(config):
    return {"q": config["a"] + 0.01 * config["b"], "cost": config["b"]}


def _ba(config):
    return {"q": config["b"] + 0.01 * config["a"], "cost": config["a"]}


def test_bench_pair_accuracy():
    assert accuracy.pair_accuracy({"a": 2, "b": 1, "c": 0}, {"a"}, {"b", "c"}) == 1.0
    assert accuracy.pair_accuracy({"a": 0, "b": 1}, {"a"}, {"b"}) == 0.0


def test_a_users_study_with_too_few_trials_names_the_cohorts_resume(tmp_path, capsys):
    from search.execution.per_user import optimize_tasks

    space = parse_space("name: c\nobjectives: {q: max, cost: min}\nparameters:\n"
                        "  a: {type: float, low: 0, high: 1}\n  b: {type: float, low: 0, high: 1}\n"
                        "optimizer: {name: random, init_trials: 3, trials: 3, seed: 0}\n", "c.yaml")
    optimize_tasks(space, {"u1": _ab, "u2": _ba}, study_name="few", study_dir=tmp_path)
    assert main(["importance", "few", "--study-dir", str(tmp_path), "--user", "u1"]) == 2
    err = capsys.readouterr().err
    assert "`pers-search resume few --trials 30`" in err, err  # resume takes the cohort, not few/users/u1
