"""Real trials on the embedded SmolLM2-135M-Instruct and the demo data (marked slow)."""

from __future__ import annotations

import pytest

from runners.spec import TrialConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded_setup():
    from runners.spec import TrialSetup

    return TrialSetup.from_dicts(
        {"name": "smollm2-135m-instruct"},
        {"source": "demo", "users": 2, "max_val_queries": 3},
        {"epochs": 1, "max_steps": 2, "max_seq_len": 128, "max_new_tokens": 24},
    )


def test_real_trial_trains_and_scores(embedded_setup):
    from runners.trial import run_trial

    result = run_trial(TrialConfig(layers=tuple(range(30)), count=2, rank=4), embedded_setup)
    m = result.metrics
    assert m["n_users"] == 2 and m["train_steps"] == 2 * 2 * 2
    # SmolLM2: 30 layers x (gate 576->1536, up 576->1536, down 1536->576) x n*r = 8
    assert m["trainable_params"] == 8 * 30 * 3 * (576 + 1536)
    assert m["storage_bytes"] > 2 * m["trainable_params"]
    assert all(p.strip() for u in result.users for p in u.predictions), "the real model must say something"
    assert 0.0 <= m["rougeL"] <= 1.0 and m["loss"] > 0


def test_rag_bm25_beats_non_personalized(embedded_setup):
    from runners.trial import run_trial

    plain = run_trial(TrialConfig(), embedded_setup).metrics["rougeL"]
    rag = run_trial(TrialConfig(rag_k=4, retriever="bm25"), embedded_setup).metrics["rougeL"]
    print(f"\nROUGE-L on validation queries: non-personalized {plain:.4f}  RAG bm25 k=4 {rag:.4f}")
    assert rag > plain


def test_short_real_study_with_saas_nehvi(tmp_path):
    """The main job in miniature: SmolLM2, demo data, Sobol start then one SAAS-qLogNEHVI trial."""
    import json

    from search.cli import main

    code = main(["run", "--space", "milp.yaml", "--trials", "3", "--init-trials", "2",
                 "--set", "training.max_steps=1", "--set", "data.users=1", "--set", "data.max_val_queries=2",
                 "--set", "optimizer.nuts={warmup: 16, samples: 8, thinning: 2}",
                 "--study", "mini", "--study-dir", str(tmp_path), "--no-mlflow"])
    assert code == 0
    trials = json.loads((tmp_path / "mini" / "study.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["completed"] * 3
    assert trials[2]["suggest_seconds"] > 0, "the third trial comes from the SAAS model"
    assert any(t["test_values"] for t in trials), "the front is evaluated on the test queries"


def test_peft_alone_beats_non_personalized_beyond_the_interval():
    """milp.yaml's training budget on the demo data: the user's own memory (the space's default
    layers, no retrieval) is ahead of the base model on ROUGE-L and Persona-F1, with paired 95%
    intervals (bootstrap over users, then queries) that exclude 0 (issue 12's bar)."""
    from runners.metrics.uncertainty import paired_difference_interval
    from runners.trial import run_trial
    from search.study.setup import bind_to_model
    from search.space import load_space

    space, setup = bind_to_model(load_space("milp.yaml").with_overrides(["data.users=3"]))
    memory = TrialConfig.from_flat(space.defaults(), len(space.defaults()["lora.layers"]))
    assert memory.has_memory and memory.rag_k == 0
    base = run_trial(TrialConfig(), setup)
    peft = run_trial(memory, setup)
    for metric in ("rougeL", "persona_f1"):
        a = [list(u.query_scores[metric]) for u in peft.users]
        b = [list(u.query_scores[metric]) for u in base.users]
        diff = paired_difference_interval(a, b)
        print(f"\n{metric}: PEFT {peft.metrics[metric]:.3f} vs base {base.metrics[metric]:.3f}, "
              f"difference {diff.format(3)} over {diff.n_users} users, {diff.n_queries} queries")
        assert diff.low > 0, f"{metric}: PEFT's lead {diff.format(3)} is within the noise"
    assert peft.metrics["rougeL"] >= 1.5 * base.metrics["rougeL"]
