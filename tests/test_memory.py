"""Multi-LoRA memory: parameter count, exact storage, merge equivalence, export round trip."""

from __future__ import annotations

import pytest
import torch

from runners.memory import (
    MemoryConfig, attach_memory, detach_memory, export_merged_adapter, layout_of,
    parameter_count, storage_bytes,
)
from runners.models import tiny_config


@pytest.fixture()
def tiny_model():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_config()).eval()


TARGETS = ("gate_proj", "up_proj", "down_proj")


def test_parameter_count_is_n_r_sum_of_dims(tiny_model):
    layout = layout_of(tiny_model, TARGETS)
    mem = MemoryConfig(layers=(0, 2), count=3, rank=2)
    # tiny: hidden 64, intermediate 128; gate/up: 64->128, down: 128->64; each target d_in+d_out = 192
    assert parameter_count(layout, mem) == 3 * 2 * 2 * (3 * 192)
    peft_model = attach_memory(tiny_model, layout, mem, seed=0)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == parameter_count(layout, mem)
    detach_memory(peft_model)


def test_empty_mask_or_zero_count_has_no_memory(tiny_model):
    layout = layout_of(tiny_model, TARGETS)
    assert parameter_count(layout, MemoryConfig((), 2, 4)) == 0
    assert storage_bytes(layout, MemoryConfig((0, 1, 2, 3), 0, 4)) == 0


@pytest.mark.parametrize("layers,count,rank", [((0, 1, 2, 3), 1, 2), ((1, 3), 3, 4), ((0,), 2, 8)])
def test_storage_formula_equals_written_file(tiny_model, tmp_path, layers, count, rank):
    layout = layout_of(tiny_model, TARGETS)
    mem = MemoryConfig(layers=layers, count=count, rank=rank)
    peft_model = attach_memory(tiny_model, layout, mem, seed=0)
    path = export_merged_adapter(peft_model, layout, mem, tmp_path / "a")
    detach_memory(peft_model)
    assert path.stat().st_size == storage_bytes(layout, mem)
    assert storage_bytes(layout, mem) > 2 * parameter_count(layout, mem)


def test_merged_adapter_reproduces_parallel_modules(tiny_model, tmp_path):
    from peft import PeftModel

    layout = layout_of(tiny_model, TARGETS)
    mem = MemoryConfig(layers=(0, 2, 3), count=2, rank=4)
    x = torch.randint(3, 500, (2, 12))
    base_logits = tiny_model(x).logits
    peft_model = attach_memory(tiny_model, layout, mem, seed=0)
    with torch.no_grad():  # give B non-zero values so the modules change the output
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
        trained = peft_model(x).logits
    assert not torch.allclose(trained, base_logits, atol=1e-4)
    export_merged_adapter(peft_model, layout, mem, tmp_path / "a")
    base = detach_memory(peft_model)
    assert torch.allclose(base(x).logits, base_logits), "detach must restore the base model"
    loaded = PeftModel.from_pretrained(base, str(tmp_path / "a")).eval()
    with torch.no_grad():
        reloaded = loaded(x).logits
    # fp16 export: equal to fp16 rounding of the factors
    assert torch.allclose(reloaded, trained, atol=2e-2), (reloaded - trained).abs().max()
    loaded.unload()


def test_attach_is_deterministic_under_seed():
    from transformers import LlamaForCausalLM

    def lora_a(seed):
        torch.manual_seed(0)
        model = LlamaForCausalLM(tiny_config())
        layout = layout_of(model, TARGETS)
        peft_model = attach_memory(model, layout, MemoryConfig(layers=(0, 1), count=2, rank=2), seed)
        return {k: v for k, v in peft_model.state_dict().items() if "lora_A" in k}

    first, second, other = lora_a(7), lora_a(7), lora_a(8)
    assert first.keys() == second.keys() and len(first) == 2 * 2 * 3
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
