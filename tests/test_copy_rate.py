"""The copy rate: verbatim reuse of the user's own text in an answer, reported beside Persona-F1."""

from __future__ import annotations

from collections import Counter

import pytest

from runners.errors import ConfigError, DataError
from runners.metrics import (
    CONTENT_METRICS,
    content_ngrams,
    copy_rate,
    get_metric,
    score,
    score_names,
    score_queries,
    user_content_of,
)
from runners.spec import TrialConfig
from runners.trial import reported_metrics, run_trial

HISTORY = "Howdy folks. Nacho the tortoise keeps me busy.\nI will be sailing near Bergen as usual, plot twist."


def test_copy_rate_counts_the_answers_five_grams_found_in_the_history():
    source = content_ngrams(HISTORY)
    # 9 words, 5 five-grams; "nacho the tortoise keeps me" and "the tortoise keeps me busy" are copied
    assert copy_rate("Nacho the tortoise keeps me busy, said the doctor.", source) == pytest.approx(2 / 5)
    assert copy_rate("NACHO -- the tortoise; keeps me busy!", source) == 1.0  # case and punctuation do not matter
    assert copy_rate("I will be sailing near Bergen", source) == 1.0
    assert copy_rate("Take two tablets a day with water.", source) == 0.0


def test_short_answers_and_line_joins_copy_nothing():
    source = content_ngrams(HISTORY)
    assert copy_rate("Nacho the tortoise", source) == 0.0  # fewer than 5 words: no 5-gram at all
    assert copy_rate("", source) == 0.0
    # the 5-gram across the join of two history lines is no copy of either line
    assert copy_rate("keeps me busy i will", source) == 0.0


def test_score_reports_copy_rate_and_persona_f1_together():
    content = user_content_of(HISTORY)
    values = score("demo", ["Nacho the tortoise keeps me busy.", "ok"], ["x", "y"], user_content=content)
    assert values["copy_rate"] == pytest.approx(0.5)  # 1.0 and 0.0
    assert values["persona_f1"] > 0
    per_query = score_queries("demo", ["Nacho the tortoise keeps me busy.", "ok"], ["x", "y"], content)
    assert per_query["copy_rate"] == [1.0, 0.0]
    assert score("demo", ["Nacho the tortoise keeps me busy."], ["x"], user_content=HISTORY)["copy_rate"] == 1.0
    assert set(CONTENT_METRICS) <= set(score_names("demo")) and "copy_rate_se" in score_names("demo")
    assert "copy_rate" in reported_metrics("meddialogue")


def test_a_bare_counter_gives_persona_f1_only_and_the_metric_says_why():
    counts = Counter(["nacho", "tortoise"])
    assert "copy_rate" not in score("demo", ["nacho"], ["x"], user_content=counts)
    with pytest.raises(ConfigError, match="has no word order.*user_content_of"):
        get_metric("copy_rate").compute(["nacho"], ["x"], user_content=counts)
    with pytest.raises(DataError, match="nothing to score"):
        get_metric("copy_rate").compute([], [], user_content=HISTORY)


def test_a_trial_reports_the_copy_rate_with_its_standard_error(tiny_setup):
    from runners.session import session_for

    result = run_trial(TrialConfig(rag_k=2, retriever="recency"), tiny_setup)
    session = session_for(tiny_setup)
    for user, split in zip(result.users, session.splits):
        source = session.user_content(split.user).ngrams
        assert list(user.query_scores["copy_rate"]) == [copy_rate(p, source) for p in user.predictions]
    assert 0.0 <= result.metrics["copy_rate"] <= 1.0 and result.metrics["copy_rate_se"] >= 0.0
    assert result.metrics["copy_rate"] == pytest.approx(
        sum(sum(u.query_scores["copy_rate"]) / len(u.query_scores["copy_rate"]) for u in result.users) / 2)
