"""The answer loss reads the vocabulary projection at the answer positions alone, and equals the full one."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def tiny():
    from runners.models import load_model
    from runners.spec import ModelSpec

    return load_model(ModelSpec(name="tiny", dtype="float32", device="cpu"))


def _pairs(tok):
    from runners.batching import pair_example

    texts = [("Where did you walk the dog today?", "To the park by the river, twice."),
             ("What did you bake?", "Sourdough."),
             ("Which book are you reading this week, and is it any good?", "A thriller; I cannot put it down at all.")]
    return [pair_example(tok, q, a, 64) for q, a in texts]


def _full_logits_loss(model, examples, pad_id):
    """The reference: the model's own loss (its full logits), token-weighted over one batch."""
    import torch

    from runners.batching import collate

    batch = collate(examples, pad_id, "cpu")
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return float(out.loss)


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_answer_loss_equals_the_full_logits_loss(tiny, batch_size):
    from runners.training import _causal_lm_parts, answer_loss

    assert _causal_lm_parts(tiny.model) is not None  # the labelled-positions path is the one measured
    examples = _pairs(tiny.tokenizer)
    got = answer_loss(tiny.model, examples, tiny.tokenizer.pad_token_id, "cpu", batch_size)
    assert got == pytest.approx(_full_logits_loss(tiny.model, examples, tiny.tokenizer.pad_token_id), rel=1e-5)


def test_answer_loss_with_a_memory_attached_sees_the_memory(tiny):
    """On a PEFT-wrapped model the decoder it runs carries the LoRA: the loss moves with the adapter."""
    import torch

    from runners.memory import MemoryConfig, attach_memory, detach_memory, layout_of
    from runners.training import answer_loss

    examples = _pairs(tiny.tokenizer)
    pad = tiny.tokenizer.pad_token_id
    base = answer_loss(tiny.model, examples, pad, "cpu", 8)
    layout = layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))
    model = attach_memory(tiny.model, layout, MemoryConfig(tuple(range(layout.n_layers)), 1, 4), seed=0)
    try:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.add_(0.05)
        moved = answer_loss(model, examples, pad, "cpu", 8)
        assert moved == pytest.approx(_full_logits_loss(model, examples, pad), rel=1e-5)
    finally:
        detach_memory(model)
    assert abs(moved - base) > 1e-4
