"""Training always takes real steps: the warm-up never zeroes a step, and a short history
gets ``min_steps`` optimiser steps."""

from __future__ import annotations

import dataclasses
import json

import pytest

from runners.spec import TrainSpec, TrialSetup
from runners.training import EXTRA_DEFAULTS, lr_factor, planned_steps, setting, warmup_steps


@dataclasses.dataclass(frozen=True)
class QualityTrainSpec(TrainSpec):
    min_steps: int = 8

def test_warmup_is_floor_of_ratio():
    assert warmup_steps(4, 0.1) == 0
    assert warmup_steps(10, 0.1) == 1
    assert warmup_steps(64, 0.1) == 6
    assert warmup_steps(1, 1.0) == 0  # never every step


@pytest.mark.parametrize("total", [1, 2, 3, 4, 10, 11, 64])
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.5, 1.0])
def test_every_step_has_a_positive_learning_rate(total, ratio):
    warmup = warmup_steps(total, ratio)
    factors = [lr_factor(s, warmup, total) for s in range(total)]
    assert all(f > 0 for f in factors)
    assert max(factors) == pytest.approx(1.0)
    assert factors[warmup] == pytest.approx(1.0)


def test_planned_steps_floor_and_cap():
    spec = QualityTrainSpec(epochs=1, batch_size=8, max_steps=None, min_steps=4)
    assert planned_steps(2, spec) == 4  # one batch, lifted to min_steps by extra epochs
    assert planned_steps(80, spec) == 10  # enough history: the epochs decide
    assert planned_steps(2, QualityTrainSpec(epochs=1, batch_size=8, max_steps=3, min_steps=4)) == 3  # cap wins
    assert planned_steps(0, spec) == 0
    assert planned_steps(5, QualityTrainSpec(epochs=0, min_steps=4)) == 0
    plain = TrainSpec(epochs=1, batch_size=8, max_steps=None)  # no min_steps field: the default applies
    assert setting(plain, "min_steps") == EXTRA_DEFAULTS["min_steps"]
    assert planned_steps(2, plain) == EXTRA_DEFAULTS["min_steps"]


@pytest.fixture(scope="module")
def tiny():
    from runners.models import load_model
    from runners.spec import ModelSpec

    return load_model(ModelSpec(name="tiny", dtype="float32", device="cpu"))


def _lora_b(model):
    return [p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n]


@pytest.mark.parametrize("n_items", [1, 2])
def test_short_history_changes_the_lora(tiny, n_items):
    from runners.data.types import HistoryItem
    from runners.history import history_examples, train_on_history
    from runners.memory import MemoryConfig, attach_memory, detach_memory, layout_of

    items = [HistoryItem(input="How is your dog doing today?", output="Biscuit the dog is doing great, cool beans!"),
             HistoryItem(text="Took Biscuit the dog to the park and we walked for hours in the sun.")][:n_items]
    spec = QualityTrainSpec(epochs=1, batch_size=8, max_steps=None, min_steps=4, lr=1e-3, warmup_ratio=0.1,
                            max_seq_len=64)
    examples = history_examples(tiny.tokenizer, "generic", items, spec, seed=0)
    layout = layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))
    model = attach_memory(tiny.model, layout, MemoryConfig((1, 1, 1, 1), 1, 4), seed=0)
    try:
        before = _lora_b(model)
        assert all(float(b.abs().max()) == 0.0 for b in before)  # PEFT starts B at zero
        phases = train_on_history(model, examples, spec, tiny.tokenizer.pad_token_id, tiny.device, seed=0)
        after = _lora_b(model)
    finally:
        detach_memory(model)
    assert [p.steps for p in phases] == [4, 4]
    for phase in phases:
        assert phase.lrs[0] > 0
        assert all(lr > 0 for lr in phase.lrs)
    assert any(float(a.abs().max()) > 0 for a in after)


def test_trial_on_two_item_users_trains_and_changes_the_adapter(tmp_path):
    """The trial runner as it is (plain TrainSpec from a space): 2 history items, 1 batch."""
    from safetensors.torch import load_file

    from runners.trial import run_trial

    users = [{"user_id": f"u{i}", "profile": "I keep bees.",
              "history": [{"input": "Doctor: how are you feeling?", "output": f"My bees stung me {i} times today."},
                          {"input": "Doctor: any fever?", "output": "No fever, but my honey jars are all empty."}],
              "queries": [{"input": "Doctor: anything else?", "output": "The bees are calm again."}]} for i in range(2)]
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(json.dumps(u) for u in users) + "\n")
    setup = TrialSetup.from_dicts(
        {"name": "tiny", "dtype": "float32", "device": "cpu"},
        {"source": str(path), "format": "jsonl", "heldout_fraction": 0.0},
        {"epochs": 1, "max_steps": 4, "max_seq_len": 64, "batch_size": 8, "lr": 5e-4, "warmup_ratio": 0.1,
         "max_new_tokens": 4, "max_prompt_tokens": 96},
    )
    result = run_trial({"lora.layers": "all", "lora.count": 1, "lora.rank": 4}, setup, adapter_dir=tmp_path / "ad")
    for user in result.users:
        assert user.metrics["train_steps"] == 8  # 4 per MiLP step, although each has one batch
        tensors = load_file(str(tmp_path / "ad" / user.user_id / "adapter_model.safetensors"))
        assert any(float(t.abs().max()) > 0 for name, t in tensors.items() if "lora_B" in name)
