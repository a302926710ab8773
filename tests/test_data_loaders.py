"""Loaders: generic JSONL, LaMP, MedicalDialogue, and format detection in load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runners.data.jsonl import load_jsonl
from runners.data.lamp import load_lamp
from runners.data.load import KNOWN_FORMATS, detect_format, load_dataset
from runners.data.meddialogue import clean_utterance, load_meddialogue
from runners.data.types import HistoryItem, Query
from runners.errors import DataError


def _write_lines(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1))
    return path


USER_A = {
    "user_id": "a",
    "profile": "likes tea",
    "history": [
        {"text": "I drank green tea today", "time": "2024-01-02", "mood": "calm"},
        {"input": "Coffee?", "output": "Tea, always.", "time": 3, "id": 7},
    ],
    "queries": [{"input": "Drink?", "output": "Tea."}, {"input": "Snack?", "output": "Scones.", "id": "x9"}],
}
USER_B = {"user_id": "b", "history": [{"text": "hello there"}]}


# ---------------------------------------------------------------- generic JSONL


def test_jsonl_loads_users_items_and_query_ids(tmp_path):
    path = _write_lines(tmp_path / "users.jsonl", [USER_A, "", USER_B])
    data = load_jsonl(path)
    assert data.task == "generic" and data.source == str(path)
    a, b = data.users
    assert a.user_id == "a" and a.profile == "likes tea"
    assert a.history[0] == HistoryItem(text="I drank green tea today", time="2024-01-02", fields={"mood": "calm"})
    assert a.history[1] == HistoryItem(input="Coffee?", output="Tea, always.", time=3, id="7")
    assert a.queries == (Query("a-0", "Drink?", "Tea."), Query("x9", "Snack?", "Scones."))
    assert b.profile == "" and b.queries == ()


def test_jsonl_invalid_json_names_file_and_line(tmp_path):
    path = _write_lines(tmp_path / "bad.jsonl", [USER_A, '{"user_id": "b", "history": [}'])
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: invalid JSON at column \d+"):
        load_jsonl(path)


def test_jsonl_missing_field_names_file_line_and_field(tmp_path):
    broken = dict(USER_A, queries=[{"input": "Drink?"}])
    path = _write_lines(tmp_path / "u.jsonl", [USER_B, broken])
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    message = str(err.value)
    assert str(path) in message and "line 2" in message
    assert "missing field 'queries[0].output'; add it (a string)" in message


def test_jsonl_wrong_type_says_what_is_expected(tmp_path):
    path = _write_lines(tmp_path / "u.jsonl", [dict(USER_B, history="not a list")])
    with pytest.raises(DataError, match=r"u\.jsonl line 1: field 'history' is str 'not a list', expected a list"):
        load_jsonl(path)


def test_jsonl_item_without_text_or_pair(tmp_path):
    path = _write_lines(tmp_path / "u.jsonl", [dict(USER_B, history=[{"text": "ok"}, {"input": "q"}])])
    with pytest.raises(DataError, match=r"line 1: missing field 'history\[1\]\.output'"):
        load_jsonl(path)
    path = _write_lines(tmp_path / "v.jsonl", [dict(USER_B, history=[{"time": 1}])])
    with pytest.raises(DataError, match=r"history\[0\] has neither 'text' nor 'input'/'output'"):
        load_jsonl(path)


def test_jsonl_duplicate_user_and_missing_file(tmp_path):
    path = _write_lines(tmp_path / "u.jsonl", [USER_B, USER_B])
    with pytest.raises(DataError, match=r"line 2: user_id 'b' already used on line 1"):
        load_jsonl(path)
    with pytest.raises(DataError, match=r"nope\.jsonl does not exist"):
        load_jsonl(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- LaMP


def _lamp_files(tmp_path: Path, task: str, questions: list, golds: list, name: str = "dev") -> Path:
    _write_json(tmp_path / f"{name}_outputs.json", {"task": task, "golds": golds})
    return _write_json(tmp_path / f"{name}_questions.json", questions)


LAMP4_QUESTIONS = [
    {"id": "110", "user_id": 1, "input": "Generate a headline for the following article: rain",
     "profile": [{"id": "p1", "date": "2020-01-01", "text": "sun today", "title": "Sunny"},
                 {"id": "p2", "date": "2020-02-01", "text": "snow today", "title": "Snowy"}]},
    {"id": "111", "user_id": 1, "input": "Generate a headline for the following article: fog",
     "profile": [{"id": "p2", "date": "2020-02-01", "text": "snow today", "title": "Snowy"},
                 {"id": "p3", "date": "2020-03-01", "text": "wind today", "title": "Windy"}]},
    {"id": "120", "user_id": 2, "input": "Generate a headline for the following article: hail",
     "profile": [{"id": "p9", "date": "2019-05-05", "text": "heat", "title": "Hot"}]},
]
LAMP4_GOLDS = [{"id": "110", "output": "Rainy"}, {"id": "111", "output": "Foggy"}, {"id": "120", "output": "Hail"}]


def test_lamp_groups_by_user_and_finds_outputs_beside_questions(tmp_path):
    data = load_lamp(_lamp_files(tmp_path, "LaMP_4", LAMP4_QUESTIONS, LAMP4_GOLDS))
    assert data.task == "LaMP_4"
    assert [u.user_id for u in data.users] == ["1", "2"]
    first = data.users[0]
    assert [h.id for h in first.history] == ["p1", "p2", "p3"]
    assert first.history[0] == HistoryItem(time="2020-01-01", id="p1", fields={"text": "sun today", "title": "Sunny"})
    assert first.queries == (
        Query("110", LAMP4_QUESTIONS[0]["input"], "Rainy"), Query("111", LAMP4_QUESTIONS[1]["input"], "Foggy"),
    )


def test_lamp_without_user_id_makes_one_user_per_question(tmp_path):
    questions = [{k: v for k, v in q.items() if k != "user_id"} for q in LAMP4_QUESTIONS]
    data = load_lamp(_lamp_files(tmp_path, "LaMP_4", questions, LAMP4_GOLDS))
    assert [u.user_id for u in data.users] == ["110", "111", "120"]
    assert [len(u.queries) for u in data.users] == [1, 1, 1]
    assert [h.id for h in data.users[1].history] == ["p2", "p3"]


def test_lamp7_items_get_text_and_explicit_outputs_and_task(tmp_path):
    questions = [{"id": "7", "input": "Paraphrase the following tweet without any explanation before or after it: hi",
                  "profile": [{"id": "t1", "date": "2021", "text": "good morning all"}]}]
    qpath = _write_json(tmp_path / "q.json", questions)
    opath = _write_json(tmp_path / "golds.json", {"task": "LaMP-7", "golds": [{"id": "7", "output": "hello"}]})
    data = load_lamp(qpath, outputs=opath)
    assert data.task == "LaMP_7"
    assert data.users[0].history[0] == HistoryItem(text="good morning all", time="2021", id="t1",
                                                   fields={"text": "good morning all"})
    with pytest.raises(DataError, match=r"q\.json \[0\]: missing field 'profile\[0\]\.title'"):
        load_lamp(qpath, outputs=opath, task="LaMP_6")


def test_lamp_missing_outputs_names_both_paths_and_option(tmp_path):
    qpath = _write_json(tmp_path / "dev_questions.json", LAMP4_QUESTIONS)
    with pytest.raises(DataError) as err:
        load_lamp(qpath)
    message = str(err.value)
    assert str(qpath) in message and str(tmp_path / "dev_outputs.json") in message and "--outputs" in message
    with pytest.raises(DataError, match=r"LaMP outputs file .*other\.json does not exist .*--outputs"):
        load_lamp(qpath, outputs=tmp_path / "other.json")


def test_lamp_missing_gold_names_the_question(tmp_path):
    qpath = _lamp_files(tmp_path, "LaMP_4", LAMP4_QUESTIONS, LAMP4_GOLDS[:2])
    with pytest.raises(DataError, match=r"dev_questions\.json \[2\]: question id '120' has no gold output"):
        load_lamp(qpath)


def test_lamp_bad_profile_field_names_file_index_and_field(tmp_path):
    questions = [{"id": "1", "input": "x", "profile": [{"id": "a", "title": "T", "abstract": "A"}]},
                 {"id": "2", "input": "y", "profile": [{"id": "b", "title": "T", "abstract": ["A"]}]}]
    qpath = _lamp_files(tmp_path, "LaMP_5", questions, [{"id": "1", "output": "o"}, {"id": "2", "output": "p"}])
    with pytest.raises(DataError) as err:
        load_lamp(qpath)
    message = str(err.value)
    assert "dev_questions.json [1]" in message
    assert "field 'profile[0].abstract' is list ['A'], expected a string (LaMP_5 items need title, abstract)" in message


def test_lamp2_with_news_items_suggests_lamp2n(tmp_path):
    questions = [{"id": "1", "input": "x", "profile": [{"id": "a", "title": "T", "text": "B", "category": "sports"}]}]
    qpath = _lamp_files(tmp_path, "LaMP_2", questions, [{"id": "1", "output": "sports"}])
    with pytest.raises(DataError, match=r"pass task 'LaMP_2N'"):
        load_lamp(qpath)
    data = load_lamp(qpath, task="LaMP_2N")
    assert data.task == "LaMP_2N"
    assert dict(data.users[0].history[0].fields) == {"title": "T", "text": "B", "category": "sports"}


def test_lamp_unknown_task_and_invalid_json(tmp_path):
    qpath = _lamp_files(tmp_path, "LaMP_9", LAMP4_QUESTIONS, LAMP4_GOLDS)
    with pytest.raises(DataError, match=r"task 'LaMP_9' is not a LaMP task; use one of LaMP_1, LaMP_2"):
        load_lamp(qpath)
    qpath.write_text('[{"id": "1",\n "input": }]')
    with pytest.raises(DataError, match=r"dev_questions\.json: invalid JSON at line 2 column 11"):
        load_lamp(qpath, task="LaMP_4")


# ---------------------------------------------------------------- MedicalDialogue


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ('"Doctor: How long has it hurt?"', "How long has it hurt?"),
        ('Patient: "About two weeks."', "About two weeks."),
        ("  patient:   It started Monday.  ", "It started Monday."),
        ("Assistant: \u201cTake rest.\u201d", "Take rest."),
        ('He said "no" twice', 'He said "no" twice'),
    ],
)
def test_clean_utterance(raw, clean):
    assert clean_utterance(raw) == clean


def _dialogue(n_turns: int, tag: str) -> list:
    return [{str(k): {"Assistant": f'"Doctor: {tag} question {k}"', "User": f"Patient: {tag} answer {k}"}}
            for k in range(n_turns)]


def test_meddialogue_history_is_early_turns_and_queries_later_ones(tmp_path):
    path = _write_json(tmp_path / "dialogues.json", [_dialogue(6, "a"), _dialogue(2, "b")])
    data = load_meddialogue(path)
    assert data.task == "meddialogue"
    first, second = data.users
    assert first.user_id == "dialogue-0"
    assert first.history == tuple(
        HistoryItem(input=f"a question {k}", output=f"a answer {k}", time=k, id=f"dialogue-0-turn-{k}")
        for k in range(3)
    )
    assert first.queries == tuple(Query(f"dialogue-0-turn-{k}", f"a question {k}", f"a answer {k}") for k in (3, 4, 5))
    assert len(second.history) == 1 and second.queries == (Query("dialogue-1-turn-1", "b question 1", "b answer 1"),)


def test_meddialogue_malformed_turns_are_located(tmp_path):
    bad = _dialogue(3, "a")
    bad[2] = {"2": {"Assistant": "Doctor: hi"}}
    path = _write_json(tmp_path / "d.json", [_dialogue(2, "x"), bad])
    with pytest.raises(DataError, match=r"d\.json dialogue \[1\]: missing field 'turn\[2\]\.2\.User'"):
        load_meddialogue(path)
    bad[2] = {"2": {"Assistant": "a", "User": "b"}, "3": {"Assistant": "c", "User": "d"}}
    _write_json(path, [bad])
    with pytest.raises(DataError, match=r"dialogue \[0\]: turn\[2\] has 2 keys"):
        load_meddialogue(path)


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_detects_each_format(tmp_path):
    jsonl = _write_lines(tmp_path / "u.jsonl", [USER_A])
    lamp = _lamp_files(tmp_path, "LaMP_4", LAMP4_QUESTIONS, LAMP4_GOLDS)
    med = _write_json(tmp_path / "med.json", [_dialogue(4, "a")])
    jsonl_as_json = _write_lines(tmp_path / "users.json", [USER_A, USER_B])
    assert detect_format(jsonl)[0] == "jsonl" and detect_format(jsonl_as_json)[0] == "jsonl"
    assert load_dataset(str(jsonl)).task == "generic"
    assert [u.user_id for u in load_dataset(str(jsonl_as_json)).users] == ["a", "b"]
    assert load_dataset(str(lamp)).task == "LaMP_4"
    assert load_dataset(str(med)).task == "meddialogue"
    assert load_dataset(str(med), format="meddialogue").users[0].user_id == "dialogue-0"
    assert len(load_dataset("demo", demo_users=16).users) == 16


def test_load_dataset_rejects_unknown_and_misapplied_options(tmp_path):
    jsonl = _write_lines(tmp_path / "u.jsonl", [USER_A])
    with pytest.raises(DataError, match=r"data format 'csv' is unknown; use one of jsonl, lamp, meddialogue"):
        load_dataset(str(jsonl), format="csv")
    assert KNOWN_FORMATS == ("jsonl", "lamp", "meddialogue")
    with pytest.raises(DataError, match=r"outputs and task apply to LaMP only"):
        load_dataset(str(jsonl), outputs="x.json")
    odd = _write_json(tmp_path / "odd.json", {"hello": 1})
    with pytest.raises(DataError, match=r"odd\.json: cannot detect its format .* pass format as one of jsonl"):
        load_dataset(str(odd))
    with pytest.raises(DataError, match=r"missing\.json does not exist"):
        load_dataset(str(tmp_path / "missing.json"))
