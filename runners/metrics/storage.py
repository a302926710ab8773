"""Per-user storage, measured in bytes from files actually written."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Mapping

from runners.errors import DataError

if TYPE_CHECKING:
    import torch


def file_bytes(path: str | os.PathLike[str]) -> int:
    """Size of a file, or the total size of the files under a directory (recursively).

    Args:
        path: A file or directory.

    Returns:
        The size in bytes.

    Raises:
        DataError: If ``path`` does not exist.
    """
    if os.path.isfile(path):
        return os.path.getsize(path)
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(root, name)) for root, _dirs, names in os.walk(path) for name in names
        )
    raise DataError(f"storage: path {os.fspath(path)!r} does not exist; write the artifact before measuring it")


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> int:
    """Write tensors as a safetensors file and return the file's size in bytes.

    Floating-point tensors are stored as fp16 (what a server keeps per user); integer and bool
    tensors (e.g. Per-Pcs piece indices) are stored unchanged so that they stay exact. Tensors are
    moved to CPU and copied, so views sharing storage are fine. Parent directories are created.

    Args:
        tensors: Tensors by name.
        path: Where to write the file (overwritten if present).

    Returns:
        The size of the written file in bytes (8-byte header length + JSON header + data).
    """
    import torch
    from safetensors.torch import save_file

    stored = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().to("cpu")
        if tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        stored[name] = tensor.clone(memory_format=torch.contiguous_format)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(stored, os.fspath(path))
    return os.path.getsize(path)
