"""The LaMP benchmark's questions and outputs files.

Questions: a JSON list of ``{"id", "input", "profile": [items], "user_id"?}``; outputs:
``{"task": "LaMP_k", "golds": [{"id", "output"}]}``. Each profile item becomes a
:class:`HistoryItem` that keeps the task's raw fields (:data:`LAMP_FIELDS`, in that order) in
``fields``, ``time`` from ``"date"`` and ``id`` from ``"id"``; LaMP_7 items also get ``text``.
Turning items into training pairs is :mod:`runners.data.pairs`' job, not the loader's.

Users: questions are grouped by ``"user_id"`` when present (ids are compared as strings; the
first question's profile is the history, and items of later questions whose id is new are
appended), otherwise each question is its own user with ``user_id`` = the question id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from runners.data.jsonl import (
    ID,
    SCALAR,
    STR,
    expect_object,
    get_field,
    is_kind,
    read_json,
)
from runners.data.types import Dataset, HistoryItem, Query, User
from runners.errors import DataError

LAMP_FIELDS: dict[str, tuple[str, ...]] = {
    "LaMP_1": ("title", "abstract"),
    "LaMP_2": ("description", "tag"),
    "LaMP_2N": ("title", "text", "category"),
    "LaMP_3": ("text", "score"),
    "LaMP_4": ("text", "title"),
    "LaMP_5": ("title", "abstract"),
    "LaMP_6": ("text", "title"),
    "LaMP_7": ("text",),
}
"""The profile item fields each LaMP task needs (REFERENCE_ALGORITHMS.md section 3.1)."""

LAMP_TASKS: tuple[str, ...] = tuple(LAMP_FIELDS)
_ALIASES = {"LaMP_2M": "LaMP_2"}


def normalize_task(task: str, place: str) -> str:
    """Map a LaMP task name to its canonical id (``"LaMP-4"`` and ``"lamp_4"`` become ``"LaMP_4"``).

    Args:
        task: The task name as written.
        place: Where it was read, for messages.

    Raises:
        DataError: If the task is not a LaMP task.
    """
    canonical = {t.lower(): t for t in (*LAMP_TASKS, *_ALIASES)}
    key = str(task).strip().replace("-", "_").lower()
    if key not in canonical:
        raise DataError(
            f"{place}: task {task!r} is not a LaMP task; use one of {', '.join(LAMP_TASKS)} "
            f"(LaMP_2 is movie tagging, LaMP_2N the old news categories)"
        )
    name = canonical[key]
    return _ALIASES.get(name, name)


def outputs_path(questions: Path, outputs: str | Path | None) -> Path:
    """Find the outputs file for a questions file.

    Args:
        questions: The questions file.
        outputs: The outputs file if given explicitly.

    Returns:
        ``outputs``, or the questions file's sibling with ``questions`` replaced by ``outputs``
        in its name.

    Raises:
        DataError: If the file given or guessed does not exist.
    """
    if outputs is not None:
        path = Path(outputs)
        if not path.is_file():
            raise DataError(
                f"LaMP outputs file {path} does not exist (questions file {questions}); "
                f"check the --outputs path"
            )
        return path
    guess = questions.with_name(questions.name.replace("questions", "outputs"))
    if guess != questions and guess.is_file():
        return guess
    looked = f"looked for {guess}" if guess != questions else "its name has no 'questions' to replace"
    raise DataError(
        f"LaMP questions file {questions}: no outputs file found ({looked}); "
        f"pass the gold outputs file with --outputs"
    )


def _read_golds(path: Path, task: str | None) -> tuple[str, dict[str, str]]:
    data = expect_object(read_json(path, "LaMP outputs file"), f"LaMP outputs file {path}", "<top level>",
                         '{"task": "LaMP_k", "golds": [...]}')
    place = f"LaMP outputs file {path}"
    if task is None:
        task = get_field(data, "task", STR, place, "a LaMP task id such as 'LaMP_4'")
    task = normalize_task(task, place)
    golds = get_field(data, "golds", (list,), place, 'a list of {"id", "output"} objects')
    by_id: dict[str, str] = {}
    for i, raw in enumerate(golds):
        gold = expect_object(raw, place, f"golds[{i}]")
        gold_id = get_field(gold, "id", ID, place, "a string", name=f"golds[{i}].id")
        by_id[str(gold_id)] = str(get_field(gold, "output", SCALAR, place, "a string", name=f"golds[{i}].output"))
    return task, by_id


def _profile_item(raw: Any, task: str, place: str, name: str) -> HistoryItem:
    item = expect_object(raw, place, name)
    fields: dict[str, str] = {}
    for key in LAMP_FIELDS[task]:
        if item.get(key) is None and task == "LaMP_2" and "category" in item:
            raise DataError(
                f"{place}: missing field '{name}.{key}'; this looks like the old LaMP_2 news "
                f"categorisation, pass task 'LaMP_2N' (--task LaMP_2N)"
            )
        value = get_field(item, key, SCALAR, place, f"a string ({task} items need {', '.join(LAMP_FIELDS[task])})",
                          name=f"{name}.{key}")
        fields[key] = str(value)
    time = get_field(item, "date", SCALAR, place, "a date string or number", name=f"{name}.date", required=False)
    item_id = get_field(item, "id", ID, place, "a string", name=f"{name}.id", required=False)
    return HistoryItem(
        text=fields["text"] if task == "LaMP_7" else None,
        time=time,
        id=None if item_id is None else str(item_id),
        fields=fields,
    )


def _merge(history: list[HistoryItem], seen: set, items: list[HistoryItem]) -> None:
    for item in items:
        key = item.id if item.id is not None else tuple(item.fields.items())
        if key not in seen:
            seen.add(key)
            history.append(item)


def _question(
    raw: Any, index: int, task: str, golds: Mapping[str, str], path: Path, outputs: Path
) -> tuple[str, Query, list[HistoryItem]]:
    place = f"LaMP questions file {path} [{index}]"
    question = expect_object(raw, place, "<question>", '{"id", "input", "profile"}')
    qid = str(get_field(question, "id", ID, place, "a string"))
    text = get_field(question, "input", STR, place, "a string")
    profile = get_field(question, "profile", (list,), place, "a list of profile items")
    user_id = get_field(question, "user_id", ID, place, "a string or integer", required=False)
    if qid not in golds:
        raise DataError(
            f"{place}: question id {qid!r} has no gold output in {outputs}; "
            f"pass the outputs file of the same split"
        )
    items = [_profile_item(p, task, place, f"profile[{i}]") for i, p in enumerate(profile)]
    return (qid if user_id is None else str(user_id)), Query(id=qid, input=text, output=golds[qid]), items


def lamp_dataset(
    questions_data: Any, path: str | Path, outputs: str | Path | None = None, task: str | None = None
) -> Dataset:
    """Build a LaMP :class:`Dataset` from an already-parsed questions file.

    Args:
        questions_data: The decoded questions JSON (a list of questions).
        path: The questions file, for messages and outputs discovery.
        outputs: The outputs (golds) file; found beside ``path`` when ``None``.
        task: The LaMP task; read from the outputs file's ``"task"`` when ``None``.

    Returns:
        A dataset whose ``task`` is the canonical LaMP id.

    Raises:
        DataError: If the outputs file is missing, a field is missing or mistyped, a question has
            no gold, the task is unknown, or there is no question.
    """
    path = Path(path)
    out_path = outputs_path(path, outputs)
    task = None if task is None else normalize_task(task, "task argument")
    task, golds = _read_golds(out_path, task)
    if not is_kind(questions_data, (list,)) or not questions_data:
        raise DataError(f"LaMP questions file {path}: expected a non-empty JSON list of questions; check the file")
    order: list[str] = []
    users: dict[str, tuple[list[HistoryItem], set, list[Query]]] = {}
    for index, raw in enumerate(questions_data):
        user_id, query, items = _question(raw, index, task, golds, path, out_path)
        if user_id not in users:
            order.append(user_id)
            users[user_id] = ([], set(), [])
        history, seen, queries = users[user_id]
        _merge(history, seen, items)
        queries.append(query)
    built = tuple(User(user_id=u, history=tuple(users[u][0]), queries=tuple(users[u][2])) for u in order)
    return Dataset(task=task, users=built, source=str(path))


def load_lamp(questions: str | Path, outputs: str | Path | None = None, task: str | None = None) -> Dataset:
    """Load a LaMP questions file with its gold outputs.

    Args:
        questions: The questions JSON file (e.g. ``dev_questions.json``).
        outputs: The outputs JSON file; ``None`` looks for the questions file's name with
            ``questions`` replaced by ``outputs`` (e.g. ``dev_outputs.json``).
        task: Overrides the outputs file's ``"task"`` (``"LaMP_1"`` .. ``"LaMP_7"``, ``"LaMP_2N"``).

    Returns:
        The dataset.

    Raises:
        DataError: See :func:`lamp_dataset`; also if a file is missing or not valid JSON.
    """
    return lamp_dataset(read_json(questions, "LaMP questions file"), questions, outputs, task)
