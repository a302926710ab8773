"""Retrieval-augmented prompts: the retrieval query, the corpus document and the prompt text.

The LaMP tasks follow the benchmark's own code (``LaMP/prompts``): the query is the
non-template part of the input, each retrieved profile item is rendered with its per-item
(PPEP) template and the entries are aggregated into the input (AIP). Generic, demo and
dialogue data use a plain list template. Truncation keeps the query intact and drops the
lowest-ranked retrieved items first; a single remaining item that is still too long is cut
by tokens (at word boundaries), as LaMP cuts profile text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from runners.data.types import HistoryItem
from runners.errors import ConfigError, DataError

GENERIC_TASKS = ("generic", "demo", "meddialogue")
LAMP_TASKS = ("LaMP_1", "LaMP_2", "LaMP_2N", "LaMP_3", "LaMP_4", "LaMP_5", "LaMP_6", "LaMP_7")
_ALIASES = {"LaMP_2M": "LaMP_2"}
GENERIC_HEADER = "Here is what this user wrote before:"


class Tokenizer(Protocol):
    """Anything with ``encode(text) -> list`` (a Hugging Face tokenizer, or a test stub)."""

    def encode(self, text: str) -> list: ...


@dataclass(frozen=True)
class PromptResult:
    """A rendered prompt.

    Attributes:
        text: The prompt given to the model.
        n_items: Retrieved items rendered into ``text``.
        n_dropped: Retrieved items left out to respect the token budget.
    """

    text: str
    n_items: int
    n_dropped: int


def canonical_task(task: str) -> str:
    """Return the task id templates are keyed on (``LaMP_2M`` is ``LaMP_2``).

    Args:
        task: A dataset task id.

    Returns:
        The canonical task id.

    Raises:
        ConfigError: If the task is not one this module knows.
    """
    task = _ALIASES.get(task, task)
    if task not in LAMP_TASKS and task not in GENERIC_TASKS:
        known = ", ".join(LAMP_TASKS + GENERIC_TASKS)
        raise ConfigError(f"prompts: unknown task {task!r}; use one of {known} (Dataset.task)")
    return task


# --------------------------------------------------------------------------- retrieval query


def _quoted(text: str) -> list[str]:
    """Strings between double quotes, as LaMP's ``extract_strings_between_quotes``."""
    return re.findall(r'"([^"]*)"', text)


def _after(keyword: str) -> Callable[[str], str | None]:
    def extract(text: str) -> str | None:
        at = text.find(keyword)
        return None if at == -1 else text[at + len(keyword) :].strip()

    return extract


def _lamp1_query(text: str) -> str | None:
    quoted = _quoted(text)
    return f"{quoted[1]} {quoted[2]}" if len(quoted) >= 3 else None


def _lamp5_query(text: str) -> str | None:
    found = _after("paper:")(text)
    return found if found is not None else _after(":")(text)


_QUERY_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "LaMP_1": _lamp1_query,
    "LaMP_2": _after("description:"),
    "LaMP_2N": _after("article:"),
    "LaMP_3": _after("review:"),
    "LaMP_4": _after("article:"),
    "LaMP_5": _lamp5_query,
    "LaMP_6": _after(":"),
    "LaMP_7": _after(":"),
}


def retrieval_query(task: str, input: str) -> str:
    """Return the part of a query input that retrieval searches with.

    LaMP_1 uses the two candidate reference titles (the 2nd and 3rd quoted strings); LaMP_2 the
    text after ``description:``; LaMP_2N and LaMP_4 after ``article:``; LaMP_3 after
    ``review:``; LaMP_5 after ``paper:`` or else the first ``:``; LaMP_6 and LaMP_7 after the
    first ``:``. Generic, demo and dialogue inputs are used whole. When the extracted part is
    missing or empty, the whole input is the query.

    Args:
        task: The dataset task id.
        input: The query's input text.

    Returns:
        The retrieval query.

    Raises:
        ConfigError: If the task is unknown.
    """
    extract = _QUERY_EXTRACTORS.get(canonical_task(task))
    found = extract(input) if extract is not None else None
    return found if found and found.strip() else input


# --------------------------------------------------------------------------- corpus documents

_CORPUS_FIELDS: dict[str, tuple[str, ...]] = {
    "LaMP_1": ("title", "abstract"),
    "LaMP_2": ("description",),
    "LaMP_2N": ("title", "text"),
    "LaMP_3": ("text",),
    "LaMP_4": ("title", "text"),
    "LaMP_5": ("title", "abstract"),
    "LaMP_6": ("text",),
    "LaMP_7": ("text",),
}


def _field(task: str, item: HistoryItem, name: str) -> str:
    try:
        return str(item.fields[name])
    except KeyError as err:
        have = sorted(item.fields)
        raise DataError(
            f"{task}: profile item id={item.id!r} has no field {name!r} (fields: {have}); "
            f"the {task} profile items need it, check the data file"
        ) from err


def corpus_text(task: str, item: HistoryItem) -> str:
    """Return the document a retriever indexes for one history item.

    LaMP_1 and LaMP_5 ``"{title} {abstract}"``; LaMP_2 the description; LaMP_2N and LaMP_4
    ``"{title} {text}"``; LaMP_3, LaMP_6 and LaMP_7 the text; other tasks ``item.as_text()``.

    Args:
        task: The dataset task id.
        item: One history item.

    Returns:
        The document text.

    Raises:
        ConfigError: If the task is unknown.
        DataError: If a LaMP item lacks a field its task needs.
    """
    names = _CORPUS_FIELDS.get(canonical_task(task))
    if names is None:
        return item.as_text()
    return " ".join(_field(task, item, name) for name in names)


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class _Entry:
    """One item ready to render: ``pattern`` with ``{cut}`` replaced by the (cut) ``body``."""

    pattern: str
    body: str

    def render(self, body: str | None = None) -> str:
        return self.pattern.replace("{cut}", self.body if body is None else body)


@dataclass(frozen=True)
class LampTemplate:
    """A LaMP task's per-item template and aggregation.

    Attributes:
        pattern: The per-item (PPEP) template, a ``str.format`` pattern over the item's fields.
        cut_field: The field that is cut by tokens when an item is too long.
        aggregate: Joins the rendered entries (a string) with the input.
    """

    pattern: str
    cut_field: str
    aggregate: Callable[[str, str], str]

    def entry(self, task: str, item: HistoryItem) -> _Entry:
        values = {name: _field(task, item, name) for name in _pattern_fields(self.pattern)}
        values[self.cut_field] = "{cut}"
        return _Entry(self.pattern.format(**values), _field(task, item, self.cut_field))

    def render(self, entries: Sequence[str], input: str) -> str:
        return self.aggregate(", and ".join(entries), input)


def _pattern_fields(pattern: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", pattern)


def _after_title(joined: str, input: str) -> str:
    """LaMP_1's ``add_string_after_title``; inputs without "title" get the entries in front."""
    at = input.find("title")
    if at == -1:
        return f"{joined}. {input}"
    return f"{input[:at + 5]}, and {joined}{input[at + 5:]}"


def _before(joined: str, input: str) -> str:
    return f"{joined}. {input}"


def _patterns(joined: str, input: str) -> str:
    return f"{joined}. Following the given patterns {input}"


def _by_person(joined: str, input: str) -> str:
    return f"{joined} are written by a person. Following the given patterns {input}"


LAMP_TEMPLATES: dict[str, LampTemplate] = {
    "LaMP_1": LampTemplate('"{title}"', "title", _after_title),
    "LaMP_2": LampTemplate('the tag for the movie: "{description}" is "{tag}" ', "description", _before),
    "LaMP_2N": LampTemplate('the category for the article: "{text}" is "{category}" ', "text", _before),
    "LaMP_3": LampTemplate('{score} is the score for "{text}" ', "text", _before),
    "LaMP_4": LampTemplate('"{title}" is the title for "{text}" ', "text", _before),
    "LaMP_5": LampTemplate('"{title}" is a title for "{abstract}" ', "abstract", _patterns),
    "LaMP_6": LampTemplate('"{title}" is the title for "{text}" ', "text", _before),
    "LaMP_7": LampTemplate('"{text}" ', "text", _by_person),
}


class GenericTemplate:
    """The list template of generic, demo and dialogue data.

    The prompt reads ``"Here is what this user wrote before:\\n- item\\n- item\\n\\n{input}"``.
    Text items are listed as they are, input/output pairs as ``"{input} -> {output}"``; line
    breaks inside an item become spaces so that each item is one list line.
    """

    def entry(self, task: str, item: HistoryItem) -> _Entry:
        body = f"{item.input} -> {item.output}" if item.text is None and item.is_pair else item.as_text()
        return _Entry("- {cut}", " ".join(body.split()))

    def render(self, entries: Sequence[str], input: str) -> str:
        return GENERIC_HEADER + "\n" + "\n".join(entries) + "\n\n" + input


def template_for(task: str) -> LampTemplate | GenericTemplate:
    """Return the prompt template of a task.

    Args:
        task: The dataset task id.

    Returns:
        The task's template.

    Raises:
        ConfigError: If the task is unknown.
    """
    task = canonical_task(task)
    return LAMP_TEMPLATES[task] if task in LAMP_TEMPLATES else GenericTemplate()


# --------------------------------------------------------------------------- as text, for serving

_QUERY_TEXT = {
    "LaMP_1": "the 2nd and 3rd double-quoted strings of the query, joined by a space",
    "LaMP_2": "the text after 'description:'",
    "LaMP_2N": "the text after 'article:'",
    "LaMP_3": "the text after 'review:'",
    "LaMP_4": "the text after 'article:'",
    "LaMP_5": "the text after 'paper:', else after the first ':'",
    "LaMP_6": "the text after the first ':'",
    "LaMP_7": "the text after the first ':'",
}
_AGGREGATE_TEXT = {
    _after_title: "{query} with ', and {items}' inserted right after its first 'title' ('{items}. {query}' "
                  "when it has none)",
    _before: "{items}. {query}",
    _patterns: "{items}. Following the given patterns {query}",
    _by_person: "{items} are written by a person. Following the given patterns {query}",
}


def template_text(task: str) -> dict[str, str]:
    """The prompt of a task spelled out, for serving stacks that rebuild prompts without this code.

    Keys: ``prompt`` (with ``{items}`` and ``{query}``), ``item`` (one retrieved item; LaMP
    patterns name the item's fields), ``separator`` (between items), ``without_items`` (no item
    retrieved or kept), ``cut`` (how the budget is met), ``retrieval_query`` and ``document``
    (what retrieval compares).

    Raises:
        ConfigError: If the task is unknown.
    """
    task = canonical_task(task)
    template = template_for(task)
    common = {
        "without_items": "{query}",
        "cut": "while the prompt has more tokens than max_prompt_tokens, the lowest-ranked item is dropped; a "
               "single remaining item that is still too long has its main text cut at a word boundary; the query "
               "is never cut",
        "retrieval_query": (_QUERY_TEXT.get(task, "the whole query")
                            + ("; the whole query when that part is missing or empty" if task in _QUERY_TEXT else "")),
    }
    if isinstance(template, GenericTemplate):
        return {"prompt": GENERIC_HEADER + "\n{items}\n\n{query}",
                "item": "- {text}   (an input/output item without text: - {input} -> {output}; line breaks inside an "
                        "item become spaces)",
                "separator": "\n", **common,
                "document": "the item's text (an input/output item: input, a line break, output)"}
    fields = _CORPUS_FIELDS[task]
    return {"prompt": _AGGREGATE_TEXT[template.aggregate], "item": template.pattern, "separator": ", and ",
            **common, "cut_field": template.cut_field,
            "document": " ".join("{" + name + "}" for name in fields) + " (the item's fields)"}


# --------------------------------------------------------------------------- budgeted prompt


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text))


def _render(template: LampTemplate | GenericTemplate, entries: Sequence[_Entry], input: str) -> str:
    return template.render([entry.render() for entry in entries], input)


def _cut_text(text: str, max_tokens: int, tokenizer: Tokenizer) -> str:
    """The longest word prefix of ``text`` with at most ``max_tokens`` tokens."""
    if _count(tokenizer, text) <= max_tokens:
        return text
    words = text.split()
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if _count(tokenizer, " ".join(words[:mid])) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[:low])


def _cut_to_fit(
    template: LampTemplate | GenericTemplate,
    entry: _Entry,
    input: str,
    tokenizer: Tokenizer,
    max_tokens: int,
) -> str | None:
    """The longest word prefix of ``entry``'s body whose prompt fits, or None if none does."""
    words = entry.body.split()
    low, high = 0, len(words)  # invariant: prefix of `low` words fits (or low == 0)
    while low < high:
        mid = (low + high + 1) // 2
        body = " ".join(words[:mid])
        if _count(tokenizer, template.render([entry.render(body)], input)) <= max_tokens:
            low = mid
        else:
            high = mid - 1
    if low == 0:
        return None
    return template.render([entry.render(" ".join(words[:low]))], input)


def build_prompt(
    task: str,
    query_input: str,
    retrieved: Sequence[HistoryItem],
    tokenizer: Tokenizer,
    max_tokens: int,
    item_max_tokens: int | None = None,
) -> PromptResult:
    """Render a query with retrieved history items, within a token budget.

    The items (best first) are rendered with the task's template. While the prompt has more than
    ``max_tokens`` tokens, the lowest-ranked item is dropped; when one item remains and is still
    too long, its main text (LaMP_1 title, LaMP_5 abstract, LaMP_2 description, otherwise the
    text) is cut at a word boundary to fit. The query input is never cut: if it alone exceeds
    the budget, it is returned unchanged with every item dropped. With ``item_max_tokens``, each
    item's main text is first cut to that many tokens, so that several long items can share the
    budget as in LaMP (which gives each of the k items an equal share).

    Args:
        task: The dataset task id.
        query_input: The query's input text.
        retrieved: Retrieved history items, best first.
        tokenizer: Counts tokens with ``encode(text)`` (special tokens included if it adds them).
        max_tokens: Token budget of the whole prompt.
        item_max_tokens: Cap on each item's main text in tokens; None for no cap.

    Returns:
        The prompt text with the counts of items used and dropped.

    Raises:
        ConfigError: If the task is unknown or ``max_tokens`` is not a positive integer.
        DataError: If a LaMP item lacks a field its template needs.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(
            f"build_prompt: max_tokens={max_tokens!r} must be a positive integer; pass the model's context budget"
        )
    if item_max_tokens is not None and (not isinstance(item_max_tokens, int) or item_max_tokens < 1):
        raise ConfigError(
            f"build_prompt: item_max_tokens={item_max_tokens!r} must be a positive integer or None; pass e.g. 64"
        )
    template = template_for(task)
    entries = [template.entry(task, item) for item in retrieved]
    if item_max_tokens is not None:
        entries = [_Entry(e.pattern, _cut_text(e.body, item_max_tokens, tokenizer)) for e in entries]
    total = len(entries)
    while entries:
        text = _render(template, entries, query_input)
        if _count(tokenizer, text) <= max_tokens:
            return PromptResult(text, len(entries), total - len(entries))
        if len(entries) == 1:
            cut = _cut_to_fit(template, entries[0], query_input, tokenizer, max_tokens)
            if cut is not None:
                return PromptResult(cut, 1, total - 1)
        entries.pop()
    return PromptResult(query_input, 0, total)
