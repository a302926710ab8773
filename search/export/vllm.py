"""vLLM's view of an adapter: the ranks it serves, zero-padding to them, and the serve command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Mapping

from search.errors import ExportError

VLLM_RANKS = (8, 16, 32, 64, 128, 256)


def vllm_rank(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``, or None above 256."""
    return next((r for r in VLLM_RANKS if r >= rank), None)


def pad_adapter(src: str | Path, dst: str | Path, rank: int) -> Path:
    """Copy a PEFT LoRA adapter with its rank raised to ``rank`` by zero rows/columns.

    ``lora_A`` (r x d_in) gets ``rank - r`` zero rows, ``lora_B`` (d_out x r) as many zero
    columns, and ``lora_alpha`` is scaled by ``rank / r`` so ``alpha / r`` is unchanged: the
    product ``B A`` and thus the model are exactly the same.

    Returns:
        The written safetensors path.

    Raises:
        ExportError: ``rank`` is below the adapter's rank.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    config = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    old = int(config["r"])
    if rank < old:
        raise ExportError(f"pad_adapter: target rank {rank} < adapter rank {old} in {src}; pad upwards only")
    tensors = {}
    with safe_open(str(src / "adapter_model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
        for name in handle.keys():
            t = handle.get_tensor(name)
            if name.endswith("lora_A.weight"):
                t = torch.cat([t, t.new_zeros(rank - old, t.shape[1])], dim=0)
            elif name.endswith("lora_B.weight"):
                t = torch.cat([t, t.new_zeros(t.shape[0], rank - old)], dim=1)
            tensors[name] = t.contiguous()
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / "adapter_model.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    config.update(r=rank, lora_alpha=float(config["lora_alpha"]) * rank / old)
    (dst / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def vllm_command(base: str, adapters: Mapping[str, str], max_lora_rank: int | None) -> str:
    """The ``vllm serve`` line for a base model and per-user adapters (empty dict: no LoRA)."""
    parts = ["vllm", "serve", shlex.quote(base)]
    if adapters:
        parts += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(len(adapters)),
                  "--lora-modules", *(shlex.quote(f"{name}={path}") for name, path in adapters.items())]
    return " ".join(parts)
