"""``--data``, ``--data-format`` and ``--outputs`` reach the runner for every command that reads data.

The files are LaMP-4 questions and outputs with names the loader cannot guess: ``.txt``
questions (so the format must be given) and an outputs file that is not beside them under the
usual name (so ``--outputs`` must be given).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from search.cli import main
from search.commands.common import space_from_args
from search.commands.trial import add_parsers


def _lamp_files(root: Path) -> tuple[Path, Path]:
    questions, golds = [], []
    for user in range(3):
        profile = [{"id": f"p{user}{i}", "date": f"2020-0{i + 1}-01", "title": f"Title {user} {i}",
                    "text": f"user {user} wrote about topic {i} and the weather"} for i in range(4)]
        for q in range(4):
            qid = f"{user}{q}"
            questions.append({"id": qid, "user_id": user, "profile": profile,
                              "input": f"Generate a headline for the following article: story {q} of {user}"})
            golds.append({"id": qid, "output": f"Headline {q} for {user}"})
    qpath, opath = root / "lamp4-questions.txt", root / "answers" / "gold.json"
    opath.parent.mkdir()
    qpath.write_text(json.dumps(questions), encoding="utf-8")
    opath.write_text(json.dumps({"task": "LaMP_4", "golds": golds}), encoding="utf-8")
    return qpath, opath


@pytest.fixture(scope="module")
def lamp(tmp_path_factory):
    return _lamp_files(tmp_path_factory.mktemp("lamp"))


def data_args(lamp, users: int = 2) -> list[str]:
    qpath, opath = lamp
    return ["--space", "tiny.yaml", "--data", str(qpath), "--data-format", "lamp", "--outputs", str(opath),
            "--users", str(users)]


def test_options_become_data_settings(lamp):
    import argparse

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    space = space_from_args(parser.parse_args(["trial", *data_args(lamp)]))
    assert (space.data.source, space.data.format, space.data.outputs, space.data.users) == (
        str(lamp[0]), "lamp", str(lamp[1]), 2)
    assert space.overrides[-4:] == (f"data.source={lamp[0]}", "data.format=lamp", f"data.outputs={lamp[1]}",
                                    "data.users=2")


def test_trial_reads_lamp_through_the_options(lamp, capsys):
    assert main(["trial", *data_args(lamp), "--set", "lora.count=0", "--set", "rag.k=2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metrics"]["n_users"] == 2 and result["metrics"]["n_queries"] == 4
    assert {u["user_id"] for u in result["users"]} <= {"0", "1", "2"}


def test_without_outputs_the_error_says_which_option_to_pass(lamp, capsys):
    assert main(["trial", "--space", "tiny.yaml", "--data", str(lamp[0]), "--json"]) == 2
    err = capsys.readouterr().err
    assert "no outputs file found" in err and "pass the gold outputs file with --outputs" in err


def test_baselines_read_lamp_through_the_options(lamp, capsys):
    assert main(["baselines", *data_args(lamp), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["non-personalized"]["metrics"]["n_users"] == 2 and "rag-bm25" in rows


def test_run_reads_lamp_through_the_options(lamp, tmp_path):
    assert main(["run", *data_args(lamp, users=1), "--optimizer", "random", "--trials", "2", "--init-trials", "2",
                 "--study", "lamp", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test"]) == 0
    stored = json.loads((tmp_path / "lamp" / "study.json").read_text())
    assert stored["space"]["data"]["format"] == "lamp" and stored["space"]["data"]["outputs"] == str(lamp[1])
    assert [t["state"] for t in stored["trials"]] == ["completed", "completed"]


def test_pool_build_reads_lamp_through_the_options(lamp, tmp_path, capsys):
    assert main(["pool", "build", *data_args(lamp, users=1), "--sharers", "1", "--strategy", "most-active",
                 "--gate-steps", "1", "--steps", "1", "--pool", str(tmp_path / "pool"), "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["n_sharers"] == 1 and built["data"]["format"] == "lamp"
