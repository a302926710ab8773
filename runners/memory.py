"""MiLP parameterized memory: n parallel LoRA modules of rank r on the selected layers.

The modules are real PEFT LoRA adapters (``m0`` .. ``m{n-1}``), all active and trained together,
restricted to the masked layers with ``layers_to_transform``. For serving, the n modules of a
projection are exported as ONE equivalent LoRA of rank ``n*r``: ``B = [s B_0, ..., s B_{n-1}]``,
``A = [A_0; ...; A_{n-1}]`` with the scale ``s = alpha/r`` folded into B and the exported
``lora_alpha = n*r`` (scale 1), so ``B A = sum_i s B_i A_i`` exactly.

Storage (the bytes a server keeps per user) is a deterministic function of the configuration:
:func:`storage_bytes` computes the exact size of the fp16 safetensors file
:func:`export_merged_adapter` writes, header included, from the layout alone.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from runners.errors import ConfigError
from runners.spec import TrainSpec, TrialConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

ADAPTER_FILE = "adapter_model.safetensors"
SAFETENSORS_METADATA = {"format": "pt"}


@dataclass(frozen=True)
class MemoryConfig:
    """Which layers get memory, how many parallel modules, their rank and LoRA settings.

    Build it from a trial's configuration with :meth:`of`; memory is off unless ``count``,
    ``rank`` and ``layers`` are all non-empty.
    """

    layers: tuple[int, ...]
    count: int
    rank: int
    alpha_ratio: float = 2.0
    dropout: float = 0.0

    @classmethod
    def of(cls, config: TrialConfig, training: TrainSpec) -> "MemoryConfig":
        """The memory a trial configuration asks for, with the study's LoRA settings."""
        return cls(config.layers, config.count, config.rank, training.lora_alpha_ratio, training.lora_dropout)

    @property
    def enabled(self) -> bool:
        return self.count > 0 and self.rank > 0 and bool(self.layers)

    @property
    def alpha(self) -> float:
        return self.alpha_ratio * self.rank


@dataclass(frozen=True)
class Layout:
    """Shapes of the target projections of a model: ``(module path, d_in, d_out)`` per layer."""

    n_layers: int
    targets: tuple[str, ...]
    modules: tuple[tuple[int, str, int, int], ...]  # (layer, module path, d_in, d_out)

    def selected(self, layers: Sequence[int]) -> list[tuple[int, str, int, int]]:
        chosen = set(layers)
        return [m for m in self.modules if m[0] in chosen]


def layout_of(model, targets: Sequence[str]) -> Layout:
    """Read the target projections' shapes off a (possibly meta-device) model."""
    import torch

    modules = []
    n_layers = int(model.config.num_hidden_layers)
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or name.rsplit(".", 1)[-1] not in targets:
            continue
        layer = _layer_index(name)
        if layer is not None:
            modules.append((layer, name, module.in_features, module.out_features))
    if not modules:
        raise ConfigError(
            f"model.targets: none of {list(targets)} is a linear layer of this model; "
            "name projections such as gate_proj, up_proj, down_proj, q_proj"
        )
    return Layout(n_layers, tuple(targets), tuple(modules))


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layers", "h", "blocks") and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def parameter_count(layout: Layout, memory: MemoryConfig) -> int:
    """LoRA parameters: ``n * r * sum over selected layers and targets of (d_in + d_out)``."""
    if not memory.enabled:
        return 0
    return memory.count * memory.rank * sum(d_in + d_out for _, _, d_in, d_out in layout.selected(memory.layers))


def adapter_tensor_shapes(layout: Layout, memory: MemoryConfig) -> dict[str, tuple[int, int]]:
    """Names and shapes of the merged rank-``n*r`` adapter's tensors, as PEFT saves them."""
    if not memory.enabled:
        return {}
    rank = memory.count * memory.rank
    shapes = {}
    for _, path, d_in, d_out in layout.selected(memory.layers):
        shapes[f"base_model.model.{path}.lora_A.weight"] = (rank, d_in)
        shapes[f"base_model.model.{path}.lora_B.weight"] = (d_out, rank)
    return shapes


def storage_bytes(layout: Layout, memory: MemoryConfig) -> int:
    """Exact byte size of the fp16 safetensors file of the merged adapter (0 without memory).

    Reproduces the safetensors layout: an 8-byte header length, the JSON header (tensors in
    name order, compact separators, padded with spaces to a multiple of 8), then the data.
    """
    shapes = adapter_tensor_shapes(layout, memory)
    if not shapes:
        return 0
    header: dict = {"__metadata__": dict(SAFETENSORS_METADATA)}
    offset = 0
    for name in sorted(shapes):
        rows, cols = shapes[name]
        size = rows * cols * 2
        header[name] = {"dtype": "F16", "shape": [rows, cols], "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"))
    padded = len(text) + (-len(text)) % 8
    return 8 + padded + offset


def attach_memory(model, layout: Layout, memory: MemoryConfig, seed: int):
    """Wrap ``model`` with ``memory.count`` parallel PEFT LoRA adapters, all active and trainable.

    Returns:
        The PEFT model (train it, then :func:`detach_memory` to get the clean base back).
    """
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=memory.rank, lora_alpha=memory.alpha, lora_dropout=memory.dropout,
        target_modules=list(layout.targets), layers_to_transform=list(memory.layers),
        bias="none", task_type="CAUSAL_LM",
    )
    names = adapter_names(memory)
    with warnings.catch_warnings():
        # PEFT calls a transformers method that transformers 5 deprecated; nothing for users to act on.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = get_peft_model(model, config, adapter_name=names[0])
        try:
            for name in names[1:]:
                peft_model.add_adapter(name, config)
            peft_model.base_model.set_adapter(names)
        except BaseException:
            detach_memory(peft_model)  # later trials share the base model (runners.session): leave it clean
            raise
    for pname, param in peft_model.named_parameters():
        param.requires_grad_("lora_" in pname)
    return peft_model


def adapter_names(memory: MemoryConfig) -> list[str]:
    return [f"m{i}" for i in range(memory.count)]


def detach_memory(peft_model):
    """Remove the LoRA layers and return the untouched base model."""
    return peft_model.unload()


def merged_adapter_tensors(peft_model, memory: MemoryConfig) -> dict[str, "torch.Tensor"]:
    """The n parallel modules of each projection as one rank-``n*r`` LoRA (fp32, on CPU)."""
    import torch
    from peft.tuners.lora import LoraLayer

    names = adapter_names(memory)
    tensors = {}
    for path, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or names[0] not in module.lora_A:
            continue
        a = torch.cat([module.lora_A[n].weight.detach().float() for n in names], dim=0)
        b = torch.cat([module.lora_B[n].weight.detach().float() * module.scaling[n] for n in names], dim=1)
        tensors[f"{path}.lora_A.weight"] = a.cpu()
        tensors[f"{path}.lora_B.weight"] = b.cpu()
    return tensors


def merged_lora_config(layout: Layout, memory: MemoryConfig, base_model_path: str | None):
    """The PEFT ``LoraConfig`` of the exported rank-``n*r`` adapter (scale 1)."""
    from peft import LoraConfig

    rank = memory.count * memory.rank
    return LoraConfig(
        r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=list(layout.targets),
        layers_to_transform=list(memory.layers), bias="none", task_type="CAUSAL_LM",
        base_model_name_or_path=base_model_path,
    )


def export_merged_adapter(
    peft_model, layout: Layout, memory: MemoryConfig, out_dir: str | os.PathLike,
    base_model_path: str | None = None,
) -> Path:
    """Write a PEFT adapter dir (``adapter_config.json`` + fp16 ``adapter_model.safetensors``).

    ``PeftModel.from_pretrained(base, out_dir)`` loads it and reproduces the trained model.

    Returns:
        The path of the written safetensors file.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to("cpu").half().contiguous() for k, v in merged_adapter_tensors(peft_model, memory).items()}
    path = out / ADAPTER_FILE
    save_file(tensors, str(path), metadata=dict(SAFETENSORS_METADATA))
    merged_lora_config(layout, memory, base_model_path).save_pretrained(str(out))
    return path
