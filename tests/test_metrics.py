"""Metrics: hand-checked ROUGE, Persona-F1, LaMP scores, the registry and storage sizes."""

from __future__ import annotations

import json
import math
import os
import struct
from collections import Counter

import pytest

from runners.errors import ConfigError, DataError
from runners.metrics import (
    LAMP_LABELS,
    Metric,
    classification_scores,
    content_counter,
    file_bytes,
    get_metric,
    persona_f1,
    persona_f1_mean,
    rating_scores,
    register_metric,
    rouge_per_item,
    rouge_scores,
    safetensors_bytes,
    score,
    tokenize,
)
from runners.metrics import base

# --- ROUGE -----------------------------------------------------------------------------------


def test_rouge_identical_and_disjoint():
    assert rouge_scores(["the cat sat"], ["the cat sat"]) == {"rouge1": 1.0, "rougeL": 1.0}
    assert rouge_scores(["dogs bark loudly"], ["the cat sat"]) == {"rouge1": 0.0, "rougeL": 0.0}


def test_rouge_partial_by_hand():
    # pred "the cat sat" (3 tokens), ref "the cat ran away" (4 tokens): overlap {the, cat} = 2,
    # LCS "the cat" = 2. P = 2/3, R = 2/4, F = 2PR/(P+R) = (2/3)/(7/6) = 4/7 for both.
    values = rouge_scores(["the cat sat"], ["the cat ran away"])
    assert values["rouge1"] == pytest.approx(4 / 7)
    assert values["rougeL"] == pytest.approx(4 / 7)


def test_rougeL_uses_order_rouge1_does_not():
    # Same three words reordered: unigram overlap 3/3 -> rouge1 = 1; LCS of "cat the sat" and
    # "the cat sat" is 2 ("the sat" or "cat sat") -> P = R = 2/3 -> rougeL = 2/3.
    values = rouge_scores(["cat the sat"], ["the cat sat"])
    assert values["rouge1"] == pytest.approx(1.0)
    assert values["rougeL"] == pytest.approx(2 / 3)


def test_rouge_stems_and_lowercases():
    # Porter stemming maps "running" to "run"; the tokenizer lower-cases and drops punctuation.
    assert rouge_scores(["running"], ["run"])["rouge1"] == 1.0
    assert rouge_scores(["Hello, World!"], ["hello world"])["rougeL"] == 1.0


def test_rouge_per_item_and_mean():
    per_item = rouge_per_item(["the cat sat", "a b", "x"], ["the cat sat", "a c", "y"])
    # pair 2: overlap 1 of 2 on each side -> P = R = 1/2 -> F = 1/2.
    assert per_item["rouge1"] == pytest.approx([1.0, 0.5, 0.0])
    assert per_item["rougeL"] == pytest.approx([1.0, 0.5, 0.0])
    assert rouge_scores(["the cat sat", "a b", "x"], ["the cat sat", "a c", "y"])["rouge1"] == pytest.approx(0.5)


def test_rouge_rejects_misaligned_and_empty():
    with pytest.raises(DataError, match="got 2 predictions and 1 references"):
        rouge_scores(["a", "b"], ["a"])
    with pytest.raises(DataError, match="nothing to score"):
        rouge_scores([], [])


# --- Persona-F1 ------------------------------------------------------------------------------

CONTENT = "I love hiking in the mountains. Hiking is my passion!"
# -> lower-case, punctuation to spaces, stop words (i, in, the, is, my) dropped:
#    hiking x2, love, mountains, passion -> 5 tokens.


def test_tokenize_drops_stop_words_and_punctuation():
    assert tokenize(CONTENT) == ["love", "hiking", "mountains", "hiking", "passion"]
    # ASCII and Unicode punctuation become spaces: "well-known" splits, curly quotes, the em dash
    # and the ellipsis vanish; "the", "is" and "well" are stop words in scikit-learn's list.
    assert tokenize("The \u201cwell-known\u201d trail\u2014is STEEP\u2026") == ["known", "trail", "steep"]


def test_persona_f1_by_hand():
    # pred tokens: "Hiking in the Alps, what a passion." -> hiking, alps, passion (3 tokens;
    # in, the, what, a are stop words). Common with CONTENT: hiking 1, passion 1 -> 2.
    # P = 2/3, R = 2/5, F1 = 2PR/(P+R) = (8/15)/(16/15) = 1/2 -> 50 percent.
    assert persona_f1("Hiking in the Alps, what a passion.", CONTENT) == pytest.approx(50.0)


def test_persona_f1_counts_repeats_and_zero_overlap():
    # pred "hiking hiking hiking love" (4 tokens): common = min(3, 2) hiking + 1 love = 3;
    # P = 3/4, R = 3/5, F1 = (2 * 9/20)/(27/20) = 2/3 -> 66.67 percent.
    assert persona_f1("hiking hiking hiking love", CONTENT) == pytest.approx(200 / 3)
    # Only stop words and punctuation: no tokens, no overlap -> 0.
    assert persona_f1("The, and of it!", CONTENT) == 0.0
    assert persona_f1("hiking", "") == 0.0


def test_persona_f1_identical_is_100_percent():
    assert persona_f1(CONTENT, CONTENT) == pytest.approx(100.0)


def test_persona_f1_mean_with_cached_counter():
    counts = content_counter(CONTENT)
    assert counts == Counter({"hiking": 2, "love": 1, "mountains": 1, "passion": 1})
    # 50 and 0 ("nothing relevant" -> "relevant" only, no overlap) -> mean 25.
    preds = ["Hiking in the Alps, what a passion.", "nothing relevant"]
    assert persona_f1_mean(preds, counts) == pytest.approx(25.0)
    assert persona_f1_mean(preds, CONTENT) == pytest.approx(25.0)
    with pytest.raises(DataError, match="nothing to score"):
        persona_f1_mean([], counts)


def test_persona_metric_needs_content():
    with pytest.raises(ConfigError, match="persona_f1 needs user_content="):
        get_metric("persona_f1").compute(["x"], ["y"])


# --- LaMP ------------------------------------------------------------------------------------


def test_lamp_label_lists():
    assert LAMP_LABELS["LaMP_1"] == ("[1]", "[2]")
    assert len(LAMP_LABELS["LaMP_2"]) == 15 and "true story" in LAMP_LABELS["LaMP_2"]
    assert len(LAMP_LABELS["LaMP_2N"]) == 15 and "food & drink" in LAMP_LABELS["LaMP_2N"]


def test_lamp_classification_invalid_prediction_is_wrong_not_a_class():
    # preds map to [0, 1, -1] (" [1] " is stripped; "3" is invalid), golds to [0, 0, 1].
    # accuracy = 1/3. Macro-F1 over labels {0, 1} only:
    #   class 0: TP 1, FP 0, FN 1 -> P 1, R 1/2, F 2/3;  class 1: TP 0 -> F 0;  mean 1/3.
    # Were -1 a class, the mean would be over three classes: (2/3 + 0 + 0)/3 = 2/9.
    values = classification_scores("LaMP_1", [" [1] ", "[2]", "3"], ["[1]", "[1]", "[2]"])
    assert values["accuracy"] == pytest.approx(1 / 3)
    assert values["f1"] == pytest.approx(1 / 3)


def test_lamp_classification_absent_labels_count_as_zero():
    # LaMP_2 has 15 tags; only "comedy" is predicted and correct: F1 1 for it, 0 for the other 14.
    values = classification_scores("LaMP_2", ["comedy", "nonsense"], ["comedy", "comedy"])
    assert values["accuracy"] == pytest.approx(0.5)
    # comedy: TP 1, FN 1 -> P 1, R 1/2, F 2/3; mean over 15 labels = (2/3)/15.
    assert values["f1"] == pytest.approx((2 / 3) / 15)


def test_lamp_classification_rejects_bad_gold_and_task():
    with pytest.raises(DataError, match="reference label 'maybe' is not one of"):
        classification_scores("LaMP_1", ["[1]"], ["maybe"])
    with pytest.raises(ConfigError, match="task 'LaMP_4' has no label list"):
        classification_scores("LaMP_4", ["[1]"], ["[1]"])


def test_lamp_rating_with_fallback():
    # "five" for gold 2: |1-2| = 1 is not > |5-2| = 3 -> worst extreme 5.0.
    # errors: |4-5| = 1, |5-2| = 3, |2-2| = 0 -> MAE 4/3, RMSE sqrt((1+9+0)/3) = sqrt(10/3).
    values = rating_scores(["4", "five", " 2 "], ["5", "2", "2"])
    assert values["mae"] == pytest.approx(4 / 3)
    assert values["rmse"] == pytest.approx(math.sqrt(10 / 3))
    # gold 4: |1-4| = 3 > |5-4| = 1 -> fallback 1.0, error 3; "nan" is treated as unparsable.
    assert rating_scores(["??"], ["4"]) == {"mae": 3.0, "rmse": 3.0}
    assert rating_scores(["nan"], ["4"]) == {"mae": 3.0, "rmse": 3.0}


# --- score() ---------------------------------------------------------------------------------


def test_score_keys_per_task():
    assert set(score("generic", ["a b"], ["a b"])) == {"rouge1", "rougeL"}
    assert set(score("LaMP_1", ["[1]"], ["[1]"])) == {"rouge1", "rougeL", "accuracy", "f1"}
    assert set(score("LaMP_2N", ["sports"], ["sports"])) == {"rouge1", "rougeL", "accuracy", "f1"}
    assert set(score("LaMP_3", ["3"], ["3"])) == {"rouge1", "rougeL", "mae", "rmse"}
    assert set(score("LaMP_5", ["t"], ["t"])) == {"rouge1", "rougeL"}


def test_score_with_content():
    values = score("demo", ["Hiking in the Alps, what a passion."], ["hiking in the alps"], user_content=CONTENT)
    assert values["persona_f1"] == pytest.approx(50.0)
    # rouge1: pred tokens hiking in the alps what a passion (7), ref 4, overlap 4:
    # P 4/7, R 1 -> F = (8/7)/(11/7) = 8/11.
    assert values["rouge1"] == pytest.approx(8 / 11)
    assert score("demo", ["x"], ["x"], user_content=content_counter(CONTENT))["persona_f1"] == 0.0


def test_score_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'LaMP_9'.*use one of generic, demo, meddialogue, LaMP_1"):
        score("LaMP_9", ["x"], ["x"])


# --- registry --------------------------------------------------------------------------------


@pytest.fixture
def scratch_registry(monkeypatch):
    monkeypatch.setattr(base.METRICS, "_classes", dict(base.METRICS._classes))


def test_registry_lookup_and_duplicate(scratch_registry):
    @register_metric("length_ratio")
    class LengthRatio(Metric):
        def compute(self, preds, refs, **context):
            return {"length_ratio": sum(map(len, preds)) / sum(map(len, refs))}

    assert LengthRatio.name == "length_ratio"
    assert get_metric("length_ratio").compute(["ab"], ["abcd"]) == {"length_ratio": 0.5}
    expected = r"metric 'rouge' is already registered by RougeMetric \(runners.metrics.rouge\)"
    with pytest.raises(ConfigError, match=expected):

        @register_metric("rouge")
        class Other(Metric):
            def compute(self, preds, refs, **context):
                return {}


def test_registry_miss_lists_names():
    with pytest.raises(ConfigError) as info:
        get_metric("bleu")
    message = str(info.value)
    assert "unknown metric 'bleu'; use one of: copy_rate, lamp_classification, lamp_rating, persona_f1, rouge" in message
    assert "@runners.metrics.register_metric('bleu')" in message


def test_registry_refuses_non_metric(scratch_registry):
    with pytest.raises(ConfigError, match="is not a Metric subclass"):
        register_metric("plain")(dict)


# --- storage ---------------------------------------------------------------------------------


def _header_len(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return n, header


def test_safetensors_bytes_fp16(tmp_path):
    torch = pytest.importorskip("torch")
    small, large = tmp_path / "small.safetensors", tmp_path / "sub" / "large.safetensors"
    n_small = safetensors_bytes({"w": torch.ones(100, dtype=torch.float32)}, small)
    n_large = safetensors_bytes({"w": torch.ones(200, dtype=torch.float32)}, large)
    assert n_small == os.path.getsize(small) and n_large == os.path.getsize(large)
    for path, n_elements, size in ((small, 100, n_small), (large, 200, n_large)):
        header_len, header = _header_len(path)
        assert header["w"]["dtype"] == "F16"
        assert size == 8 + header_len + 2 * n_elements  # header + 2 bytes per element
    # Same header length (shapes [100]/[200], offsets 200/400 have equal digits): 100 more fp16s.
    assert n_large - n_small == 200


def test_safetensors_bytes_keeps_integers_and_views(tmp_path):
    torch = pytest.importorskip("torch")
    weight = torch.zeros(4, 8)
    path = tmp_path / "a.safetensors"
    size = safetensors_bytes({"a": weight[:2], "b": weight[2:], "idx": torch.arange(3)}, path)
    header_len, header = _header_len(path)
    assert header["idx"]["dtype"] == "I64" and header["a"]["dtype"] == "F16"
    assert size == 8 + header_len + 2 * 16 + 2 * 16 + 8 * 3


def test_file_bytes(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "x.bin").write_bytes(b"12345")
    (tmp_path / "d" / "e" / "y.bin").write_bytes(b"123")
    assert file_bytes(tmp_path / "d" / "x.bin") == 5
    assert file_bytes(tmp_path / "d") == 8
    with pytest.raises(DataError, match="does not exist"):
        file_bytes(tmp_path / "missing")


def test_session_persona_content_is_profile_and_history_once_per_user():
    from runners.data.pairs import memory_texts
    from runners.session import Session
    from search.study.setup import trial_setup
    from search.space import load_space

    session = Session(trial_setup(load_space("tiny.yaml")))
    user = session.splits[0].user
    content = session.persona_content(user)
    expected = Counter(tokenize("\n".join([user.profile, *memory_texts(session.task, user.history)])))
    assert content == expected and sum(content.values()) > 50
    assert session.persona_content(user) is content  # computed once, reused by every trial
