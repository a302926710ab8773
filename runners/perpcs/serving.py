"""One servable PEFT adapter for a user whose trial used shared pieces (Per-Pcs or retrieved PEFTs).

A trial with ``perpcs.top_k > 0`` (or ``perpcs.retrieve > 0``) keeps, per user, the assembly
(``perpcs/assembly.safetensors``: sharer indices and weights) and, when ``lora.count > 0``, the
user's own merged adapter (``adapter_model.safetensors``, scales folded into B). At evaluation
both are active at once, so the model's update at each projection is the sum of the two deltas:

    Delta W = B_own A_own + sum_j w_j B_j A_j = [B_own, w_1 B_1, ...] [A_own; A_1; ...]

which is exactly one LoRA whose rank is the sum of the two, with scale 1. Modules where only
one of the two acts are zero-padded to the same rank, so one ``r`` serves every module (what
vLLM needs). The result is written as a plain PEFT adapter directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from runners.errors import ConfigError
from runners.files import load_safetensors
from runners.memory import ADAPTER_FILE, SAFETENSORS_METADATA
from runners.perpcs.assembly import ASSEMBLY_FILE, Assembly, assembled_lora

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runners.perpcs.pool import Pool

_PREFIX = "base_model.model."
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def serving_tensors(user_dir: str | os.PathLike, pool: "Pool") -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """Per module path (inside the base model), the combined ``(A, B)`` of the user's state, zero-padded.

    Raises:
        ConfigError: the directory holds neither an assembly nor an adapter.
    """
    import torch
    user_dir = Path(user_dir)
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    own = user_dir / ADAPTER_FILE
    if own.exists():
        tensors = load_safetensors(own, "adapter file", "rerun the trial with --keep-adapters to write it again")
        for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
            path = key[len(_PREFIX):-len(".lora_A.weight")]
            b_key = key.replace(".lora_A.weight", ".lora_B.weight")
            parts.setdefault(path, []).append((tensors[key].float(), tensors[b_key].float()))
    if (user_dir / ASSEMBLY_FILE).exists():
        assembly = Assembly.load(user_dir / ASSEMBLY_FILE)
        for path, (a, b) in assembled_lora(pool, assembly).items():
            parts.setdefault(path, []).append((a.float(), b.float()))
    if not parts:
        raise ConfigError(f"serving adapter: {user_dir} holds neither {ADAPTER_FILE} nor {ASSEMBLY_FILE}; "
                          "point at a user directory a trial wrote (adapter_dir)")
    rank = max(sum(a.shape[0] for a, _ in pieces) for pieces in parts.values())
    out = {}
    for path, pieces in parts.items():
        a = torch.cat([a for a, _ in pieces], dim=0)
        b = torch.cat([b for _, b in pieces], dim=1)
        pad = rank - a.shape[0]
        out[path] = (torch.cat([a, a.new_zeros(pad, a.shape[1])]), torch.cat([b, b.new_zeros(b.shape[0], pad)], dim=1))
    return out


def write_serving_adapter(user_dir: str | os.PathLike, pool: "Pool", out_dir: str | os.PathLike,
                          base_model_path: str | None = None) -> tuple[Path, int]:
    """Write the user's combined state as one PEFT adapter (fp16, scale 1).

    Returns:
        The written ``adapter_model.safetensors`` and the adapter's rank.
    """
    import torch
    from peft import LoraConfig
    from safetensors.torch import save_file

    combined = serving_tensors(user_dir, pool)
    tensors = {}
    for path, (a, b) in combined.items():
        tensors[f"{_PREFIX}{path}.lora_A.weight"] = a.to(torch.float16).contiguous()
        tensors[f"{_PREFIX}{path}.lora_B.weight"] = b.to(torch.float16).contiguous()
    rank = next(iter(combined.values()))[0].shape[0]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / ADAPTER_FILE
    save_file(tensors, str(target), metadata=dict(SAFETENSORS_METADATA))
    LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
               base_model_name_or_path=base_model_path, **_targets(sorted(combined))).save_pretrained(str(out))
    return target, rank


def _targets(paths: list[str]) -> dict:
    """``target_modules`` (+ ``layers_to_transform``) matching exactly ``paths``.

    Module names and layer indices when the paths are every name at every listed layer (the usual
    case: pool pieces cover all layers), else the full paths (PEFT matches them by suffix).
    """
    layers, names = set(), set()
    for path in paths:
        match = _LAYER.search(path)
        if match is None:
            return {"target_modules": paths}
        layers.add(int(match.group(1)))
        names.add(path.rsplit(".", 1)[-1])
    if len(paths) != len(layers) * len(names):
        return {"target_modules": paths}
    return {"target_modules": sorted(names), "layers_to_transform": sorted(layers)}
