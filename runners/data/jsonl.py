"""The generic per-user JSON Lines format, and the located JSON reading the other loaders share.

One user per line::

    {"user_id": "u1", "profile": "optional text",
     "history": [{"text": "..."} | {"input": "...", "output": "..."}, ...],
     "queries": [{"input": "...", "output": "...", "id": "optional"}, ...]}

History items may carry ``"time"`` (a string or a number) and ``"id"``; any other scalar keys
of an item are kept in :attr:`HistoryItem.fields`. A query's id is its ``"id"`` when given, else
``"{user_id}-{i}"``. ``queries`` may be absent (a user who only has history, such as a Per-Pcs
sharer); ``history`` must be present. Blank lines are skipped.

Every error names the file, the line (JSONL) or the index path (JSON), the field, and what was
expected, so that a malformed file never surfaces as a bare ``KeyError`` or ``TypeError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping

from runners.data.types import Dataset, HistoryItem, Query, User
from runners.errors import DataError

STR = (str,)
ID = (str, int)
SCALAR = (str, int, float)
_ITEM_KEYS = ("text", "input", "output", "time", "id")
_SHOWN_CHARS = 40  # the longest value an error message echoes in full


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def is_kind(value: Any, kinds: tuple[type, ...]) -> bool:
    """Whether ``value`` is one of ``kinds``; booleans never count as numbers."""
    return isinstance(value, kinds) and not isinstance(value, bool)


def check_file(path: str | Path, what: str, fix: str) -> Path:
    """Return ``path`` as a :class:`Path` after checking that it is an existing file.

    Args:
        path: The file to check.
        what: What the file is, for the message (e.g. ``"LaMP questions file"``).
        fix: What to do when it is missing.

    Raises:
        DataError: If the path does not exist or is not a file.
    """
    path = Path(path)
    if not path.is_file():
        state = "is a directory" if path.is_dir() else "does not exist"
        raise DataError(f"{what} {path} {state}; {fix}")
    return path


def read_json(path: str | Path, what: str = "data file") -> Any:
    """Parse a whole JSON file.

    Args:
        path: The file.
        what: What the file is, for messages.

    Returns:
        The decoded JSON value.

    Raises:
        DataError: If the file is missing, unreadable, not UTF-8 or not valid JSON (the message
            gives the decoder's line and column).
    """
    path = check_file(path, what, "check the path")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{what} {path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}; "
            f"fix the file (JSON Lines files need the .jsonl suffix or format='jsonl')"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path}: cannot be read as UTF-8 text ({err}); check the file") from err


def _json_problem(err: json.JSONDecodeError, line: str) -> str:
    """Where and what, in the line's own columns; a line that stops early is called truncated."""
    if err.msg.startswith("Unterminated string"):
        return f"invalid JSON: the string that starts at column {err.pos + 1} is never closed (truncated line?)"
    cut = " (the line ends early: truncated?)" if err.pos >= len(line.rstrip()) else ""
    return f"invalid JSON at column {err.pos + 1}: {err.msg}{cut}"


def iter_jsonl(path: str | Path, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for each non-blank line of a JSON Lines file.

    Args:
        path: The file.
        what: What the file is, for messages.

    Raises:
        DataError: If the file is missing or a line is not valid JSON (naming the line).
    """
    path = check_file(path, what, "check the path")
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                text = line.rstrip("\r\n")  # columns count within the line, not past its newline
                try:
                    yield number, json.loads(text)
                except json.JSONDecodeError as err:
                    raise DataError(f"{what} {path} line {number}: {_json_problem(err, text)}; "
                                    "each line must hold one complete JSON object") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path}: cannot be read as UTF-8 text ({err}); check the file") from err


def expect_kind(value: Any, kinds: tuple[type, ...], place: str, name: str, expected: str) -> Any:
    """Return ``value`` if it is one of ``kinds``, else raise a located :class:`DataError`.

    Args:
        value: The value read.
        kinds: Accepted Python types (booleans never count as numbers).
        place: The file and line or index, e.g. ``"users.jsonl line 3"``.
        name: The field path, e.g. ``"history[2].text"``.
        expected: What the field must be, in words.

    Raises:
        DataError: If the value has the wrong type.
    """
    if not is_kind(value, kinds):
        raise DataError(
            f"{place}: field {name!r} is {_kind(value)} {_short(value)}, expected {expected}; fix the value"
        )
    return value


def get_field(
    record: Mapping[str, Any],
    key: str,
    kinds: tuple[type, ...],
    place: str,
    expected: str,
    *,
    name: str | None = None,
    required: bool = True,
    default: Any = None,
) -> Any:
    """Read ``record[key]`` and check its type.

    Args:
        record: A decoded JSON object.
        key: The key to read.
        kinds: Accepted Python types.
        place: The file and line or index, for messages.
        expected: What the field must be, in words.
        name: The field path to show (defaults to ``key``).
        required: Whether a missing key (or ``null``) is an error.
        default: The value returned for a missing optional key.

    Returns:
        The value, or ``default``.

    Raises:
        DataError: If the key is required and missing, or the value has the wrong type.
    """
    name = key if name is None else name
    value = record.get(key)
    if value is None:
        if required:
            raise DataError(f"{place}: missing field {name!r}; add it ({expected})")
        return default
    return expect_kind(value, kinds, place, name, expected)


def expect_object(value: Any, place: str, name: str, expected: str = "a JSON object") -> Mapping[str, Any]:
    """Check that ``value`` is a JSON object (dict) and return it.

    Raises:
        DataError: If it is not a dict.
    """
    return expect_kind(value, (dict,), place, name, expected)


def _history_item(raw: Any, place: str, name: str) -> HistoryItem:
    item = expect_object(raw, place, name, '{"text": str} or {"input": str, "output": str}')
    text = get_field(item, "text", STR, place, "a string", name=f"{name}.text", required=False)
    inp = get_field(item, "input", STR, place, "a string", name=f"{name}.input", required=False)
    out = get_field(item, "output", STR, place, "a string", name=f"{name}.output", required=False)
    if (inp is None) != (out is None):
        missing = "output" if out is None else "input"
        raise DataError(f"{place}: missing field '{name}.{missing}'; a pair item needs both input and output")
    if text is None and inp is None:
        raise DataError(f"{place}: {name} has neither 'text' nor 'input'/'output'; add one of them")
    time = get_field(item, "time", SCALAR, place, "a string or number", name=f"{name}.time", required=False)
    item_id = get_field(item, "id", ID, place, "a string or integer", name=f"{name}.id", required=False)
    extra = {k: str(v) for k, v in item.items() if k not in _ITEM_KEYS and is_kind(v, SCALAR)}
    return HistoryItem(
        text=text, input=inp, output=out, time=time,
        id=None if item_id is None else str(item_id), fields=extra,
    )


def _query(raw: Any, place: str, name: str, user_id: str, index: int) -> Query:
    query = expect_object(raw, place, name, '{"input": str, "output": str}')
    inp = get_field(query, "input", STR, place, "a string", name=f"{name}.input")
    out = get_field(query, "output", STR, place, "a string", name=f"{name}.output")
    query_id = get_field(query, "id", ID, place, "a string or integer", name=f"{name}.id", required=False)
    return Query(id=f"{user_id}-{index}" if query_id is None else str(query_id), input=inp, output=out)


def parse_user(record: Any, place: str) -> User:
    """Build a :class:`User` from one decoded JSONL record.

    Args:
        record: The decoded line.
        place: The file and line, for messages.

    Raises:
        DataError: If a field is missing or has the wrong type.
    """
    record = expect_object(record, place, "<line>", "a JSON object with user_id, history, queries")
    user_id = str(get_field(record, "user_id", ID, place, "a string"))
    profile = get_field(record, "profile", STR, place, "a string", required=False, default="")
    history = get_field(record, "history", (list,), place, "a list of history items")
    queries = get_field(record, "queries", (list,), place, "a list of queries", required=False, default=[])
    return User(
        user_id=user_id,
        profile=profile,
        history=tuple(_history_item(raw, place, f"history[{i}]") for i, raw in enumerate(history)),
        queries=tuple(_query(raw, place, f"queries[{i}]", user_id, i) for i, raw in enumerate(queries)),
    )


def _check_unique(users: list[User], lines: list[int], path: Path) -> None:
    seen_users: dict[str, int] = {}
    seen_queries: dict[str, int] = {}
    for user, line in zip(users, lines):
        if user.user_id in seen_users:
            raise DataError(
                f"JSONL file {path} line {line}: user_id {user.user_id!r} already used on line "
                f"{seen_users[user.user_id]}; give each user one line with a unique user_id"
            )
        seen_users[user.user_id] = line
        for query in user.queries:
            if query.id in seen_queries:
                raise DataError(
                    f"JSONL file {path} line {line}: query id {query.id!r} already used on line "
                    f"{seen_queries[query.id]}; query ids must be unique across the file"
                )
            seen_queries[query.id] = line


def load_jsonl(path: str | Path) -> Dataset:
    """Load a generic per-user JSON Lines file.

    Args:
        path: The ``.jsonl`` file, one user per line.

    Returns:
        A :class:`Dataset` with ``task="generic"`` and ``source`` set to the path.

    Raises:
        DataError: If the file is missing, a line is not valid JSON, a field is missing or has the
            wrong type, a user id or query id repeats, or the file holds no user.
    """
    path = Path(path)
    users: list[User] = []
    lines: list[int] = []
    for number, record in iter_jsonl(path, "JSONL file"):
        users.append(parse_user(record, f"JSONL file {path} line {number}"))
        lines.append(number)
    if not users:
        raise DataError(f"JSONL file {path} holds no user; write one JSON object per line")
    _check_unique(users, lines, path)
    return Dataset(task="generic", users=tuple(users), source=str(path))
