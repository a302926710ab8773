"""MedicalDialogue as released with MaLP (``dialogues2_cleaned.json``, ``dialogues_3_cleaned.json``).

The file is a JSON list of dialogues; a dialogue is a list of turns, each a single-key dict
``{"<k>": {"Assistant": str, "User": str}}`` in which the doctor (Assistant) speaks and the
patient (User) replies. Utterances are normalised by stripping surrounding whitespace, literal
surrounding quotes and role prefixes (``Doctor:``, ``Patient:``, ``Assistant:``, ``User:``,
case-insensitive), repeatedly, so ``'"Doctor: Hello"'`` and ``'Doctor: "Hello"'`` both become
``Hello``. Turns are taken in list order.

Each dialogue is one user, ``user_id = "dialogue-<index>"``; the patient is the person we
personalize to, so the model learns to answer as the patient. With ``T`` turns, the first
``h = max(1, T // 2)`` turns are the history and the remaining turns are the queries (the
released dialogues have 6 turns: 3 history items, 3 queries):

- history item ``k``: ``input`` = the doctor's utterance, ``output`` = the patient's reply,
  ``time`` = ``k``, ``id`` = ``"dialogue-<i>-turn-<k>"``. Pairs only: the patient's utterance
  is already the pair's output, and separate text items would count it twice in training and
  retrieval;
- query ``t``: ``input`` = the doctor's utterance of turn ``t`` alone, ``output`` = the
  patient's reply, ``id`` = ``"dialogue-<i>-turn-<t>"``. The earlier query turns are not put
  into the input: queries are split into validation and test at random, and the patient's
  earlier replies are other queries' references, so including them would leak test references
  into validation inputs. Earlier history turns reach the model through retrieval and
  fine-tuning, which is what is being measured.

A dialogue with a single turn has history but no query (the splitter skips it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runners.data.jsonl import STR, expect_kind, expect_object, get_field, read_json
from runners.data.types import Dataset, HistoryItem, Query, User
from runners.errors import DataError

_PREFIX = re.compile(r"^(?:doctor|patient|assistant|user)\s*:\s*", re.IGNORECASE)
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u2018", "\u2019"))


def clean_utterance(text: str) -> str:
    """Strip whitespace, literal surrounding quotes and role prefixes, until none is left.

    Args:
        text: A raw utterance, e.g. ``'"Doctor: How long has it hurt?"'``.

    Returns:
        The bare utterance, e.g. ``'How long has it hurt?'``.
    """
    while True:
        before = text
        text = _PREFIX.sub("", text.strip())
        for left, right in _QUOTES:
            if len(text) >= 2 and text.startswith(left) and text.endswith(right):
                text = text[1:-1].strip()
        if text == before:
            return text


def _turn(raw: Any, place: str, name: str) -> tuple[str, str]:
    turn = expect_object(raw, place, name, 'a single-key object {"<k>": {"Assistant": str, "User": str}}')
    if len(turn) != 1:
        raise DataError(
            f"{place}: {name} has {len(turn)} keys {sorted(turn)[:4]}, expected one turn key like "
            f'{{"0": {{"Assistant": ..., "User": ...}}}}; fix the turn'
        )
    (key, body), = turn.items()
    body = expect_object(body, place, f"{name}.{key}", '{"Assistant": str, "User": str}')
    doctor = get_field(body, "Assistant", STR, place, "a string", name=f"{name}.{key}.Assistant")
    patient = get_field(body, "User", STR, place, "a string", name=f"{name}.{key}.User")
    return clean_utterance(doctor), clean_utterance(patient)


def _user(raw: Any, index: int, path: Path) -> User:
    place = f"MedicalDialogue file {path} dialogue [{index}]"
    turns = expect_kind(raw, (list,), place, "<dialogue>", "a list of turns")
    if not turns:
        raise DataError(f"{place}: the dialogue has no turn; remove it or add turns")
    pairs = [_turn(t, place, f"turn[{k}]") for k, t in enumerate(turns)]
    user_id = f"dialogue-{index}"
    split = max(1, len(pairs) // 2)
    history = tuple(
        HistoryItem(input=d, output=p, time=k, id=f"{user_id}-turn-{k}")
        for k, (d, p) in enumerate(pairs[:split])
    )
    queries = tuple(
        Query(id=f"{user_id}-turn-{k}", input=d, output=p)
        for k, (d, p) in enumerate(pairs) if k >= split
    )
    return User(user_id=user_id, history=history, queries=queries)


def meddialogue_dataset(data: Any, path: str | Path) -> Dataset:
    """Build a MedicalDialogue :class:`Dataset` from an already-parsed file.

    Args:
        data: The decoded JSON (a list of dialogues).
        path: The file, for messages and ``Dataset.source``.

    Returns:
        A dataset with ``task="meddialogue"``, one user per dialogue.

    Raises:
        DataError: If the top level is not a non-empty list, or a dialogue, turn or utterance is
            malformed (naming the dialogue index, the turn and the field).
    """
    path = Path(path)
    if not isinstance(data, list) or not data:
        raise DataError(
            f"MedicalDialogue file {path}: expected a non-empty JSON list of dialogues, got "
            f"{type(data).__name__}; check the file"
        )
    return Dataset(task="meddialogue", users=tuple(_user(d, i, path) for i, d in enumerate(data)),
                   source=str(path))


def load_meddialogue(path: str | Path) -> Dataset:
    """Load a MaLP MedicalDialogue JSON file.

    Args:
        path: The file, e.g. ``dialogues2_cleaned.json``.

    Returns:
        The dataset (see the module docstring for the history/query layout).

    Raises:
        DataError: If the file is missing, not valid JSON, or malformed.
    """
    return meddialogue_dataset(read_json(path, "MedicalDialogue file"), path)
