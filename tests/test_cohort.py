"""The cohort adapter: one LoRA on the cohort's pooled histories, as a baseline and as a base (tiny model)."""

from __future__ import annotations

import dataclasses

import pytest

from runners.cohort import cohort_dir, cohort_steps, ensure_cohort_adapter
from runners.errors import ConfigError
from runners.memory import ADAPTER_FILE
from runners.session import session_for
from runners.spec import TrainSpec, TrialConfig
from runners.trial import run_trial

MEMORY = TrialConfig(layers=(2, 3), count=1, rank=2)


def test_the_cohort_budget_is_the_per_user_examples_summed():
    spec = TrainSpec(epochs=4, batch_size=8, min_steps=8, max_steps=8)
    # a 2-item user: 8 steps of 2 examples (16); a 50-item user: 8 steps of 8 (64); 80 / 8 = 10 steps
    assert cohort_steps([2, 50], spec) == 10
    no_floor = dataclasses.replace(spec, min_steps=0, max_steps=None)
    assert cohort_steps([2, 2, 2], no_floor) == 3  # 4 passes over 2 items each: 24 examples, 3 batches of 8


def test_trained_once_per_setup_and_merged_exactly(tiny_setup):
    import torch
    from peft import PeftModel

    session = session_for(tiny_setup)
    directory = ensure_cohort_adapter(session)
    assert directory == cohort_dir(tiny_setup) and (directory / ADAPTER_FILE).exists()
    stamp = (directory / ADAPTER_FILE).stat().st_mtime_ns
    assert ensure_cohort_adapter(session) == directory and (directory / ADAPTER_FILE).stat().st_mtime_ns == stamp
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    merged = session.cohort_model(ids).logits
    import copy

    peft = PeftModel.from_pretrained(copy.deepcopy(session.loaded.model), str(directory)).eval()
    with torch.no_grad():
        assert torch.allclose(merged, peft(ids).logits, atol=1e-4)
        assert not torch.allclose(merged, session.loaded.model(ids).logits, atol=1e-4)  # it learnt something


def test_a_trial_on_the_cohort_adapter_alone_and_with_memory(tiny_setup):
    import torch

    session = session_for(tiny_setup)
    base_before = [p.detach().clone() for p in session.loaded.model.parameters()]
    plain = run_trial(TrialConfig(), tiny_setup)
    cohort = run_trial(TrialConfig(base="cohort"), tiny_setup)
    cohort_before = [p.detach().clone() for p in session.cohort_model.parameters()]
    on_top = run_trial(dataclasses.replace(MEMORY, base="cohort"), tiny_setup)
    alone = run_trial(MEMORY, tiny_setup)
    assert cohort.metrics["loss"] != pytest.approx(plain.metrics["loss"], abs=1e-6)
    assert cohort.metrics["storage_bytes"] == 0 and cohort.metrics.get("train_steps", 0) == 0
    assert on_top.metrics["storage_bytes"] == alone.metrics["storage_bytes"] > 0  # the user's own memory only
    assert on_top.metrics["loss"] != pytest.approx(alone.metrics["loss"], abs=1e-6)  # trained on another base
    # neither model keeps anything of a trial: memory is detached from both
    assert all(torch.equal(a, b) for a, b in zip(base_before, session.loaded.model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(cohort_before, session.cohort_model.parameters()))


def test_the_base_is_a_flat_key_and_checked():
    assert TrialConfig.from_flat({"lora.base": "cohort"}).base == "cohort"
    assert TrialConfig().to_flat(2)["lora.base"] == "none"
    assert "on the cohort adapter" in TrialConfig(base="cohort").describe()
    with pytest.raises(ConfigError, match=r"lora.base='teacher': unknown base; use one of \['none', 'cohort'\]"):
        TrialConfig(base="teacher")
    with pytest.raises(ConfigError, match="pool pieces were trained on the base model"):
        TrialConfig(base="cohort", perpcs_top_k=2)


def test_the_users_of_a_per_user_search_share_one_cohort_adapter_of_the_whole_cohort(tiny_setup):
    """A per-user study narrows each user's data to that user; its cohort adapter is still the cohort's."""
    import json

    from search.study.setup import user_setup

    whole = session_for(tiny_setup)
    users = [s.user.user_id for s in whole.splits][:2]
    first, second = (session_for(user_setup(tiny_setup, u)) for u in users)
    assert len(first.splits) == len(second.splits) == 1 and first is not second
    assert first.cohort_model is second.cohort_model is whole.cohort_model  # one merged copy in the process
    info = json.loads((cohort_dir(tiny_setup) / "cohort.json").read_text())
    assert info["users"] == len(whole.splits) > 1  # trained on every user, not on the first one alone
    assert user_setup(user_setup(tiny_setup, users[0]), users[1]).cohort == tiny_setup.data
