"""Per-user splits and the history-to-training conversion."""

from __future__ import annotations

import random
import warnings

import pytest

from runners.data.pairs import LAMP_INSTRUCTIONS, LAMP_LABELS, memory_texts, training_pairs
from runners.data.splits import SkippedUsersWarning, SplitCounts, held_out_user_ids, split_dataset, split_user
from runners.data.types import Dataset, HistoryItem, Query, User
from runners.errors import ConfigError, DataError


def _user(uid: str, n_hist: int, n_query: int) -> User:
    return User(
        user_id=uid,
        history=tuple(HistoryItem(text=f"{uid} item {i}", time=i) for i in range(n_hist)),
        queries=tuple(Query(f"{uid}-{i}", f"q{i}", f"a{i}") for i in range(n_query)),
    )


# ---------------------------------------------------------------- split_user


def test_split_user_sizes_disjoint_cover_and_order():
    user = _user("u", 20, 10)
    split = split_user(user, seed=3)
    assert (len(split.train), len(split.heldout), len(split.val), len(split.test)) == (18, 2, 5, 5)
    assert sorted(split.train + split.heldout, key=lambda h: h.time) == list(user.history)
    assert set(split.val).isdisjoint(split.test) and set(split.val) | set(split.test) == set(user.queries)
    assert [h.time for h in split.train] == sorted(h.time for h in split.train)
    assert [q for q in user.queries if q in split.test] == list(split.test)


def test_split_user_is_deterministic_and_seed_dependent():
    user = _user("u", 30, 12)
    assert split_user(user, seed=1) == split_user(user, seed=1)
    seeds = {tuple(q.id for q in split_user(user, seed=s).val) for s in range(6)}
    assert len(seeds) > 1


def test_split_user_small_users():
    one = split_user(_user("u", 3, 1), seed=0)
    assert (len(one.train), len(one.heldout), len(one.val), len(one.test)) == (3, 0, 1, 0)
    single = split_user(_user("u", 1, 0), seed=0, heldout_fraction=0.9)
    assert (len(single.train), len(single.heldout), len(single.val)) == (1, 0, 0)
    two = split_user(_user("u", 2, 3), seed=0, heldout_fraction=0.9, val_fraction=0.0)
    assert (len(two.train), len(two.heldout), len(two.val), len(two.test)) == (1, 1, 1, 2)


def test_max_val_queries_caps_validation_and_keeps_test():
    user = _user("u", 10, 10)
    full, capped = split_user(user, seed=5), split_user(user, seed=5, max_val_queries=2)
    assert len(capped.val) == 2 and set(capped.val) <= set(full.val)
    assert capped.test == full.test


def test_split_user_rejects_bad_fractions():
    with pytest.raises(ConfigError, match=r"val_fraction=1.5 is outside \[0, 1\]"):
        split_user(_user("u", 3, 3), seed=0, val_fraction=1.5)
    with pytest.raises(ConfigError, match=r"heldout_fraction=1.0 is outside \[0, 1\)"):
        split_user(_user("u", 3, 3), seed=0, heldout_fraction=1.0)


# ---------------------------------------------------------------- split_dataset


def _dataset() -> Dataset:
    users = [_user(f"u{i}", 10, 4) for i in range(8)]
    users.insert(2, _user("nohist", 0, 3))
    users.insert(5, _user("noquery", 5, 0))
    return Dataset(task="generic", users=tuple(users), source="toy.jsonl")


def test_split_dataset_warns_once_naming_skipped_users():
    with pytest.warns(SkippedUsersWarning) as record:
        splits = split_dataset(_dataset(), seed=0)
    assert len(record) == 1
    assert record[0].filename == __file__
    message = str(record[0].message)
    assert "skipped 2 of 10 users of toy.jsonl" in message and "(nohist, noquery)" in message
    assert [s.user.user_id for s in splits] == [f"u{i}" for i in range(8)]


def test_split_is_independent_of_other_users():
    data = _dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedUsersWarning)
        splits = split_dataset(data, seed=4)
    assert splits[3] == split_user(data.users[4], seed=4)


def test_cohort_is_stable_and_extends():
    data = _dataset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedUsersWarning)
        three = [s.user.user_id for s in split_dataset(data, seed=7, users=3)]
        four = [s.user.user_id for s in split_dataset(data, seed=7, users=4)]
        again = [s.user.user_id for s in split_dataset(data, seed=7, users=3)]
        other = {tuple(s.user.user_id for s in split_dataset(data, seed=s, users=3)) for s in range(5)}
        with pytest.raises(DataError, match=r"users=9 but toy.jsonl has only 8 users .* pass users <= 8"):
            split_dataset(data, users=9)
    assert three == again and four[:3] == three and len(set(four)) == 4
    assert "nohist" not in four and len(other) > 1


def test_split_dataset_with_no_usable_user():
    data = Dataset(task="generic", users=(_user("a", 0, 2), _user("b", 2, 0)), source="x.jsonl")
    with pytest.raises(DataError, match=r"x.jsonl: none of its 2 users has both history and queries"):
        split_dataset(data)


# ---------------------------------------------------------------- test split (queries / users)


def _cohort_of(n: int, n_query: int = 1, prefix: str = "p") -> Dataset:
    return Dataset(task="generic", users=tuple(_user(f"{prefix}{i:03d}", 2, n_query) for i in range(n)),
                   source="one.jsonl")


def test_demo_splits_are_byte_identical_to_the_per_query_split():
    """auto on data where every user has >= 2 queries is the per-query split as it always was: these
    digests were computed with the code before data.test_split existed (commit 0d45cc1)."""
    import hashlib

    from runners.data.load import load_dataset

    demo = load_dataset("demo")
    expected = {"default": "03ad1c4bfbf2350c", "cohort": "0bbf6a064f05dde4", "fractions": "124f0595f4557273"}
    settings = {"default": {}, "cohort": {"users": 5, "seed": 3, "max_val_queries": 4},
                "fractions": {"seed": 1, "val_fraction": 0.3, "heldout_fraction": 0.2}}
    for name, kwargs in settings.items():
        for test_split in ("auto", "queries"):
            splits = split_dataset(demo, test_split=test_split, **kwargs)
            assert hashlib.sha256(repr(splits).encode()).hexdigest()[:16] == expected[name], (name, test_split)


def test_auto_holds_out_whole_users_when_users_have_one_query():
    data = _cohort_of(40)
    splits = split_dataset(data, seed=2)
    test = [s for s in splits if s.test]
    search = [s for s in splits if s.val]
    assert (len(test), len(search)) == (10, 30), "a quarter of the cohort (data.test_users_fraction=0.25)"
    assert all(not s.val and s.test == s.user.queries for s in test), "a test user answers test queries only"
    assert all(not s.test and s.val == s.user.queries for s in search), "a search user's queries are all validation"
    assert {s.user.user_id for s in test}.isdisjoint(s.user.user_id for s in search)
    for s in splits:  # history is split as in a per-query split: the same training items, the same retrieval
        per_query = split_user(s.user, seed=2)
        assert (s.train, s.heldout) == (per_query.train, per_query.heldout)
    assert SplitCounts.of(splits).describe() == "users (30 users search, 10 users test; 30 validation queries, " \
                                                "10 test queries)"


def test_held_out_users_are_seeded_and_the_share():
    data = _cohort_of(400)
    by_seed = {seed: {s.user.user_id for s in split_dataset(data, seed=seed, users=200) if s.test}
               for seed in range(4)}
    assert by_seed[0] == {s.user.user_id for s in split_dataset(data, seed=0, users=200) if s.test}
    assert len({frozenset(ids) for ids in by_seed.values()}) == 4, "another seed holds out other users"
    assert all(len(ids) == 50 for ids in by_seed.values())
    for n, fraction, expected in ((8, 0.25, {2}), (6, 0.25, {1, 2}), (10, 0.1, {1}), (7, 0.5, {3, 4})):
        counts = {len(held_out_user_ids(_cohort_of(n).users, seed, fraction)) for seed in range(20)}
        assert counts <= expected and counts, (n, fraction, counts)


def test_held_out_users_are_stable_when_users_are_added():
    """A user's side depends on its place in the cohort's order: a cohort drawn one user larger
    (data.users + 1) and a file with users appended keep every earlier user's side."""
    large = _cohort_of(60)
    sides = {n: [bool(s.test) for s in split_dataset(large, seed=5, users=n)] for n in range(2, 61)}
    ids = {n: [s.user.user_id for s in split_dataset(large, seed=5, users=n)] for n in (30, 60)}
    assert ids[60][:30] == ids[30]
    assert all(sides[60][:n] == sides[n] for n in range(4, 60)), "no earlier user changes side"
    appended = [bool(s.test) for s in split_dataset(_cohort_of(30), seed=5)]
    assert [bool(s.test) for s in split_dataset(large, seed=5)][:30] == appended


def test_each_side_keeps_at_least_one_user():
    pair = _cohort_of(2).users
    assert len(held_out_user_ids(pair, seed=0, fraction=0.001)) == 1
    assert len(held_out_user_ids(pair, seed=0, fraction=0.999)) == 1
    for fraction in (0.001, 0.999):
        splits = split_dataset(_cohort_of(2), test_users_fraction=fraction)
        assert sum(1 for s in splits if s.test) == 1 and sum(1 for s in splits if s.val) == 1


def test_a_one_user_cohort_is_split_per_query():
    """A per-user study (one user) cannot hold a user out: its own queries are split, and a single
    query stays a validation query."""
    one = split_dataset(_cohort_of(5), user_ids=["p003"])
    assert one == [split_user(_cohort_of(5).users[3], seed=0)] and one[0].test == ()
    many = _user("m", 4, 6)
    forced = split_dataset(Dataset("generic", (many,)), test_split="users")
    assert forced == [split_user(many, seed=0)] and forced[0].test
    counts = SplitCounts.of(one)
    assert (counts.kind, counts.test_queries, counts.users_without_test) == ("queries", 0, 1)
    assert "only query is a validation query" in counts.no_test_reason()


def test_queries_forced_on_one_query_users_gives_an_empty_test_part():
    """data.test_split=queries is honoured: every one-query user keeps its query for validation, the
    test part is empty (a run says so in one line and shows validation values)."""
    data = _cohort_of(6)
    splits = split_dataset(data, test_split="queries")
    assert splits == [split_user(u, seed=0) for u in data.users]
    counts = SplitCounts.of(splits)
    assert counts.describe() == "queries (6 users; 6 validation queries, no test queries)"
    assert counts.no_test_reason().startswith("every user has a single query, kept for validation by "
                                              "data.test_split=queries")


def test_users_forced_on_many_query_users_caps_validation_only():
    data = Dataset("generic", tuple(_user(f"u{i}", 6, 8) for i in range(12)))
    splits = split_dataset(data, seed=1, test_split="users", max_val_queries=3)
    assert all(len(s.val) == 3 and not s.test for s in splits if s.val)
    assert all(len(s.test) == 8 and not s.val for s in splits if s.test)


def test_mixed_users_make_auto_hold_out_users():
    users = [_user(f"u{i}", 4, 4) for i in range(6)] + [_user("single", 4, 1)]
    splits = split_dataset(Dataset("generic", tuple(users)), seed=0)
    assert SplitCounts.of(splits).kind == "users"
    assert SplitCounts.of(split_dataset(Dataset("generic", tuple(users[:6])), seed=0)).kind == "queries"


def test_test_split_settings_are_checked():
    with pytest.raises(ConfigError, match=r"data.test_split='people' is unknown; use one of \['auto', 'queries', "
                                          r"'users'\]"):
        split_dataset(_cohort_of(3), test_split="people")
    with pytest.raises(ConfigError, match=r"data.test_users_fraction=1.0 is outside \(0, 1\)"):
        split_dataset(_cohort_of(3), test_users_fraction=1.0)
    with pytest.raises(ConfigError, match=r"queries_to='all' is unknown"):
        split_user(_user("u", 2, 2), seed=0, queries_to="all")


def test_split_counts_wording_for_one_test_user():
    splits = split_dataset(_cohort_of(2))
    assert SplitCounts.of(splits).describe() == ("users (1 user search, 1 user test; 1 validation query, "
                                                 "1 test query)")


# ---------------------------------------------------------------- pairs


def _lamp(**fields) -> HistoryItem:
    return HistoryItem(id="p", fields=fields)


LAMP_ITEMS = {
    "LaMP_1": (_lamp(title="Deep nets", abstract="We study nets."),
               ("Write an abstract for this title: Deep nets", "We study nets.")),
    "LaMP_3": (_lamp(text="Great blender.", score="5"),
               ("What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
                "or 5 without further explanation. review: Great blender.", "5")),
    "LaMP_4": (_lamp(text="Rain all day.", title="Wet Monday"),
               ("Generate a headline for the following article: Rain all day.", "Wet Monday")),
    "LaMP_5": (_lamp(title="On graphs", abstract="Graphs are neat."),
               ("Generate a title for the following abstract of a paper: Graphs are neat.", "On graphs")),
    "LaMP_6": (_lamp(text="See you at 5.", title="Meeting"),
               ("Generate a subject for the following email: See you at 5.", "Meeting")),
}


@pytest.mark.parametrize("task", sorted(LAMP_ITEMS))
def test_lamp_peft_pairs(task):
    item, expected = LAMP_ITEMS[task]
    assert training_pairs(task, [item]) == [expected]


def test_lamp2_pairs_use_the_benchmark_strings():
    movie = training_pairs("LaMP_2", [_lamp(description="A robot dreams.", tag="sci-fi")])
    assert movie == [(
        "Which tag does this movie relate to among the following tags? Just answer with the tag name without "
        "further explanation. tags: [sci-fi, based on a book, comedy, action, twist ending, dystopia, dark "
        "comedy, classic, psychology, fantasy, romance, thought-provoking, social commentary, violence, true "
        "story] description: A robot dreams.", "sci-fi")]
    news = training_pairs("LaMP_2N", [_lamp(title="T", text="Vote now.", category="politics")])
    assert news[0][0].endswith("healthy living, parents, food & drink] article: Vote now.")
    assert news[0][1] == "politics"


def test_lamp7_and_text_completion_cut_is_seeded():
    words = " ".join(f"w{i}" for i in range(20))
    # random.Random(0).uniform(0.1, 0.25) = 0.2267, so the prefix is int(20 * 0.2267) = 4 words.
    tweet = training_pairs("LaMP_7", [HistoryItem(text=words, fields={"text": words})], seed=0)
    assert tweet == [("Complete the following tweet: w0 w1 w2 w3", " ".join(f"w{i}" for i in range(4, 20)))]
    text = training_pairs("generic", [HistoryItem(text=words)], seed=0)
    assert text == [("Complete the following text: w0 w1 w2 w3", tweet[0][1])]


def test_generic_pairs_mix_and_skip_short_texts():
    items = [HistoryItem(input="Q?", output="A."), HistoryItem(text="too short"),
             HistoryItem(text="one two three four")]
    pairs = training_pairs("demo", items, seed=1)
    assert pairs == [("Q?", "A."), ("Complete the following text: one", "two three four")]
    many = [HistoryItem(text=" ".join(f"w{i}" for i in range(40)))] * 30
    cuts = {len(p[0].split()) - 4 for p in training_pairs("generic", many, seed=2)}
    assert cuts <= set(range(4, 11)) and len(cuts) > 1
    assert training_pairs("generic", many, seed=2) == training_pairs("generic", many, seed=2)


def test_memory_texts():
    items = [HistoryItem(text="hello world"), HistoryItem(input="Q?", output="A.")]
    assert memory_texts("generic", items) == ["hello world", "Q?\nA."]
    assert memory_texts("LaMP_1", [_lamp(title="T", abstract="A")]) == ["Title: T\nAbstract: A"]
    assert memory_texts("LaMP_4", [_lamp(text="body", title="Head")]) == ["Article: body\nHeadline: Head"]
    assert memory_texts("LaMP_7", [_lamp(text="tweet text")]) == ["tweet text"]


def test_pairs_errors():
    with pytest.raises(DataError, match=r"task 'LaMP_8' is unknown; use one of generic, demo, meddialogue, LaMP_1"):
        training_pairs("LaMP_8", [])
    with pytest.raises(DataError, match=r"LaMP_5 history item 0 \(id 'p'\) has no field 'abstract'"):
        memory_texts("LaMP_5", [_lamp(title="T")])


def test_lamp_tables_match_the_metrics_and_the_benchmark():
    from runners.metrics.lamp import LAMP_LABELS as METRIC_LABELS

    assert LAMP_LABELS == METRIC_LABELS
    assert LAMP_INSTRUCTIONS["LaMP_1"].format(title="T", reference_1="A", reference_2="B") == (
        'For an author who has written the paper with the title "T", which reference is related? Just answer '
        'with [1] or [2] without explanation. [1]: "A" [2]: "B"'
    )
    assert LAMP_INSTRUCTIONS["LaMP_7"].format(text="x") == (
        "Paraphrase the following tweet without any explanation before or after it: x"
    )
    assert random.Random(0).uniform(0.1, 0.25) == pytest.approx(0.22666, abs=1e-5)
