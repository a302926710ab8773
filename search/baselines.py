"""The standard reference points of personalization, as trial configurations.

The rows of LaMP's comparison and of MiLP's and Per-Pcs' baselines that a single trial can
express: no personalization, random history in the prompt, RAG with each retriever, a per-user
LoRA on all layers (OPPU), and PEFT + RAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_BASELINE_K = 4
DEFAULT_PERPCS_K = 2


@dataclass(frozen=True)
class Baseline:
    """A named reference configuration."""

    name: str
    description: str
    config: dict[str, Any]


def baseline_k(space) -> int:
    """``rag.k`` for the baselines: the space's default, or 4 (within range) when that is 0."""
    param = space.parameters.get("rag.k")
    default = int(space.default_of("rag.k") or 0) if param is not None else 0
    if default > 0:
        return default
    high = getattr(param, "high", DEFAULT_BASELINE_K) if param is not None else DEFAULT_BASELINE_K
    return max(1, min(DEFAULT_BASELINE_K, int(high)))


def retrievers_of(space) -> list[str]:
    """The retrievers the space searches over (all four when the space does not say)."""
    param = space.parameters.get("rag.retriever")
    values = getattr(param, "values", None) or [getattr(param, "value", None)]
    values = [v for v in values if v]
    return values or ["bm25", "dense", "recency", "random"]


def perpcs_k(space) -> int:
    """``perpcs.top_k`` for the Per-Pcs rows: the space's default, or 2 when that is 0."""
    if "perpcs.top_k" in space.parameters and int(space.default_of("perpcs.top_k") or 0) > 0:
        return int(space.default_of("perpcs.top_k"))
    return DEFAULT_PERPCS_K


def baseline_configs(space, with_pool: bool = False) -> list[Baseline]:
    """The baseline rows for a bound space (its layer masks sized to the model).

    With ``with_pool`` (a Per-Pcs pool exists for the space's model and data), also Per-Pcs
    (top-k pieces assembled) and PEFT retrieval (whole sharer PEFTs averaged), the Per-Pcs
    paper's comparison next to OPPU.
    """
    defaults = space.defaults()
    n_layers = len(defaults.get("lora.layers") or [])
    rank = int(space.default_of("lora.rank")) if "lora.rank" in space.parameters else 8
    k = baseline_k(space)
    off = {"lora.layers": [0] * n_layers, "lora.count": 0, "lora.rank": rank,
           "rag.k": 0, "rag.retriever": "bm25", "perpcs.top_k": 0}
    oppu = {**off, "lora.layers": [1] * n_layers, "lora.count": 1}
    rows = [Baseline("non-personalized", "base model, query only", off)]
    rows.append(Baseline("random-history", f"{k} random history items in the prompt",
                         {**off, "rag.k": k, "rag.retriever": "random"}))
    for name in retrievers_of(space):
        if name != "random":
            rows.append(Baseline(f"rag-{name}", f"top-{k} history items by {name}",
                                 {**off, "rag.k": k, "rag.retriever": name}))
    rows.append(Baseline("peft-oppu", f"one rank-{rank} LoRA per user on all layers", oppu))
    best = "bm25" if "bm25" in retrievers_of(space) else retrievers_of(space)[0]
    rows.append(Baseline(f"peft+rag-{best}", f"the per-user LoRA plus top-{k} by {best}",
                         {**oppu, "rag.k": k, "rag.retriever": best}))
    if with_pool:
        pk = perpcs_k(space)
        rows.append(Baseline("per-pcs", f"top-{pk} pieces per layer-projection assembled from the pool",
                             {**off, "perpcs.top_k": pk}))
        rows.append(Baseline("peft-retrieval", f"the {pk} most similar sharers' whole PEFTs, averaged",
                             {**off, "perpcs.retrieve": pk}))
    return rows
