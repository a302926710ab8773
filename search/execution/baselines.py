"""The standard reference points of personalization, as trial configurations.

The rows of LaMP's comparison and of MiLP's and Per-Pcs' baselines that a single trial can
express: no personalization, random history in the prompt, RAG with each retriever, a per-user
LoRA on all layers (OPPU), PEFT + RAG, and the cohort adapter (one LoRA trained on every cohort
user's history: what the users share, the domain, with nothing of any one user; a per-user row
must beat it to show that it personalizes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from runners.cohort import COHORT_RANK
from runners.retrieval import known_retrievers
from runners.spec import FLAT_KEYS, TrialConfig
from search.space import ChoiceParam, FixedParam, IntParam, LayerMaskParam, Space

DEFAULT_BASELINE_K = 4
DEFAULT_PERPCS_K = 2
DEFAULT_RANK = 8


@dataclass(frozen=True)
class Baseline:
    """A named reference configuration."""

    name: str
    description: str
    config: TrialConfig


def space_defaults(space: Space) -> TrialConfig:
    """The runner's configuration made of the space's defaults (layer masks left out, so the
    space need not be bound to a model)."""
    return TrialConfig.from_flat({name: space.default_of(name) for name, param in space.parameters.items()
                                  if not isinstance(param, LayerMaskParam)})


def baseline_k(space: Space) -> int:
    """``rag.k`` for the baselines: the space's default, or 4 (within range) when that is 0."""
    default = space_defaults(space).rag_k
    if default > 0:
        return default
    param = space.parameters.get(FLAT_KEYS["rag_k"])
    high = param.high if isinstance(param, IntParam) else DEFAULT_BASELINE_K
    return max(1, min(DEFAULT_BASELINE_K, int(high)))


def retrievers_of(space: Space) -> list[str]:
    """The retrievers the space searches over (every registered one when the space does not say)."""
    param = space.parameters.get(FLAT_KEYS["retriever"])
    if isinstance(param, ChoiceParam):
        return [str(v) for v in param.values]
    if isinstance(param, FixedParam):
        return [str(param.value)]
    return known_retrievers()


def memory_rank(space: Space) -> int:
    """The LoRA rank of the OPPU rows: the space's default rank, or 8."""
    return space_defaults(space).rank or DEFAULT_RANK


def perpcs_k(space: Space) -> int:
    """``perpcs.top_k`` for the Per-Pcs rows: the space's default, or 2 when that is 0."""
    return space_defaults(space).perpcs_top_k or DEFAULT_PERPCS_K


def baseline_configs(space: Space, with_pool: bool = False) -> list[Baseline]:
    """The baseline rows for a bound space (its layer masks sized to the model).

    With ``with_pool`` (a Per-Pcs pool exists for the space's model and data), also Per-Pcs
    (top-k pieces assembled) and PEFT retrieval (whole sharer PEFTs averaged), the Per-Pcs
    paper's comparison next to OPPU.
    """
    n_layers = len(space.defaults()[FLAT_KEYS["layers"]])
    rank, k = memory_rank(space), baseline_k(space)
    off = TrialConfig()
    oppu = TrialConfig(layers=tuple(range(n_layers)), count=1, rank=rank)
    retrievers = retrievers_of(space)
    rows = [Baseline("non-personalized", "base model, query only", off),
            Baseline("random-history", f"{k} random history items in the prompt", replace(off, rag_k=k, retriever="random"))]
    rows += [Baseline(f"rag-{name}", f"top-{k} history items by {name}", replace(off, rag_k=k, retriever=name))
             for name in retrievers if name != "random"]
    rows.append(Baseline("peft-oppu", f"one rank-{rank} LoRA per user on all layers", oppu))
    best = "bm25" if "bm25" in retrievers else retrievers[0]
    rows.append(Baseline(f"peft+rag-{best}", f"the per-user LoRA plus top-{k} by {best}",
                         replace(oppu, rag_k=k, retriever=best)))
    rows.append(Baseline("cohort-adapter", f"one rank-{COHORT_RANK} LoRA on all layers trained on every cohort user's "
                         "history (the per-user budget summed)", replace(off, base="cohort")))
    if with_pool:
        pk = perpcs_k(space)
        rows.append(Baseline("per-pcs", f"top-{pk} pieces per layer-projection assembled from the pool",
                             replace(off, perpcs_top_k=pk)))
        rows.append(Baseline("peft-retrieval", f"the {pk} most similar sharers' whole PEFTs, averaged",
                             replace(off, perpcs_retrieve=pk)))
    return rows
