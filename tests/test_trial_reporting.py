"""What a trial reports beyond its means: standard errors, and checkpoints while it trains (tiny model)."""

from __future__ import annotations

import glob
import json
import tempfile

import pytest

from runners.errors import ConfigError, TrialStopped
from runners.spec import MonitorSpec, TrialConfig
from runners.trial import run_trial
from search.cli import main

MEMORY = TrialConfig(layers=(0, 1, 2, 3), count=1, rank=2)


def test_every_per_query_metric_carries_its_standard_error(tiny_setup):
    result = run_trial(MEMORY, tiny_setup)
    m = result.metrics
    for key in ("rougeL", "rouge1", "persona_f1"):
        assert m[f"{key}_se"] >= 0.0 and all(f"{key}_se" in u.metrics for u in result.users)
        assert all(len(u.query_scores[key]) == u.metrics["n_queries"] for u in result.users)
        assert m[key] == pytest.approx(sum(sum(u.query_scores[key]) / len(u.query_scores[key])
                                           for u in result.users) / len(result.users))
    assert "storage_bytes_se" not in m and "loss_se" not in m


@pytest.mark.parametrize("config", [MEMORY, TrialConfig(rag_k=2, retriever="recency")], ids=["memory", "retrieval"])
def test_test_answers_come_from_the_same_trained_user(tiny_setup, config):
    both = run_trial(config, tiny_setup, test=True)
    alone = run_trial(config, tiny_setup)
    tested = run_trial(config, tiny_setup, split="test")
    for key in ("rougeL", "rougeL_se", "persona_f1", "loss", "heldout_loss", "storage_bytes", "n_queries"):
        assert both.metrics[key] == pytest.approx(alone.metrics[key], abs=1e-6), key  # validation unchanged
    for key in ("rougeL", "rougeL_se", "persona_f1", "loss", "storage_bytes", "n_queries", "n_users"):
        assert both.test_metrics[key] == pytest.approx(tested.metrics[key], abs=1e-6), key
    assert [u.test.predictions for u in both.users] == [u.predictions for u in tested.users]
    assert not alone.test_metrics and all(u.test is None for u in alone.users)
    assert both.to_dict()["test_metrics"]["n_queries"] == tested.metrics["n_queries"]
    with pytest.raises(ConfigError, match="test=True .* needs split='val'"):
        run_trial(config, tiny_setup, split="test", test=True)


def test_checkpoints_report_the_cohort_so_far(tiny_setup):
    seen = []
    result = run_trial(MEMORY, tiny_setup, monitor=MonitorSpec(every=1, generate_every=2, queries=1),
                       report=seen.append)
    steps = [int(u.metrics["train_steps"]) for u in result.users]
    assert [c.key for c in seen] == [f"u{i}:s{s}" for i, n in enumerate(steps) for s in range(1, n + 1)]
    assert [c.trained_steps for c in seen] == list(range(1, sum(steps) + 1))
    assert all("loss" in c.metrics for c in seen)
    generated = [c for c in seen if "rougeL" in c.metrics]
    assert [c.step for c in generated if c.user_index == 0] == list(range(1, steps[0] + 1, 2))
    second = next(c for c in generated if c.user_index == 1)
    own = 2 * second.metrics["rougeL"] - result.users[0].metrics["rougeL"]  # the mean with user 0's final value
    assert -1e-9 <= own <= 1 + 1e-9
    assert "rougeL_se" in second.metrics


def test_a_report_that_raises_stops_the_trial_and_leaves_nothing_behind(tiny_setup):
    before = set(glob.glob(f"{tempfile.gettempdir()}/pers-search-adapter-*"))

    def stop(checkpoint):
        raise TrialStopped(checkpoint, "enough")

    with pytest.raises(TrialStopped) as info:
        run_trial(MEMORY, tiny_setup, monitor=MonitorSpec(every=1), report=stop)
    assert info.value.checkpoint.key == "u0:s1" and info.value.reason == "enough"
    # nothing new (stale directories of killed trials may have been swept: runners/scratch.py)
    assert not set(glob.glob(f"{tempfile.gettempdir()}/pers-search-adapter-*")) - before
    plain = run_trial(TrialConfig(), tiny_setup)  # the base model is clean again
    assert plain.metrics["n_users"] == 2


def test_cli_early_stopping_records_pruned_trials(tmp_path):
    code = main(["run", "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", "4", "--init-trials", "4",
                 "--early-stop", "--set", "early_stopping.every=1", "--set", "early_stopping.min_steps=1",
                 "--set", "early_stopping.confidence=0.51", "--set", "lora.count=1",
                 "--study", "es", "--study-dir", str(tmp_path), "--no-mlflow", "--no-test"])
    assert code == 0
    stored = json.loads((tmp_path / "es" / "study.json").read_text())
    assert stored["space"]["early_stopping"]["enabled"] is True
    trials = stored["trials"]
    assert all(t["user_attrs"].get("curve") for t in trials), "every trial reports its learning curve"
    for t in trials:
        if t["state"] == "pruned":
            assert t["user_attrs"]["pruned"]["reason"].startswith("dominated at checkpoint")
    assert len([t for t in trials if t["state"] in ("completed", "pruned")]) == 4


def test_a_trial_failing_before_training_leaves_no_temporary_directory(tiny_setup, monkeypatch):
    import runners.trial

    def broken(*args, **kwargs):
        raise RuntimeError("cannot attach")

    monkeypatch.setattr(runners.trial, "attach_memory", broken)
    before = set(glob.glob(f"{tempfile.gettempdir()}/pers-search-adapter-*"))
    with pytest.raises(RuntimeError, match="cannot attach"):
        run_trial(MEMORY, tiny_setup)
    assert set(glob.glob(f"{tempfile.gettempdir()}/pers-search-adapter-*")) == before
