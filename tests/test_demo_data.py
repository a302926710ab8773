"""The builtin demo dataset: deterministic, sized as promised, distinct and learnable personas."""

from __future__ import annotations

import re

import pytest

from runners.data.demo import MAX_USERS, demo_dataset, personas
from runners.data.splits import split_dataset
from runners.errors import DataError


@pytest.fixture(scope="module")
def demo():
    return demo_dataset()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def _history_text(user) -> str:
    return " ".join(item.as_text() for item in user.history).lower()


def test_deterministic_and_seeded(demo):
    assert demo_dataset() == demo
    assert demo_dataset(seed=1) != demo
    assert demo_dataset(17).users[:16] == demo_dataset(16).users


def test_sizes(demo):
    assert demo.task == "demo" and demo.source == "demo" and len(demo.users) == 24
    assert len({u.user_id for u in demo.users}) == 24
    for user in demo.users:
        assert 20 <= len(user.history) <= 60
        assert len(user.queries) == 10
        assert all(8 <= len(q.output.split()) <= 25 for q in user.queries)
        kinds = {item.is_pair for item in user.history}
        assert kinds == {True, False}
        times = [item.time for item in user.history]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert user.profile.count(".") == 1 and user.profile.endswith(".")


def test_n_users_range():
    assert len(demo_dataset(MAX_USERS).users) == MAX_USERS >= 16
    with pytest.raises(DataError, match=r"n_users=0 is outside 1\.\.32"):
        demo_dataset(0)


def test_personas_are_distinct_and_recur_in_their_own_history(demo):
    people = personas(24)
    histories = [_history_text(u) for u in demo.users]
    for i, (person, user) in enumerate(zip(people, demo.users)):
        assert person.name.lower() in user.user_id and person.pet_name in user.profile
        for phrase in (*person.catchphrases, person.greeting, person.signoff, person.pet_name):
            assert phrase.lower() in histories[i]
            others = sum(phrase.lower() in h for j, h in enumerate(histories) if j != i)
            assert others <= 2, (phrase, others)
        for query in user.queries:
            assert query.output.startswith(person.greeting)
    for attr in ("name", "greeting", "signoff", "city", "job", "hobby", "food", "pet_name"):
        assert len({getattr(p, attr) for p in people}) == 24


def test_queries_look_like_history_questions_but_are_new(demo):
    for user in demo.users:
        asked = {item.input for item in user.history if item.is_pair}
        assert not asked & {q.input for q in user.queries}
        assert all(q.input.endswith("?") for q in user.queries)
        assert all(question.endswith("?") for question in asked)


def test_references_are_predictable_from_own_history_only(demo):
    """Most reference words occur in the user's own history, far fewer in another user's."""
    own, other = [], []
    for i, user in enumerate(demo.users):
        mine = set(_words(_history_text(user)))
        theirs = set(_words(_history_text(demo.users[(i + 1) % len(demo.users)])))
        for query in user.queries:
            ref = _words(query.output)
            own.append(sum(w in mine for w in ref) / len(ref))
            other.append(sum(w in theirs for w in ref) / len(ref))
    assert sum(own) / len(own) > 0.9
    assert sum(other) / len(other) < 0.6


def _nearest_answer(user, question: str) -> str:
    """The output of the user's history pair whose question shares the most words (a crude RAG)."""
    pairs = [item for item in user.history if item.is_pair]
    return max(pairs, key=lambda item: len(set(_words(item.input)) & set(_words(question)))).output


def test_own_history_beats_another_persona_on_rouge(demo):
    """Answering from the user's own history scores far higher ROUGE-L than from someone else's."""
    from runners.metrics.rouge import rouge_scores

    users = demo.users[:8]
    refs = [q.output for u in users for q in u.queries]
    own = [_nearest_answer(u, q.input) for u in users for q in u.queries]
    other = [_nearest_answer(users[(i + 1) % 8], q.input) for i, u in enumerate(users) for q in u.queries]
    own_score, other_score = rouge_scores(own, refs)["rougeL"], rouge_scores(other, refs)["rougeL"]
    assert own_score > 0.4 and other_score < 0.2, (own_score, other_score)


def test_demo_splits_cleanly(demo):
    splits = split_dataset(demo, seed=0, users=8)
    assert len(splits) == 8
    assert all(len(s.val) == 5 and len(s.test) == 5 and len(s.heldout) >= 2 for s in splits)
