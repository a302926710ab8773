"""Sharer selection: which users (never test users of the cohort) share their LoRA pieces.

Strategies (paper, sections 2.3 and 5):

- ``kmeans`` (the default, the paper's "history cluster"): embed each history item with the
  MiniLM sentence encoder, average per user, cluster the users with k-means into K clusters
  (sklearn ``KMeans``, k-means++, ``n_init=10``, ``max_iter=3000`` as the reference) and take the
  most active user (longest history; the first one wins ties) of each cluster.
- ``most-active``: the K users with the longest histories (ties: dataset order).
- ``random``: K users drawn with a seeded random source.

Reference differences: the reference embeds with DeBERTa-v3-large and averages unnormalised
item embeddings; here MiniLM (the project's bundled encoder) with unit-length item embeddings.
The reference also drops a cluster whose most active user has 10 items or fewer, which can give
fewer than K sharers; here every cluster gives one sharer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from runners.data.pairs import memory_texts
from runners.data.types import User
from runners.errors import ConfigError
from runners.retrieval.dense import load_encoder

STRATEGIES = ("kmeans", "most-active", "random")


@dataclass(frozen=True)
class Sharer:
    """A chosen sharer and the cluster it represents (-1 when not clustered)."""

    user: User
    cluster: int = -1


def select_sharers(candidates: Sequence[User], task: str, k: int, strategy: str = "kmeans",
                   seed: int = 0) -> list[Sharer]:
    """Choose ``k`` sharers among ``candidates``.

    Args:
        candidates: Users who may share (the cohort's test users already removed).
        task: The dataset task (how history items become texts).
        k: The number of sharers.
        strategy: ``kmeans`` (on the bundled MiniLM's embeddings), ``most-active`` or ``random``.
        seed: Seeds k-means and the random strategy.

    Returns:
        ``k`` distinct sharers, in candidate order.

    Raises:
        ConfigError: an unknown strategy, ``k < 1``, or fewer candidates than ``k``.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"pool build: --strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    if k < 1:
        raise ConfigError(f"pool build: --sharers {k} must be >= 1; pass e.g. --sharers 8")
    pool = [u for u in candidates if u.history]
    if len(pool) < k:
        raise ConfigError(
            f"pool build: --sharers {k} but only {len(pool)} users with history are outside the test cohort; "
            f"pass --sharers {len(pool)} or fewer, or use a smaller cohort (data.users)"
        )
    if strategy == "most-active":
        order = sorted(range(len(pool)), key=lambda i: (-len(pool[i].history), i))[:k]
        return [Sharer(pool[i]) for i in sorted(order)]
    if strategy == "random":
        return [Sharer(pool[i]) for i in sorted(random.Random(seed).sample(range(len(pool)), k))]
    labels = cluster_users(user_embeddings(pool, task), k, seed)
    return [Sharer(pool[i], c) for i, c in sorted(most_active_per_cluster(pool, labels).items(), key=lambda t: t[0])]


def user_embeddings(users: Sequence[User], task: str):
    """The mean of each user's unit-length MiniLM history-item embeddings (the bundled MiniLM),
    shape (users, 384).

    Args:
        users: Users with at least one history item.
        task: The dataset task.

    Returns:
        A float32 numpy array, one row per user.
    """
    encoder = load_encoder()
    texts = [memory_texts(task, u.history) for u in users]
    flat = [t for group in texts for t in group]
    vectors = np.asarray(encoder.encode(flat, batch_size=64, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
    bounds = np.cumsum([0] + [len(g) for g in texts])
    return np.stack([vectors[bounds[i]:bounds[i + 1]].mean(axis=0) for i in range(len(users))])


def cluster_users(embeddings, k: int, seed: int = 0):
    """k-means labels of the user embeddings (sklearn, reference settings).

    Returns:
        An int array of cluster labels, one per row.
    """
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, random_state=seed, n_init=10, max_iter=3000).fit_predict(embeddings)


def most_active_per_cluster(users: Sequence[User], labels) -> dict[int, int]:
    """The most active user of each cluster: ``{user position: cluster}``.

    The longest history wins; on a tie the first user (lowest position) wins.
    """
    best: dict[int, int] = {}
    for i, label in enumerate(int(v) for v in labels):
        if label not in best or len(users[i].history) > len(users[best[label]].history):
            best[label] = i
    return {i: label for label, i in best.items()}
