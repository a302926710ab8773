"""One entry point for every data source: :func:`load_dataset`.

The format is given (``"jsonl"``, ``"lamp"``, ``"meddialogue"``) or detected from the file:
a ``.jsonl`` suffix is JSON Lines; otherwise the file is parsed once as JSON and a list whose
first element is an object with ``"input"`` and ``"profile"`` is LaMP, a list of lists of
single-key objects is MedicalDialogue, and a single object with ``"user_id"`` (or a file of
several such lines) is JSON Lines. ``"demo"`` is the builtin demo dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

from runners.data.demo import demo_dataset
from runners.data.jsonl import check_file, load_jsonl, read_json
from runners.data.lamp import lamp_dataset
from runners.data.meddialogue import meddialogue_dataset
from runners.data.types import Dataset
from runners.errors import DataError
from runners.spec import DataFormat

KNOWN_FORMATS: tuple[str, ...] = get_args(DataFormat)
DEMO_SOURCE = "demo"
DEFAULT_DEMO_USERS = 24


def _is_lamp(data: Any) -> bool:
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and {"input", "profile"} <= set(data[0])


def _is_meddialogue(data: Any) -> bool:
    if not (isinstance(data, list) and data and isinstance(data[0], list) and data[0]):
        return False
    return all(isinstance(turn, dict) and len(turn) == 1 for turn in data[0])


def _first_line_is_user(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            line = next((line for line in handle if line.strip()), "")
        record = json.loads(line)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and "user_id" in record


def detect_format(path: str | Path) -> tuple[str, Any]:
    """Detect a data file's format.

    Args:
        path: The file.

    Returns:
        ``(format, parsed)``: the format name and, for JSON formats, the parsed content (so that
        the file is parsed once), else ``None``.

    Raises:
        DataError: If the file is missing, not valid JSON, or of no known format.
    """
    path = check_file(path, "data file", "check the path, or pass 'demo' for the builtin demo dataset")
    if path.suffix == ".jsonl":
        return "jsonl", None
    try:
        data = read_json(path)
    except DataError:
        if _first_line_is_user(path):
            return "jsonl", None
        raise
    if _is_lamp(data):
        return "lamp", data
    if _is_meddialogue(data):
        return "meddialogue", data
    if isinstance(data, dict) and "user_id" in data:
        return "jsonl", None
    raise DataError(
        f"data file {path}: cannot detect its format (a {type(data).__name__} that is neither LaMP "
        f"questions nor MedicalDialogue); pass format as one of {', '.join(KNOWN_FORMATS)} (--data-format, or data.format in the space)"
    )


def _check_options(fmt: str, source: str, outputs: str | None, task: str | None, demo_users: int | None) -> None:
    if fmt not in KNOWN_FORMATS:
        raise DataError(f"data format {fmt!r} is unknown; use one of {', '.join(KNOWN_FORMATS)} (--data-format, or data.format in the space)")
    if fmt != "lamp" and (outputs is not None or task is not None):
        raise DataError(
            f"data {source}: outputs and task apply to LaMP only, but the format is {fmt!r}; "
            f"drop --outputs/--task or pass format 'lamp'"
        )
    if demo_users is not None:
        raise DataError(f"data {source}: demo_users={demo_users} applies to the demo dataset only; drop it")


def load_dataset(
    source: str,
    format: str | None = None,
    outputs: str | None = None,
    task: str | None = None,
    demo_users: int | None = None,
) -> Dataset:
    """Load a dataset from a file or the builtin demo.

    Args:
        source: A file path, or ``"demo"`` for the builtin demo dataset.
        format: ``"jsonl"``, ``"lamp"`` or ``"meddialogue"``; detected from the file when ``None``.
        outputs: LaMP only: the gold outputs file (found beside the questions file when ``None``).
        task: LaMP only: overrides the outputs file's task.
        demo_users: Demo only: the number of users (default 24).

    Returns:
        The dataset.

    Raises:
        DataError: If the format is unknown or undetectable, an option does not apply to the
            format, or the file is missing or malformed.
    """
    if source == DEMO_SOURCE:
        if format is not None or outputs is not None or task is not None:
            raise DataError("data 'demo' is the builtin dataset; drop --format, --outputs and --task")
        return demo_dataset(DEFAULT_DEMO_USERS if demo_users is None else demo_users)
    parsed = None
    if format is None:
        format, parsed = detect_format(source)
    _check_options(format, source, outputs, task, demo_users)
    if format == "jsonl":
        return load_jsonl(source)
    if parsed is None:
        parsed = read_json(source, "LaMP questions file" if format == "lamp" else "MedicalDialogue file")
    if format == "lamp":
        return lamp_dataset(parsed, source, outputs, task)
    return meddialogue_dataset(parsed, source)
