"""Retrievers over one user's history: ranking, registry, warnings and the index cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import runners.retrieval.base as base
from runners.data.types import HistoryItem
from runners.errors import ConfigError, DataError, ModelError
from runners.retrieval import (
    IndexCache,
    RetrievalIndex,
    RetrievalWarning,
    Retriever,
    default_cache_dir,
    get_retriever,
    known_retrievers,
    register_retriever,
)
from runners.retrieval import dense


def texts(*docs: str, times: list | None = None) -> tuple[list[HistoryItem], list[str]]:
    times = times or [None] * len(docs)
    items = [HistoryItem(text=doc, id=str(i), time=t) for i, (doc, t) in enumerate(zip(docs, times))]
    return items, list(docs)


def build(name: str, docs: tuple[list[HistoryItem], list[str]], **options) -> RetrievalIndex:
    items, corpus = docs
    return get_retriever(name, **options).build(items, "generic", corpus, user_id="u1")


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "_WARNED", set())


# ------------------------------------------------------------------------------- bm25


def test_bm25_ranks_the_lexical_match_first() -> None:
    docs = texts("I went hiking in the mountains", "My cat sleeps on the sofa all day", "Stock prices fell sharply")
    index = build("bm25", docs)
    assert index.top_k("why does my CAT sleep so much", 1) == [1]
    assert index.top_k("stock prices today", 3)[0] == 2
    assert index.top_k("mountains hiking", 2)[0] == 0


def test_bm25_without_known_terms_keeps_history_order() -> None:
    index = build("bm25", texts("alpha beta", "gamma delta", "epsilon"))
    assert index.top_k("zeta", 3) == [0, 1, 2]
    assert index.top_k("", 2) == [0, 1]


def test_bm25_index_size_grows_with_the_corpus() -> None:
    small = build("bm25", texts("one two", "three four"))
    large = build("bm25", texts("one two", "three four", "five six seven eight nine ten eleven"))
    assert 0 < small.nbytes < large.nbytes


def test_bm25_stemmer_needs_pystemmer_or_says_so() -> None:
    try:
        import Stemmer  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs PyStemmer; pip install PyStemmer"):
            build("bm25", texts("a b"), stemmer="english")
    else:
        assert build("bm25", texts("running dogs", "a cat"), stemmer="english").top_k("dog runs", 1) == [0]


# ------------------------------------------------------------------------------- dense


def test_dense_ranks_the_semantic_match_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = texts("the dog went to the vet", "stock market fell")
    items, corpus = docs
    index = get_retriever("dense").build(items, "generic", corpus, user_id="u1", cache_dir=tmp_path)
    assert index.top_k("my puppy is sick", 2) == [0, 1]
    assert index.top_k("shares dropped on wall street", 1) == [1]
    assert index.nbytes == 2 * 384 * 4  # two float32 MiniLM embeddings
    assert np.allclose(np.linalg.norm(index.embeddings, axis=1), 1.0, atol=1e-5)

    stored = list((tmp_path / "dense").glob("*/*.npy"))
    assert len(stored) == 1
    real_encode = dense._encode

    def refuse_corpus(encoder, texts, batch_size):  # only the query may be encoded now
        assert len(texts) == 1 and texts[0] not in corpus
        return real_encode(encoder, texts, batch_size)

    monkeypatch.setattr(dense, "_encode", refuse_corpus)
    again = get_retriever("dense").build(items, "generic", corpus, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.embeddings, index.embeddings)
    assert again.top_k("a sick puppy", 1) == [0]


def test_dense_rejects_a_directory_without_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a local sentence-transformers directory"):
        build("dense", texts("a"), model=str(tmp_path))


# ------------------------------------------------------------------------------- recency


def test_recency_newest_first_by_date() -> None:
    docs = texts("a", "b", "c", "d", times=["2020-01-05", "2021-01-01", "2019-12-31", "2020-12-31"])
    assert build("recency", docs).top_k("ignored", 4) == [1, 3, 0, 2]


def test_recency_numbers_and_mixed_granularity() -> None:
    assert build("recency", texts("a", "b", "c", times=[3, 10, 2.5])).top_k("", 3) == [1, 0, 2]
    assert build("recency", texts("a", "b", times=["2020-06-01", "2020"])).top_k("", 2) == [0, 1]
    assert build("recency", texts("a", "b", times=["1700000000", 1600000000])).top_k("", 2) == [0, 1]


def test_recency_falls_back_to_file_order() -> None:
    assert build("recency", texts("a", "b", "c", "d")).top_k("q", 3) == [3, 2, 1]
    # undated items count as older than dated ones
    assert build("recency", texts("a", "b", "c", times=[None, "2001-01-01", None])).top_k("q", 3) == [1, 2, 0]


def test_recency_bad_time_names_the_item() -> None:
    with pytest.raises(DataError, match=r"item id='1' has time='yesterday', neither a number nor a date"):
        build("recency", texts("a", "b", times=["2020-01-01", "yesterday"]))


# ------------------------------------------------------------------------------- random


def test_random_is_seeded_reproducible_and_without_replacement() -> None:
    docs = texts(*[f"doc {i}" for i in range(8)])
    first = build("random", docs, seed=0)
    second = build("random", docs, seed=0)
    assert first.top_k("q", 5) == second.top_k("q", 5)
    assert len(set(first.top_k("q", 8))) == 8
    assert first.top_k("q", 8)[:3] == first.top_k("q", 3)
    assert build("random", docs, seed=1).top_k("q", 8) != first.top_k("q", 8)
    assert first.nbytes == 0


# ------------------------------------------------------------------------------- registry


def test_unknown_retriever_lists_known_names() -> None:
    assert known_retrievers() == ["bm25", "dense", "random", "recency"]
    with pytest.raises(ConfigError) as info:
        get_retriever("contriever")
    assert str(info.value) == (
        "unknown retriever 'contriever' (rag.retriever); use one of: bm25, dense, random, recency; "
        "add one with @register_retriever('contriever') on a Retriever subclass in runners.retrieval"
    )


def test_unknown_option_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"retriever random: options \['sed'\] are not accepted.*it takes \['seed'\]"):
        get_retriever("random", sed=3)


def test_register_refuses_duplicates_and_plugs_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.RETRIEVERS, "_classes", dict(base.RETRIEVERS._classes))
    with pytest.raises(ConfigError, match="retriever 'bm25' is already registered by BM25Retriever"):
        register_retriever("bm25")(type("Other", (Retriever,), {}))

    @register_retriever("first")
    class First(Retriever):
        def _index(self, items, task, corpus, user_id, digest, cache_dir):
            return base.EmptyIndex(retriever=self.name, size=0)

    assert isinstance(get_retriever("first"), First) and First.name == "first"


# ------------------------------------------------------------------------------- k


def test_k_larger_than_history_warns_once_and_returns_all() -> None:
    index = build("bm25", texts("red apple", "green pear"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sorted(index.top_k("apple", 5)) == [0, 1]
        assert sorted(index.top_k("pear", 7)) == [0, 1]
    assert len(caught) == 1
    assert caught[0].category is RetrievalWarning
    assert caught[0].filename == __file__  # stacklevel points at the caller
    assert str(caught[0].message) == (
        "retriever bm25: rag.k=5 exceeds the 2 history items of user u1; using all 2 (said once per user)"
    )


def test_k_zero_bad_k_and_empty_history() -> None:
    index = build("recency", texts("a"))
    assert index.top_k("q", 0) == []
    with pytest.raises(ConfigError, match=r"rag.k=-1 must be an integer >= 0"):
        index.top_k("q", -1)
    for name in ("bm25", "dense", "recency", "random"):
        empty = build(name, ([], []))
        assert empty.top_k("q", 0) == [] and empty.nbytes == 0
        with pytest.warns(RetrievalWarning):
            assert empty.top_k("q", 2) == []


def test_items_and_corpus_must_align() -> None:
    items, _ = texts("a", "b")
    with pytest.raises(ConfigError, match="2 history items but 1 corpus documents"):
        get_retriever("bm25").build(items, "generic", ["a"])


# ------------------------------------------------------------------------------- cache


def test_cache_builds_once_and_returns_the_same_index(tmp_path: Path) -> None:
    items, corpus = texts("red apple", "green pear")
    cache = IndexCache(tmp_path)
    first = cache.get_or_build("bm25", items, "generic", corpus, user_id="u1")
    second = cache.get_or_build("bm25", items, "generic", corpus, user_id="u1", k1=1.5)  # the default
    assert second is first
    assert (cache.builds, cache.hits) == (1, 1)
    assert cache.get_or_build("bm25", items, "generic", corpus, k1=1.2) is not first
    other_times = [HistoryItem(text=i.text, time="2020-01-01") for i in items]
    assert cache.get_or_build("bm25", other_times, "generic", corpus) is not first
    assert cache.builds == 3


def test_cache_evicts_least_recently_used() -> None:
    cache = IndexCache(persist=False, max_entries=2)
    a, b, c = (texts(word) for word in ("apple", "pear", "plum"))
    index_a = cache.get_or_build("recency", a[0], "generic", a[1])
    cache.get_or_build("recency", b[0], "generic", b[1])
    assert cache.get_or_build("recency", a[0], "generic", a[1]) is index_a  # a is now most recent
    cache.get_or_build("recency", c[0], "generic", c[1])  # evicts b
    assert len(cache) == 2
    cache.get_or_build("recency", b[0], "generic", b[1])
    assert cache.builds == 4


def test_default_cache_dir_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERS_SEARCH_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "retrieval"
    assert IndexCache().directory == tmp_path / "retrieval"
    monkeypatch.delenv("PERS_SEARCH_HOME")
    assert default_cache_dir() == Path("~/.cache/pers-search/retrieval").expanduser()
    assert IndexCache(persist=False).directory is None


def test_bm25_over_a_history_of_stop_words_ranks_in_stored_order():
    """bm25s cannot index an empty vocabulary (a history of "a", "ok"); such a user still gets items."""
    index = build("bm25", texts("a", "the", "is"))
    assert index.top_k("what is it", 2) == [0, 1] and index.nbytes == 0
    assert build("bm25", texts("a", "cats purr")).top_k("cats", 1) == [1]  # one item with a word: scored as ever
