"""Retrieval queries, corpus documents and LaMP / generic prompts with a token budget."""

from __future__ import annotations

import pytest

from runners.data.types import HistoryItem
from runners.errors import ConfigError, DataError
from runners.prompts import PromptResult, build_prompt, corpus_text, retrieval_query


class Whitespace:
    """A tokenizer that counts whitespace-separated words."""

    def encode(self, text: str) -> list[str]:
        return text.split()


WS = Whitespace()
BIG = 10_000

LAMP1_INPUT = (
    'For an author who has written the paper with the title "Deep nets", which reference is related? '
    'Just answer with [1] or [2] without explanation. [1]: "Graph kernels" [2]: "Neural networks"'
)
LAMP3_INPUT = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
    "or 5 without further explanation. review: Great blender, works well."
)
LAMP7_INPUT = "Paraphrase the following tweet without any explanation before or after it: I love sunny days"

INPUTS = {
    "LaMP_1": LAMP1_INPUT,
    "LaMP_2": "Which tag does this movie relate to among the following tags? Just answer with the tag "
    "name without further explanation. tags: [sci-fi, comedy] description: A robot learns to love.",
    "LaMP_2N": "Which category does this article relate to among the following categories? Just answer "
    "with the category name without further explanation. categories: [women, religion] article: "
    "Churches reopen.",
    "LaMP_3": LAMP3_INPUT,
    "LaMP_4": "Generate a headline for the following article: Markets rallied on Friday.",
    "LaMP_5": "Generate a title for the following abstract of a paper: We study sparse priors.",
    "LaMP_6": "Generate a subject for the following email: Lunch is moved to noon.",
    "LaMP_7": LAMP7_INPUT,
}

FIELDS = {
    "LaMP_1": lambda i: {"title": f"Paper {i}", "abstract": f"Abstract {i}."},
    "LaMP_2": lambda i: {"description": f"Movie {i} plot.", "tag": "comedy"},
    "LaMP_2N": lambda i: {"title": f"Head {i}", "text": f"Story {i}.", "category": "religion"},
    "LaMP_3": lambda i: {"text": f"Review {i}.", "score": str(i)},
    "LaMP_4": lambda i: {"title": f"Head {i}", "text": f"Story {i}."},
    "LaMP_5": lambda i: {"title": f"Paper {i}", "abstract": f"Abstract {i}."},
    "LaMP_6": lambda i: {"title": f"Subject {i}", "text": f"Body {i}."},
    "LaMP_7": lambda i: {"text": f"tweet {i}"},
}

ENTRY = {  # the per-item template, as LaMP's create_*_prompt renders it
    "LaMP_1": lambda f: f'"{f["title"]}"',
    "LaMP_2": lambda f: f'the tag for the movie: "{f["description"]}" is "{f["tag"]}" ',
    "LaMP_2N": lambda f: f'the category for the article: "{f["text"]}" is "{f["category"]}" ',
    "LaMP_3": lambda f: f'{f["score"]} is the score for "{f["text"]}" ',
    "LaMP_4": lambda f: f'"{f["title"]}" is the title for "{f["text"]}" ',
    "LaMP_5": lambda f: f'"{f["title"]}" is a title for "{f["abstract"]}" ',
    "LaMP_6": lambda f: f'"{f["title"]}" is the title for "{f["text"]}" ',
    "LaMP_7": lambda f: f'"{f["text"]}" ',
}


def lamp_items(task: str, n: int) -> list[HistoryItem]:
    return [HistoryItem(id=f"p{i}", fields=FIELDS[task](i)) for i in range(1, n + 1)]


# ------------------------------------------------------------------- retrieval query and corpus


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("LaMP_1", "Graph kernels Neural networks"),
        ("LaMP_2", "A robot learns to love."),
        ("LaMP_2N", "Churches reopen."),
        ("LaMP_3", "Great blender, works well."),
        ("LaMP_4", "Markets rallied on Friday."),
        ("LaMP_5", "We study sparse priors."),
        ("LaMP_6", "Lunch is moved to noon."),
        ("LaMP_7", "I love sunny days"),
    ],
)
def test_retrieval_query_extracts_the_non_template_part(task: str, expected: str) -> None:
    assert retrieval_query(task, INPUTS[task]) == expected


def test_retrieval_query_lamp5_after_paper_and_generic_whole() -> None:
    assert retrieval_query("LaMP_5", "Title this paper: sparse priors") == "sparse priors"
    assert retrieval_query("LaMP_2M", "tags: [a] description: a heist") == "a heist"
    assert retrieval_query("generic", "What should I cook: tonight?") == "What should I cook: tonight?"
    assert retrieval_query("meddialogue", "I have a cough.") == "I have a cough."


@pytest.mark.parametrize(
    ("task", "text"),
    [
        ("LaMP_3", "What is the score? review:   "),  # nothing after the keyword
        ("LaMP_4", "A headline without the keyword"),  # keyword missing
        ("LaMP_1", 'Only "one" quoted title'),  # fewer than three quoted strings
        ("LaMP_7", "Paraphrase:"),
    ],
)
def test_empty_query_falls_back_to_whole_input(task: str, text: str) -> None:
    assert retrieval_query(task, text) == text


def test_corpus_text_per_task() -> None:
    paper = HistoryItem(id="1", fields={"title": "T", "abstract": "A"})
    news = HistoryItem(id="2", fields={"title": "H", "text": "B", "category": "c"})
    assert corpus_text("LaMP_1", paper) == "T A"
    assert corpus_text("LaMP_5", paper) == "T A"
    assert corpus_text("LaMP_2N", news) == "H B"
    assert corpus_text("LaMP_4", news) == "H B"
    assert corpus_text("LaMP_6", news) == "B"
    assert corpus_text("LaMP_2", HistoryItem(fields={"description": "D", "tag": "x"})) == "D"
    assert corpus_text("LaMP_3", HistoryItem(fields={"text": "R", "score": "4"})) == "R"
    assert corpus_text("generic", HistoryItem(input="q", output="a")) == "q\na"


def test_corpus_text_missing_field_names_item_and_field() -> None:
    with pytest.raises(DataError, match=r"LaMP_3: profile item id='7' has no field 'text'"):
        corpus_text("LaMP_3", HistoryItem(id="7", fields={"score": "3"}))


def test_unknown_task_lists_known_tasks() -> None:
    with pytest.raises(ConfigError, match=r"unknown task 'LaMP_9'; use one of LaMP_1, .*generic"):
        retrieval_query("LaMP_9", "x")


# ------------------------------------------------------------------- hand-checked LaMP prompts


def test_lamp1_inserts_titles_after_the_word_title() -> None:
    one = build_prompt("LaMP_1", LAMP1_INPUT, lamp_items("LaMP_1", 1), WS, BIG)
    assert one == PromptResult(
        'For an author who has written the paper with the title, and "Paper 1" "Deep nets", which '
        'reference is related? Just answer with [1] or [2] without explanation. [1]: "Graph kernels" '
        '[2]: "Neural networks"',
        1,
        0,
    )
    four = build_prompt("LaMP_1", LAMP1_INPUT, lamp_items("LaMP_1", 4), WS, BIG)
    assert four.text.startswith(
        'For an author who has written the paper with the title, and "Paper 1", and "Paper 2", and '
        '"Paper 3", and "Paper 4" "Deep nets", which reference'
    )
    assert (four.n_items, four.n_dropped) == (4, 0)


def test_lamp3_entries_before_input() -> None:
    one = build_prompt("LaMP_3", LAMP3_INPUT, lamp_items("LaMP_3", 1), WS, BIG)
    assert one.text == '1 is the score for "Review 1." . ' + LAMP3_INPUT
    four = build_prompt("LaMP_3", LAMP3_INPUT, lamp_items("LaMP_3", 4), WS, BIG)
    assert four.text == (
        '1 is the score for "Review 1." , and 2 is the score for "Review 2." , and '
        '3 is the score for "Review 3." , and 4 is the score for "Review 4." . ' + LAMP3_INPUT
    )


def test_lamp7_suffix_text() -> None:
    one = build_prompt("LaMP_7", LAMP7_INPUT, lamp_items("LaMP_7", 1), WS, BIG)
    assert one.text == (
        '"tweet 1"  are written by a person. Following the given patterns Paraphrase the following '
        "tweet without any explanation before or after it: I love sunny days"
    )
    four = build_prompt("LaMP_7", LAMP7_INPUT, lamp_items("LaMP_7", 4), WS, BIG)
    assert four.text == (
        '"tweet 1" , and "tweet 2" , and "tweet 3" , and "tweet 4"  are written by a person. '
        "Following the given patterns " + LAMP7_INPUT
    )


def test_lamp5_suffix_text() -> None:
    one = build_prompt("LaMP_5", INPUTS["LaMP_5"], lamp_items("LaMP_5", 1), WS, BIG)
    assert one.text == '"Paper 1" is a title for "Abstract 1." . Following the given patterns ' + INPUTS["LaMP_5"]


@pytest.mark.parametrize("task", sorted(INPUTS))
@pytest.mark.parametrize("k", [0, 1, 4])
def test_every_lamp_task_renders_with_k(task: str, k: int) -> None:
    items = lamp_items(task, k)
    result = build_prompt(task, INPUTS[task], items, WS, BIG)
    assert (result.n_items, result.n_dropped) == (k, 0)
    if k == 0:
        assert result.text == INPUTS[task]
        return
    joined = ", and ".join(ENTRY[task](item.fields) for item in items)
    expected = {
        "LaMP_1": INPUTS[task].replace("the title", f"the title, and {joined}", 1),
        "LaMP_5": f"{joined}. Following the given patterns {INPUTS[task]}",
        "LaMP_7": f"{joined} are written by a person. Following the given patterns {INPUTS[task]}",
    }.get(task, f"{joined}. {INPUTS[task]}")
    assert result.text == expected


# ------------------------------------------------------------------- generic template, budget


def test_generic_template_lists_items() -> None:
    items = [HistoryItem(text="I bake sourdough\non weekends."), HistoryItem(input="Best pasta?", output="Cacio e pepe.")]
    result = build_prompt("demo", "What should I cook?", items, WS, BIG)
    assert result.text == (
        "Here is what this user wrote before:\n- I bake sourdough on weekends.\n"
        "- Best pasta? -> Cacio e pepe.\n\nWhat should I cook?"
    )


def test_truncation_drops_lowest_ranked_items_and_keeps_query() -> None:
    items = [HistoryItem(fields={"text": f"text {w}", "score": str(i)}) for i, w in enumerate("abc", 1)]
    query = "Score it. review: nice pan"  # 5 words
    # each entry is 7 words, each ", and" join adds 2, the ". " before the input adds 1:
    # 1 item 13 words, 2 items 22, 3 items 31.
    assert build_prompt("LaMP_3", query, items, WS, 31).n_items == 3
    result = build_prompt("LaMP_3", query, items, WS, 25)
    assert result == PromptResult(
        '1 is the score for "text a" , and 2 is the score for "text b" . Score it. review: nice pan', 2, 1
    )
    assert build_prompt("LaMP_3", query, items, WS, 13).n_items == 1


def test_single_long_item_is_cut_by_tokens() -> None:
    item = HistoryItem(text="a b c d e f g h i j")
    # header 7 words + "-" + item words + 2 query words
    result = build_prompt("generic", "What next?", [item], WS, 15)
    assert result == PromptResult("Here is what this user wrote before:\n- a b c d e\n\nWhat next?", 1, 0)


def test_no_room_returns_query_unchanged() -> None:
    items = lamp_items("LaMP_7", 2)
    result = build_prompt("LaMP_7", LAMP7_INPUT, items, WS, 5)  # the query alone is longer
    assert result == PromptResult(LAMP7_INPUT, 0, 2)
    # one item word needs 7 + 1 + 1 + 2 = 11 tokens
    assert build_prompt("generic", "What next?", [HistoryItem(text="a b")], WS, 10) == PromptResult("What next?", 0, 1)
    assert build_prompt("generic", "What next?", [HistoryItem(text="a b")], WS, 11).n_items == 1


def test_bad_max_tokens() -> None:
    with pytest.raises(ConfigError, match="max_tokens=0 must be a positive integer"):
        build_prompt("generic", "x", [], WS, 0)
    with pytest.raises(ConfigError, match="item_max_tokens=0 must be a positive integer or None"):
        build_prompt("generic", "x", [], WS, 10, item_max_tokens=0)


def test_item_max_tokens_cuts_each_item_so_several_fit() -> None:
    items = [HistoryItem(fields={"text": f"{w} " * 20, "score": str(i)}) for i, w in enumerate("xyz", 1)]
    query = "Score it. review: nice pan"
    # uncapped, each entry is 25 words: only the best item fits in 40 tokens
    assert build_prompt("LaMP_3", query, items, WS, 40).n_items == 1
    capped = build_prompt("LaMP_3", query, items, WS, 40, item_max_tokens=3)
    assert capped == PromptResult(
        '1 is the score for "x x x" , and 2 is the score for "y y y" , and 3 is the score for "z z z" . '
        + query,
        3,
        0,
    )
