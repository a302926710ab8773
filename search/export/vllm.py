"""vLLM's view of an adapter: the ranks it serves, zero-padding to them, and the serve command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Mapping

from search.errors import ExportError

VLLM_RANKS = (8, 16, 32, 64, 128, 256)
# Adapters vLLM keeps on the GPU at once (--max-loras): one batch mixes requests of at most this
# many users. vLLM's default is 1, which serialises users; one slot per user does not scale.
MAX_GPU_LORAS = 4


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


def max_loras(users: int) -> int:
    """``--max-loras`` for ``users`` adapters: all of them up to :data:`MAX_GPU_LORAS`."""
    return max(1, min(users, MAX_GPU_LORAS))


def vllm_command(base: str, adapters: Mapping[str, str], max_lora_rank: int | None,
                 served_name: str | None = None) -> str:
    """The ``vllm serve`` line for a base model and per-user adapters (empty dict: no LoRA).

    ``--max-loras`` is :func:`max_loras`; with more users than that, ``--max-cpu-loras`` keeps
    every adapter in CPU memory so that a user's turn on the GPU needs no disk read.
    """
    parts = ["vllm", "serve", shlex.quote(base)]
    if served_name:
        parts += ["--served-model-name", shlex.quote(served_name)]
    if adapters:
        gpu = max_loras(len(adapters))
        parts += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(gpu)]
        if len(adapters) > gpu:
            parts += ["--max-cpu-loras", str(len(adapters))]
        parts += ["--lora-modules", *(shlex.quote(f"{name}={path}") for name, path in adapters.items())]
    return " ".join(parts)


def _size(n: int) -> str:
    return next(f"{n / d:.1f} {u}" for d, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "B")) if n >= d or d == 1)


def vllm_script(command: str, adapters: int, max_lora_rank: int | None, slot_bytes: int | None) -> str:
    """``vllm.sh``: the serve command, run from the bundle's directory, with what its sizes mean."""
    lines = ["#!/bin/sh",
             "# Serve the exported model with vLLM's OpenAI-compatible server (http://localhost:8000/v1).",
             "# Paths are relative to this bundle: the script runs from its own directory. Extra arguments",
             "# are passed on to vllm serve (e.g. --port 8001).",
             "#"]
    if adapters:
        gpu = max_loras(adapters)
        slot = f", about {_size(slot_bytes)} each here" if slot_bytes else ""
        lines += [f"# --max-lora-rank {max_lora_rank}: the smallest rank vLLM takes that holds the adapters "
                  "(vllm/ holds them zero-padded to it).",
                  f"# --max-loras {gpu}: adapters held on the GPU at once{slot}; one batch mixes the requests of",
                  f"#   at most {gpu} users. vLLM's default (1) would serve one user at a time. Raise it for more",
                  "#   concurrent users if GPU memory allows; lower it on a small GPU."]
        if adapters > gpu:
            lines += [f"# --max-cpu-loras {adapters}: every user's adapter stays in CPU memory, so a user whose",
                      "#   adapter is not on the GPU is swapped in without reading the disk."]
        lines += ["# Each user's adapter is served as a model named after the user: send a request with",
                  "#   \"model\": \"<name>\", the user's adapters.<user>.lora_name in serving.yaml (the user id",
                  "#   itself for plain ids; request.json is one; its prompt comes from",
                  "#   pers-search prompt . --user U --query Q)"]
    lines += ["# Try it: curl -s http://localhost:8000/v1/completions -H 'Content-Type: application/json' "
              "-d @request.json",
              'cd "$(dirname "$0")" || exit 1',
              f'exec {command} "$@"']
    return "\n".join(lines) + "\n"
