"""Plain, frozen records for per-user personalization data.

Every loader (generic JSONL, LaMP, MedicalDialogue, the builtin demo) produces a
:class:`Dataset`; splits and training-pair conversion work on these records only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class HistoryItem:
    """One item of a user's history.

    Either a plain ``text`` or an ``input``/``output`` pair (or both). ``fields`` keeps the raw
    task-specific fields (LaMP profile fields such as ``title``/``abstract``) so that prompts and
    retrieval corpora can be rendered the way the benchmark does. ``time`` orders items for
    recency retrieval; ``None`` means file order.
    """

    text: str | None = None
    input: str | None = None
    output: str | None = None
    time: str | float | None = None
    id: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_pair(self) -> bool:
        return self.input is not None and self.output is not None

    def as_text(self) -> str:
        """The item as one string: the text, or the pair joined, or the fields joined."""
        if self.text is not None:
            return self.text
        if self.is_pair:
            return f"{self.input}\n{self.output}"
        return " ".join(str(v) for v in self.fields.values())


@dataclass(frozen=True)
class Query:
    """A request to the personalized model with its reference output."""

    id: str
    input: str
    output: str


@dataclass(frozen=True)
class User:
    """One user: an optional textual profile, a history and queries."""

    user_id: str
    history: tuple[HistoryItem, ...]
    queries: tuple[Query, ...]
    profile: str = ""


@dataclass(frozen=True)
class Dataset:
    """A set of users of one task.

    ``task`` is ``"generic"``, ``"meddialogue"``, ``"demo"`` or a LaMP id ``"LaMP_1"`` ..
    ``"LaMP_7"`` (``"LaMP_2"`` is movie tagging, ``"LaMP_2N"`` the old news categories).
    ``source`` names the file (or ``"demo"``) for messages.
    """

    task: str
    users: tuple[User, ...]
    source: str = ""


@dataclass(frozen=True)
class UserSplit:
    """One user's data as a trial uses it.

    ``train`` and ``heldout`` partition the history (held-out history gives the validation
    loss); ``val`` and ``test`` partition the queries. The search only ever sees ``val``.
    """

    user: User
    train: tuple[HistoryItem, ...]
    heldout: tuple[HistoryItem, ...]
    val: tuple[Query, ...]
    test: tuple[Query, ...]
