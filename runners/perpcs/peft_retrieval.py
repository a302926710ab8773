"""PEFT retrieval (the Per-Pcs paper's baseline): whole sharer PEFTs chosen and averaged.

The target user's history is embedded as the sharers' were (the mean of unit-length MiniLM
item embeddings); the ``m`` sharers with the most similar embedding (cosine) are chosen and
their whole LoRA adapters averaged with equal weights. The result is an
:class:`~runners.perpcs.assembly.Assembly` whose every module holds the same sharers (those of
the chosen who share that module's piece), so it applies, stores and exports exactly as a
Per-Pcs assembly does.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Sequence

import numpy as np

from runners.errors import ConfigError
from runners.perpcs.assembly import Assembly
from runners.perpcs.sharers import user_embeddings

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import HistoryItem, User
    from runners.perpcs.assembly import Assembly
    from runners.perpcs.pool import Pool


def closest_sharers(target, sharers, m: int) -> list[int]:
    """Indices of the ``m`` rows of ``sharers`` most cosine-similar to ``target`` (best first)."""
    target = np.asarray(target, dtype=np.float64)
    sharers = np.asarray(sharers, dtype=np.float64)
    sims = sharers @ target / (np.linalg.norm(sharers, axis=1) * np.linalg.norm(target) + 1e-12)
    return [int(i) for i in np.argsort(-sims, kind="stable")[:m]]


def retrieve_pefts(pool: "Pool", users: Sequence["User"], task: str, user: "User",
                   history: Sequence["HistoryItem"], m: int) -> "Assembly":
    """The average of the ``m`` most similar sharers' whole PEFTs, as an assembly.

    Args:
        pool: The pool (its sharers' ids name users of ``users``).
        users: The dataset's users (the sharers' histories are read from them).
        task: The dataset task.
        user: The target user.
        history: The target user's history the embedding is made from (the training split).
        m: How many sharer PEFTs to average (clipped to the pool's sharers).

    Raises:
        ConfigError: ``m < 1``, or a sharer of the pool is not in ``users``.
    """
    import torch

    if m < 1:
        raise ConfigError(f"perpcs.retrieve={m} must be >= 1 to retrieve PEFTs; use 0 to switch it off")
    started = time.perf_counter()
    by_id = {u.user_id: u for u in users}
    missing = [s for s in pool.sharer_ids if s not in by_id]
    if missing:
        raise ConfigError(f"perpcs.retrieve: sharers {missing} of pool {pool.directory} are not in this data; "
                          "build the pool on the same data")
    people = [dataclasses.replace(user, history=tuple(history)), *(by_id[s] for s in pool.sharer_ids)]
    embeddings = user_embeddings(people, task)
    chosen = closest_sharers(embeddings[0], embeddings[1:], min(m, pool.n_sharers))
    width = len(chosen)
    indices = torch.full((len(pool.modules), width), -1, dtype=torch.long)
    weights = torch.zeros((len(pool.modules), width))
    for module in range(len(pool.modules)):
        sharing = [s for s in chosen if s in set(pool.shared_by(module))]
        for j, s in enumerate(sharing):
            indices[module, j] = s
            weights[module, j] = 1.0 / len(sharing)
    weights = weights.half().float()  # stored as fp16, so a saved assembly reloads identically
    return Assembly(pool.key, width, indices, weights, time.perf_counter() - started, len(history))
