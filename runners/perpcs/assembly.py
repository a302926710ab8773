"""Per-Pcs assembly: a target user's PEFT chosen piece by piece from the pool, without training.

For a target user (paper, section 2.5):

1. Each history example (the same texts and prompt/answer pairs the user's own LoRA would train
   on) runs through the base model with no gradient. At each target projection of each layer,
   every shared piece ``i`` is scored by ``alpha_i = sum_t cos(g_i, x_t)`` over the scored tokens
   ``t``: the answer tokens of a pair (its label positions), every token of a plain text.
2. The top-k pieces are kept and weighed ``w = softmax(alpha_topk / sqrt(d_in))``; the
   projection's update for that example is ``sum_j w_j B_j A_j``, applied at once, so later
   projections and layers see the assembled earlier ones (layer-wise, auto-regressive). Each
   example is assembled on its own, even inside a batch.
3. The user's update is the mean over examples: ``Delta W = sum_i wbar_i B_i A_i`` with
   ``wbar_i`` the mean of piece ``i``'s weight over examples (0 where it was not chosen). Only
   ``(sharer index, wbar)`` per module is stored (:meth:`Assembly.save`); a piece chosen for
   some example is kept, so a module keeps at most ``min(sharers, k x examples)`` entries.

Materialising (:func:`apply_assembly`, :func:`export_assembly_adapter`): the weighted sum of
``m`` rank-r pieces is exactly one rank-``m*r`` LoRA, ``A = [A_1; ...; A_m]`` and
``B = [w_1 B_1, ..., w_m B_m]`` with scale 1, padded with zero pieces to the widest module.

Reference differences (REFERENCE_ALGORITHMS.md 1.6 and 1.9), where the paper is followed:
the score is the plain cosine of the normalised gate and activation summed over tokens (the
reference uses layer-norm-centred vectors times ``sqrt(1/d)``, averaged over tokens and over the
batch, with the softmax temperature 1); the update is ``sum w_j B_j A_j`` (the reference mixes
the A's and the B's separately, ``(sum w B)(sum w A)``, and averages A and B separately over
batches); selection is per history example (the reference selects once per batch of 16); an
example with no scored tokens is skipped (the reference divides 0/0 into NaN).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from runners.batching import IGNORE, Example, batches, collate
from runners.errors import ConfigError, DataError
from runners.perpcs.pool import check_base_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runners.memory import Layout
    from runners.models import LoadedModel
    from runners.perpcs.pool import ModulePieces, Pool

ADAPTER_NAME = "perpcs"
ADAPTER_FILE = "adapter_model.safetensors"
ASSEMBLY_FILE = Path("perpcs") / "assembly.safetensors"  # a user's assembly, inside the trial's user dir
ASSEMBLY_BATCH = 8  # history examples per forward pass while assembling (the result does not depend on it)


class TopKClippedWarning(UserWarning):
    """``perpcs.top_k`` is larger than the pool's number of sharers and was clipped."""

def piece_scores(x: "torch.Tensor", gates: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """Per-sequence piece scores: the cosine of each gate with each scored token, summed.

    Args:
        x: Input activations, shape (batch, tokens, d_in).
        gates: One gate per piece, shape (pieces, d_in).
        mask: Which tokens count, shape (batch, tokens), bool.

    Returns:
        Scores, shape (batch, pieces). A zero gate scores 0.
    """
    import torch.nn.functional as F

    cos = F.normalize(x.float(), dim=-1) @ F.normalize(gates.float(), dim=-1).T  # (B, T, N)
    return (cos * mask.unsqueeze(-1).float()).sum(dim=1)


def select_pieces(scores: "torch.Tensor", top_k: int, d_in: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """The top-k pieces of each row and their weights ``softmax(score / sqrt(d_in))``.

    Args:
        scores: Shape (batch, pieces).
        top_k: Pieces kept per row (at most the number of pieces).
        d_in: The projection's input width n (the paper's 1/sqrt(n) scaling).

    Returns:
        ``(indices, weights)``, each of shape (batch, top_k), best first.
    """
    import torch

    values, indices = torch.topk(scores, k=top_k, dim=-1)
    return indices, torch.softmax(values / math.sqrt(d_in), dim=-1)


@dataclass
class Assembly:
    """A target user's assembled PEFT: per pool module, sharer indices and their weights.

    Attributes:
        pool_key: The key of the pool it was assembled from.
        top_k: The k used (after clipping).
        indices: Sharer indices, shape (modules, m), int64, -1 where padded; best weight first.
        weights: Weights (fp16-representable values), shape (modules, m), 0 where padded.
        seconds: Wall time of the assembly.
        n_examples: History examples that were scored.
    """

    pool_key: str
    top_k: int
    indices: "torch.Tensor"
    weights: "torch.Tensor"
    seconds: float = 0.0
    n_examples: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def chosen(self, module: int) -> list[tuple[int, float]]:
        """``(sharer index, weight)`` pairs of module number ``module``."""
        return [(int(i), float(w)) for i, w in zip(self.indices[module], self.weights[module]) if int(i) >= 0]

    def save(self, path: str | os.PathLike) -> int:
        """Write the indices (int16, or int32 past 32767 sharers) and fp16 weights as safetensors.

        The pool key and k go into the safetensors metadata.

        Returns:
            The size of the written file in bytes (the per-user storage of Per-Pcs).
        """
        import torch
        from safetensors.torch import save_file

        small = self.indices.numel() == 0 or int(self.indices.max()) < 2 ** 15
        tensors = {"indices": self.indices.to(torch.int16 if small else torch.int32).contiguous(),
                   "weights": self.weights.to(torch.float16).contiguous()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, os.fspath(path), metadata={"pool": self.pool_key, "top_k": str(self.top_k)})
        return os.path.getsize(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Assembly":
        """Read an assembly written by :meth:`save`."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            indices, weights = f.get_tensor("indices").long(), f.get_tensor("weights").float()
        return cls(meta.get("pool", ""), int(meta.get("top_k", 0)), indices, weights)


class _Scoring:
    """Which tokens of the current batch count (set before each forward)."""

    mask: "torch.Tensor | None" = None
    counted: "torch.Tensor | None" = None


class _ModuleAssembler:
    """Forward hook of one projection: score, pick, weigh and apply this module's pieces."""

    def __init__(self, pieces: "ModulePieces", top_k: int, d_in: int, context: _Scoring, device, dtype) -> None:
        import torch

        n, r, _ = pieces.a.shape
        d_out = pieces.b.shape[1]
        self.n, self.d_in, self.k, self.context = n, d_in, min(top_k, n), context
        self.sharers = pieces.sharers
        self.a = pieces.a.to(device, dtype)                                              # (n, r, d_in)
        self.b_cat = pieces.b.permute(0, 2, 1).reshape(n * r, d_out).to(device, dtype)  # (n*r, d_out)
        self.gates = pieces.gates.to(device)
        self.total = torch.zeros(n, dtype=torch.float64)

    def __call__(self, module, args, output):
        import torch

        if self.n == 0:
            return None
        x = args[0]
        idx, w = select_pieces(piece_scores(x, self.gates, self.context.mask), self.k, self.d_in)
        full = torch.zeros(x.shape[0], self.n, device=x.device).scatter(1, idx, w)  # (B, n)
        self.total += full[self.context.counted].sum(dim=0).double().cpu()
        ax = torch.einsum("btd,nrd->btnr", x, self.a) * full.to(x.dtype)[:, None, :, None]
        return output + ax.reshape(*x.shape[:2], -1) @ self.b_cat


def assemble(pool: "Pool", loaded: "LoadedModel", layout: "Layout", examples: Sequence[Example], top_k: int,
             user_id: str | None = None) -> Assembly:
    """Assemble a target user's PEFT from the pool with top-k piece selection.

    Args:
        pool: The pool.
        loaded: The base model (no adapters active, or the ones that should score along).
        layout: The model's target projections (checked against the pool).
        examples: The user's history examples (see :func:`runners.history.history_examples`).
        top_k: Pieces kept per module and example; clipped (with a warning) to the sharer count.
        user_id: The target user, refused if it is one of the pool's sharers.

    Returns:
        The assembly (indices and weights per pool module, timing).

    Raises:
        ModelError: the pool was built for another base model.
        ConfigError: ``top_k < 1``, or the target user is a sharer of the pool.
        DataError: no example has a scored token.
    """
    import torch

    check_base_model(pool, loaded.name, layout)
    top_k = _clip_top_k(pool, top_k)
    if user_id is not None and user_id in pool.sharer_ids:
        raise ConfigError(f"perpcs: target user {user_id!r} is a sharer of pool {pool.directory}; "
                          "build the pool for this cohort (`pers-search pool build` with the trial's data settings)")
    started = time.perf_counter()
    model, context = loaded.model, _Scoring()
    dtype = next(model.parameters()).dtype
    hooks = [_ModuleAssembler(pool.module_pieces(m), top_k, d_in, context, loaded.device, dtype)
             for m, (_, _, d_in, _) in enumerate(pool.modules)]
    handles = [model.get_submodule(path).register_forward_hook(h) for (_, path, _, _), h in zip(pool.modules, hooks)]
    counted, was_training = 0, model.training
    model.eval()
    try:
        with torch.no_grad():
            for chunk in batches(list(examples), ASSEMBLY_BATCH):
                batch = collate(chunk, loaded.tokenizer.pad_token_id, loaded.device)
                context.mask = (batch["labels"] != IGNORE) & (batch["attention_mask"] > 0)
                context.counted = context.mask.any(dim=1)
                counted += int(context.counted.sum())
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if counted == 0:
        raise DataError(f"perpcs: none of the target user's {len(examples)} history examples has a scored token; "
                        "the user needs history to assemble from")
    indices, weights = _collect(hooks, counted)
    return Assembly(pool.key, top_k, indices, weights, time.perf_counter() - started, counted)


def _clip_top_k(pool: "Pool", top_k: int) -> int:
    if int(top_k) < 1:
        raise ConfigError(f"perpcs.top_k={top_k} must be >= 1 to assemble; use 0 in the trial to switch Per-Pcs off")
    if top_k > pool.n_sharers:
        warnings.warn(
            f"perpcs.top_k={top_k} is larger than the {pool.n_sharers} sharers of pool {pool.directory}; "
            f"using top_k={pool.n_sharers} (build a pool with more --sharers to pick from more)",
            TopKClippedWarning, stacklevel=3,
        )
        return pool.n_sharers
    return int(top_k)


def _collect(hooks: Sequence[_ModuleAssembler], counted: int) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Mean weights per module, as padded (sharer index, fp16-rounded weight) rows, best first."""
    import torch

    rows = []
    for h in hooks:
        mean = (h.total / counted).float()
        keep = torch.nonzero(mean > 0).flatten()
        keep = keep[torch.argsort(mean[keep], descending=True, stable=True)]
        rows.append((h.sharers[keep], mean[keep].half().float()))
    width = max(1, max(len(i) for i, _ in rows))
    indices = torch.full((len(rows), width), -1, dtype=torch.long)
    weights = torch.zeros((len(rows), width), dtype=torch.float32)
    for m, (i, w) in enumerate(rows):
        indices[m, :len(i)], weights[m, :len(w)] = i, w
    return indices, weights


def assembled_lora(pool: "Pool", assembly: Assembly) -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """The assembly as one LoRA per module: ``(A, B)`` of rank ``m*r``, weights folded into B.

    ``B @ A`` equals ``sum_j w_j B_j A_j`` over the module's chosen pieces; padding pieces are
    zero. Tensors are fp32 on CPU, keyed by module path.
    """
    import torch

    _check_assembly(pool, assembly)
    r, width = pool.rank, assembly.indices.shape[1]
    out = {}
    for m, (_, path, d_in, d_out) in enumerate(pool.modules):
        a, b = torch.zeros(width * r, d_in), torch.zeros(d_out, width * r)
        for j, (sharer, w) in enumerate(assembly.chosen(m)):
            pa, pb = pool.piece(sharer, path)
            a[j * r:(j + 1) * r], b[:, j * r:(j + 1) * r] = pa, w * pb
        out[path] = (a, b)
    return out


def _check_assembly(pool: "Pool", assembly: Assembly) -> None:
    if assembly.pool_key and assembly.pool_key != pool.key:
        raise ConfigError(f"perpcs: the assembly comes from pool {assembly.pool_key!r}, not {pool.key!r}; "
                          "assemble again from this pool")
    if assembly.indices.shape[0] != len(pool.modules):
        raise ConfigError(f"perpcs: the assembly has {assembly.indices.shape[0]} modules but the pool "
                          f"{len(pool.modules)}; assemble again from this pool")


def lora_config(pool: "Pool", assembly: Assembly):
    """The PEFT ``LoraConfig`` of the materialised adapter (rank ``m*r``, scale 1; no base model path)."""
    from peft import LoraConfig

    rank = pool.rank * assembly.indices.shape[1]
    return LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=list(pool.targets),
                      bias="none", task_type="CAUSAL_LM")


def apply_assembly(model, pool: "Pool", assembly: Assembly):
    """Put the assembled LoRA on ``model`` as a frozen, active PEFT adapter.

    ``model`` may be a plain model (a PEFT model is made) or a PEFT model, e.g. the one
    ``runners.memory.attach_memory`` returns: the assembled adapter is then added next to the
    user's own modules, which stay active and keep their trainability. Remove everything with
    ``peft_model.unload()`` (``runners.memory.detach_memory``).

    Returns:
        The PEFT model with :data:`ADAPTER_NAME` active.
    """
    from peft import PeftModel, get_peft_model

    config = lora_config(pool, assembly)
    tensors = assembled_lora(pool, assembly)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if isinstance(model, PeftModel):
            grads = {name: p.requires_grad for name, p in model.named_parameters()}
            active = list(model.base_model.active_adapters)
            model.add_adapter(ADAPTER_NAME, config)
            model.base_model.set_adapter([*active, ADAPTER_NAME])
            for name, p in model.named_parameters():
                p.requires_grad_(grads.get(name, False))
            peft_model = model
        else:
            peft_model = get_peft_model(model, config, adapter_name=ADAPTER_NAME)
    try:
        _load_adapter(peft_model, tensors, ADAPTER_NAME)
    except BaseException:
        if peft_model is not model:  # made here on the shared base model (runners.session): leave it clean
            peft_model.unload()
        raise
    return peft_model


def _load_adapter(peft_model, tensors, adapter_name: str) -> None:
    inner = peft_model.base_model.model
    for path, (a, b) in tensors.items():
        module = inner.get_submodule(path)
        weight_a, weight_b = module.lora_A[adapter_name].weight, module.lora_B[adapter_name].weight
        weight_a.data.copy_(a.to(weight_a.device, weight_a.dtype))
        weight_b.data.copy_(b.to(weight_b.device, weight_b.dtype))
        weight_a.requires_grad_(False)
        weight_b.requires_grad_(False)


def export_assembly_adapter(pool: "Pool", assembly: Assembly, out_dir: str | os.PathLike) -> Path:
    """Write the assembled LoRA as a PEFT adapter dir that ``PeftModel.from_pretrained`` loads.

    Returns:
        The path of the written fp16 ``adapter_model.safetensors``.
    """
    import torch
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for path, (a, b) in assembled_lora(pool, assembly).items():
        tensors[f"base_model.model.{path}.lora_A.weight"] = a.to(torch.float16).contiguous()
        tensors[f"base_model.model.{path}.lora_B.weight"] = b.to(torch.float16).contiguous()
    target = out / ADAPTER_FILE
    save_file(tensors, str(target), metadata={"format": "pt"})
    lora_config(pool, assembly).save_pretrained(str(out))
    return target
