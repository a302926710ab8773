"""Training always takes real steps: the warm-up never zeroes a step, a short history gets
``min_steps`` steps, and the exact speed-ups (frozen-prefix cache, labelled-only head,
packing) give the loss of the plain forward."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from runners.batching import collate, pack_examples
from runners.errors import ConfigError
from runners.spec import TrainSpec, TrialSetup
from runners.training import _Forward, lr_factor, planned_steps, scaled_lr, train_phase, warmup_steps


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
    spec = TrainSpec(epochs=1, batch_size=8, max_steps=None, min_steps=4)
    assert planned_steps(2, spec) == 4  # one batch, lifted to min_steps by extra epochs
    assert planned_steps(80, spec) == 10  # enough history: the epochs decide
    assert planned_steps(2, TrainSpec(epochs=1, batch_size=8, max_steps=3, min_steps=4)) == 3  # cap wins
    assert planned_steps(0, spec) == 0
    assert planned_steps(5, TrainSpec(epochs=0, min_steps=4)) == 0
    plain = TrainSpec(epochs=1, batch_size=8, max_steps=None)  # the default floor applies
    assert planned_steps(2, plain) == TrainSpec().min_steps == 8


def test_unknown_training_key_is_an_error():
    with pytest.raises(ConfigError, match="min_step"):
        TrialSetup.from_dicts(training={"min_step": 3})
    with pytest.raises(ConfigError, match="autocast"):
        TrialSetup.from_dicts(training={"autocast": "fp8"})


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
    spec = TrainSpec(epochs=1, batch_size=8, max_steps=None, min_steps=4, lr=1e-3, warmup_ratio=0.1,
                     max_seq_len=64)
    examples = history_examples(tiny.tokenizer, "generic", items, spec, seed=0)
    layout = layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))
    model = attach_memory(tiny.model, layout, MemoryConfig(tuple(range(layout.n_layers)), 1, 4), seed=0)
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

    from runners.spec import TrialConfig
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
    config = TrialConfig.from_flat({"lora.layers": "all", "lora.count": 1, "lora.rank": 4}, n_layers=2)
    result = run_trial(config, setup, adapter_dir=tmp_path / "ad")
    for user in result.users:
        assert user.metrics["train_steps"] == 8  # 4 per MiLP step, although each has one batch
        tensors = load_file(str(tmp_path / "ad" / user.user_id / "adapter_model.safetensors"))
        assert any(float(t.abs().max()) > 0 for name, t in tensors.items() if "lora_B" in name)


def test_the_learning_rate_scales_with_a_short_history():
    spec = TrainSpec(lr=1e-2, lr_full_items=16)
    assert scaled_lr(2, spec) == pytest.approx(1.25e-3)
    assert scaled_lr(16, spec) == scaled_lr(400, spec) == 1e-2
    assert scaled_lr(2, TrainSpec(lr=1e-2)) == 1e-2  # lr_full_items None: the lr as set


def test_a_two_item_history_trains_gently_and_a_long_one_at_full_rate(tiny, demo_examples):
    from runners.memory import MemoryConfig, attach_memory, detach_memory, layout_of

    spec = TrainSpec(epochs=4, batch_size=8, max_steps=8, min_steps=0, lr=1e-2, lr_full_items=16, warmup_ratio=0.0,
                     max_seq_len=96)
    layout = layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))
    model = attach_memory(tiny.model, layout, MemoryConfig(tuple(range(layout.n_layers)), 1, 4), seed=0)
    try:
        short = train_phase(model, demo_examples.pairs[:2], spec, tiny.tokenizer.pad_token_id, tiny.device, "s", 0)
        long = train_phase(model, demo_examples.pairs, spec, tiny.tokenizer.pad_token_id, tiny.device, "l", 0)
    finally:
        detach_memory(model)
    assert short.steps == 4 and short.lrs[0] == pytest.approx(1.25e-3)  # 4 passes over 2 items, lr * 2 / 16
    assert len(demo_examples.pairs) >= 16 and long.steps == 8 and long.lrs[0] == pytest.approx(1e-2)


def test_a_trials_lr_scale_multiplies_the_training_lr(tiny_setup):
    from runners.spec import TrialConfig
    from runners.trial import run_trial

    memory = TrialConfig(layers=(0, 1, 2, 3), count=1, rank=2)
    base = run_trial(TrialConfig(), tiny_setup).metrics["loss"]
    full = run_trial(memory, tiny_setup).metrics["loss"]
    barely = run_trial(TrialConfig(layers=(0, 1, 2, 3), count=1, rank=2, lr_scale=1e-6), tiny_setup).metrics["loss"]
    assert barely == pytest.approx(base, abs=1e-4) and full != pytest.approx(base, abs=1e-4)


def _upper_memory(tiny, first: int):
    from runners.memory import MemoryConfig, attach_memory, layout_of

    layout = layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))
    model = attach_memory(tiny.model, layout, MemoryConfig(tuple(range(first, layout.n_layers)), 1, 4), seed=0)
    torch.manual_seed(1)
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    return model


@pytest.fixture(scope="module")
def demo_examples(tiny):
    from runners.data.demo import demo_dataset
    from runners.history import history_examples

    user = demo_dataset(1).users[0]
    return history_examples(tiny.tokenizer, "demo", user.history, TrainSpec(max_seq_len=96), seed=0)


@pytest.mark.parametrize("kind", ["texts", "pairs"])
def test_frozen_prefix_cache_and_labelled_head_give_the_plain_loss(tiny, demo_examples, kind):
    from runners.memory import detach_memory

    examples = list(getattr(demo_examples, kind))
    pad = tiny.tokenizer.pad_token_id
    model = _upper_memory(tiny, first=2)
    try:
        cached = _Forward(model, examples, TrainSpec(), pad, tiny.device, total=100)
        plain = _Forward(model, examples, TrainSpec(cache_frozen=False), pad, tiny.device, total=100)
        assert cached.first == 2 and cached.cache is not None and plain.cache is None
        params = [p for p in model.parameters() if p.requires_grad]
        for rows in ([0, 1, 2, 3], [2, 3, 7, 9], [0, 1, 2, 3]):  # the third reads the cache only
            reference = model(**collate([examples[i] for i in rows], pad, tiny.device)).loss
            for forward in (plain, cached):
                loss = forward.loss(rows)[0]
                assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)
                grads = torch.autograd.grad(loss, params[-1])[0]
                expected = torch.autograd.grad(model(**collate([examples[i] for i in rows], pad, tiny.device)).loss,
                                               params[-1])[0]
                assert torch.allclose(grads, expected, atol=1e-6)
    finally:
        detach_memory(model)


@pytest.mark.parametrize("kind", ["texts", "pairs"])
def test_packed_rows_keep_examples_apart(tiny, demo_examples, kind):
    from runners.memory import detach_memory

    examples = list(getattr(demo_examples, kind))[:6]
    pad = tiny.tokenizer.pad_token_id
    packed = pack_examples(examples, 10_000)
    assert len(packed) == 1 and len(packed[0].input_ids) == sum(len(e.input_ids) for e in examples)
    model = _upper_memory(tiny, first=0)
    try:
        separate = _Forward(model, examples, TrainSpec(), pad, tiny.device, total=1).loss(list(range(6)))[0]
        together = _Forward(model, packed, TrainSpec(), pad, tiny.device, total=1).loss([0])[0]
    finally:
        detach_memory(model)
    assert float(together) == pytest.approx(float(separate), rel=1e-4)


def test_retrieval_shaped_pairs_hold_other_items(tiny):
    from runners.data.demo import demo_dataset
    from runners.history import history_examples
    from runners.prompts import GENERIC_HEADER

    user = demo_dataset(1).users[0]
    items = user.history[:10]
    bare = history_examples(tiny.tokenizer, "demo", items, TrainSpec(max_seq_len=512), seed=0)
    from runners.history import TrainingRetrieval
    from runners.prompts import corpus_text
    from runners.retrieval.cache import IndexCache

    spec = TrainSpec(max_seq_len=512, max_prompt_tokens=1000)
    index = IndexCache(persist=False).get_or_build("bm25", items, "demo", [corpus_text("demo", i) for i in items])
    with_rag = history_examples(tiny.tokenizer, "demo", items, spec, seed=0, retrieval=TrainingRetrieval(2, index))
    assert len(with_rag.pairs) == len(bare.pairs)
    for plain, rag in zip(bare.pairs, with_rag.pairs):
        prompt = tiny.tokenizer.decode([t for t, label in zip(rag.input_ids, rag.labels) if label == -100])
        answer = tiny.tokenizer.decode([t for t, label in zip(rag.input_ids, rag.labels) if label != -100])
        assert GENERIC_HEADER in prompt
        assert prompt.count("\n- ") == 2
        assert answer.strip() not in prompt  # the item itself is never retrieved for its own pair
        assert [t for t in rag.labels if t != -100] == [t for t in plain.labels if t != -100]


def test_train_rag_k_caps_the_items_of_training_prompts():
    """``training.train_rag_k`` trains on fewer retrieved items than the trial serves with: fewer
    training tokens, the same serving prompts (the evaluation is unchanged by the setting)."""
    from runners.spec import TrialConfig
    from runners.trial import run_trial

    def setup(**training):
        return TrialSetup.from_dicts(
            {"name": "tiny", "dtype": "float32", "device": "cpu"}, {"source": "demo", "users": 1, "max_val_queries": 1},
            {"epochs": 1, "max_steps": 2, "min_steps": 2, "max_new_tokens": 2, "memory_injection": False, **training})

    config = TrialConfig.from_flat({"lora.layers": "all", "lora.count": 1, "lora.rank": 2, "rag.k": 4,
                                    "rag.retriever": "bm25"}, n_layers=2)
    tokens = {}
    for cap in (None, 1):
        result = run_trial(config, setup(train_rag_k=cap))
        tokens[cap] = result.users[0].metrics["train_tokens"]
    bare = run_trial(config, setup(train_rag=False)).users[0].metrics["train_tokens"]
    assert bare < tokens[1] < tokens[None], (bare, tokens)


@pytest.mark.parametrize("outer", [False, True])
def test_bf16_autocast_trains_like_fp32(tiny, demo_examples, outer):
    """Autocast runs per step without its weight-cast cache: one cached context around the loop
    (ours, or a caller's ``outer`` one) kept the initial bf16 copy of the LoRA weights, so every
    forward saw them and training went blind (measured: SmolLM2 ended at loss 4.6, not 1.4)."""
    from runners.memory import detach_memory
    from runners.training import train_phase

    pad = tiny.tokenizer.pad_token_id
    examples = list(demo_examples.pairs)[:4]  # one batch: every step sees the same examples
    losses = {}
    for kind in ("none", "bfloat16"):
        model = _upper_memory(tiny, first=2)
        try:
            spec = TrainSpec(lr=1e-2, max_steps=6, min_steps=6, autocast=kind, batch_size=4)
            context = torch.autocast("cpu", dtype=torch.bfloat16) if outer else contextlib.nullcontext()
            with context:
                losses[kind] = train_phase(model, examples, spec, pad, tiny.device, "it", seed=0).losses
        finally:
            detach_memory(model)
    assert len(losses["bfloat16"]) == 6
    assert losses["none"][-1] < losses["none"][0] - 0.05
    assert losses["bfloat16"][-1] < losses["bfloat16"][0] - 0.05
    assert losses["bfloat16"][-1] == pytest.approx(losses["none"][-1], rel=0.02)


def test_the_recipe_for_little_history_leaves_every_demo_user_as_it_was():
    """milp.yaml's min_steps 0 and lr_full_items 16 change nothing for the demo users (18+ training
    items): the same steps and lr as the recipe before issue 35 (min_steps 8), so its demo figures stand."""
    import dataclasses

    from runners.data.demo import demo_dataset
    from runners.data.splits import split_dataset
    from search.space import load_space

    now = load_space("milp.yaml").training
    before = dataclasses.replace(now, min_steps=8, lr_full_items=None)
    splits = split_dataset(demo_dataset(24), seed=0, heldout_fraction=0.1)
    for n in (len(s.train) for s in splits):
        assert (planned_steps(n, now), scaled_lr(n, now)) == (planned_steps(n, before), scaled_lr(n, before)) == (8, 1e-2)
    two = planned_steps(2, now), scaled_lr(2, now)
    assert two == (4, pytest.approx(1.25e-3)) and planned_steps(2, before) == 8
