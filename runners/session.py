"""A live trial session: what stays loaded across the trials of one process.

The costly parts are shared by every session of the process that needs them, whatever its
cohort: the base model (and its layout) by the model settings (:class:`ModelSpec`), the dataset
by the data source settings (source, format, outputs, task), the retrieval indexes and the
Persona-F1 contents by the data, the Per-Pcs pool by its directory. A session narrows them to its
setup's cohort: its splits are views on the shared dataset's users. A per-user study, which makes
a setup (so a session) per user, therefore loads the base model and reads the data once per
process, and so does a worker process that runs trials of many users.

What stays cached is bounded (:class:`SharedCache`): the last few sessions, models, datasets and
pools, and the Persona-F1 contents of the last users, are held; an older one is dropped unless
something still uses it, in which case it is found again rather than built twice. Nothing a
trial does stays on the shared model: ``runners.trial`` detaches a trial's memory when the trial
ends, failed or not.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref
from collections import Counter, OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Generic, Hashable, TypeVar

from runners.cohort import cohort_key, ensure_cohort_adapter, merged_cohort_model
from runners.data.load import load_dataset
from runners.data.pairs import memory_texts
from runners.data.splits import split_dataset
from runners.memory import layout_of
from runners.metrics import UserContent, user_content_of
from runners.models import load_model
from runners.perpcs.pool import require_pool
from runners.retrieval.cache import IndexCache, default_cache_dir
from runners.spec import DataSpec, TrialSetup

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import Dataset, User, UserSplit
    from runners.memory import Layout
    from runners.models import LoadedModel
    from runners.perpcs.pool import Pool

V = TypeVar("V")
# bf16 autocast on a CPU runs its matrix products through oneDNN, which compiles kernels per tensor
# shape and caches them, up to 1,024 in each of two caches (oneDNN's and ideep's) by default. Every
# user's sequence lengths are new shapes, so a process training user after user grew by about
# 30 MB a user on the tiny model, 40 MB on the embedded one, for hundreds of users. A few dozen
# entries hold what one training step reuses. Read by oneDNN at its first kernel, so set at the
# first model load; a value set in the environment is kept.
KERNEL_CACHE_VARIABLES = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
KERNEL_CACHE_ENTRIES = 64
# How many of each kept in a process (beyond those still in use).
KEEP_SESSIONS = 16
KEEP_MODELS = 2
KEEP_DATASETS = 4
KEEP_POOLS = 2
KEEP_CONTENTS = 256


class SharedCache(Generic[V]):
    """Values built once per key and shared, the ``keep`` most recently used held.

    An older value is dropped from the cache, but while anything else still holds it (a session,
    a trial) it is found by its key again instead of being built a second time: a process never
    has two values of one key alive at once.

    Args:
        keep: How many values the cache holds itself (least recently used dropped first).

    Attributes:
        builds: Values built so far (cache misses).
        hits: Lookups answered without building.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.builds = 0
        self.hits = 0
        self._held: OrderedDict[Hashable, V] = OrderedDict()
        self._alive: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._lock = threading.RLock()

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The value of ``key``, built by ``build()`` when no live one exists (one build at a time)."""
        with self._lock:
            value = self._held.get(key)
            if value is None:
                value = self._alive.get(key)
            if value is None:
                value = build()
                self.builds += 1
                self._remember(key, value)
            else:
                self.hits += 1
            self._held[key] = value
            self._held.move_to_end(key)
            while len(self._held) > self.keep:
                self._held.popitem(last=False)
            return value

    def _remember(self, key: Hashable, value: V) -> None:
        try:
            self._alive[key] = value
        except TypeError:  # not weakly referable: held while in the most recent ``keep`` only
            pass

    def __len__(self) -> int:
        """Values alive (held, or still used elsewhere)."""
        with self._lock:
            return len(set(self._held) | set(self._alive.keys()))

    def clear(self) -> None:
        """Drop every held value (values still used elsewhere live on until released)."""
        with self._lock:
            self._held.clear()


_MODELS: SharedCache["LoadedModel"] = SharedCache(KEEP_MODELS)
_LAYOUTS: SharedCache["Layout"] = SharedCache(KEEP_MODELS)
_DATASETS: SharedCache["Dataset"] = SharedCache(KEEP_DATASETS)
_INDEXES: SharedCache[IndexCache] = SharedCache(KEEP_DATASETS)
_CONTENTS: SharedCache["UserContent"] = SharedCache(KEEP_CONTENTS)
_POOLS: SharedCache["Pool"] = SharedCache(KEEP_POOLS)
_SESSIONS: SharedCache["Session"] = SharedCache(KEEP_SESSIONS)
_COHORT_MODELS: SharedCache[Any] = SharedCache(KEEP_MODELS)  # base models with the cohort adapter merged in
CACHES: dict[str, SharedCache] = {"sessions": _SESSIONS, "models": _MODELS, "layouts": _LAYOUTS,
                                  "datasets": _DATASETS, "indexes": _INDEXES, "contents": _CONTENTS, "pools": _POOLS,
                                  "cohort_models": _COHORT_MODELS}


def _file_stamp(path: str | None) -> tuple:
    """A file's resolved path, modification time and size (``()`` for ``demo``, None or a missing file)."""
    if path is None or not Path(path).is_file():
        return ()
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size


def data_source_key(data: DataSpec) -> tuple:
    """What identifies a dataset as loaded: source, format, outputs and task (files by path, time and size).

    Two setups with the same key read the same users, whatever their cohort (``users``,
    ``user_ids``) and split settings; a file changed on disk gets a new key.
    """
    return data.source, data.format, data.outputs, data.task, _file_stamp(data.source), _file_stamp(data.outputs)


@dataclass
class Session:
    """One :class:`TrialSetup`'s view of the process's shared model, data and caches."""

    setup: TrialSetup

    @cached_property
    def loaded(self) -> "LoadedModel":
        """The base model and tokenizer on their device (loaded once per process and model settings)."""
        def load() -> "LoadedModel":
            bound_kernel_caches()
            return load_model(self.setup.model)

        return _MODELS.get(self.setup.model, load)

    @cached_property
    def cohort_model(self):
        """The base model with the cohort adapter merged in (trained on first use on the whole
        cohort, ``setup.cohort`` when this session is one user's, then read from the tool's home:
        :mod:`runners.cohort`); one merged copy per process for all the cohort's users."""
        cohort = self if self.setup.cohort is None else session_for(
            dataclasses.replace(self.setup, data=self.setup.cohort, cohort=None))
        return _COHORT_MODELS.get(cohort_key(cohort.setup),
                                  lambda: merged_cohort_model(cohort, ensure_cohort_adapter(cohort)))

    def base_model(self, base: str):
        """The model a trial's memory sits on: the base model (``none``) or :attr:`cohort_model`."""
        return self.cohort_model if base == "cohort" else self.loaded.model

    @cached_property
    def layout(self) -> "Layout":
        """The shapes of the model's target projections."""
        return _LAYOUTS.get(self.setup.model, lambda: layout_of(self.loaded.model, self.setup.model.targets))

    @cached_property
    def _data_key(self) -> tuple:
        return data_source_key(self.setup.data)

    @cached_property
    def dataset(self) -> "Dataset":
        """Every user of the data source (read once per process and data source)."""
        d = self.setup.data
        return _DATASETS.get(self._data_key, lambda: load_dataset(d.source, format=d.format, outputs=d.outputs,
                                                                  task=d.task))

    @cached_property
    def splits(self) -> "tuple[UserSplit, ...]":
        """The cohort's users, each split into training, held-out, validation and test parts."""
        d = self.setup.data
        return tuple(split_dataset(
            self.dataset, seed=d.split_seed, users=d.users, user_ids=d.user_ids, val_fraction=d.val_fraction,
            heldout_fraction=d.heldout_fraction, max_val_queries=d.max_val_queries, test_split=d.test_split,
            test_users_fraction=d.test_users_fraction,
        ))

    @cached_property
    def index_cache(self) -> IndexCache:
        """Retrieval indexes, built once per user, retriever and history (shared by the data's sessions)."""
        return _INDEXES.get((self._data_key, str(default_cache_dir())), IndexCache)

    @cached_property
    def pool(self) -> "Pool":
        """The Per-Pcs pool for this setup (raises ``PoolMissing`` with the build command)."""
        found = require_pool(self.setup, self.setup.pool_dir)
        key = (str(found.directory.resolve()), found.key, found.index.get("created"))
        return _POOLS.get(key, lambda: found)

    @property
    def task(self) -> str:
        """The data's task (``demo``, ``LaMP_4``, ``meddialogue`` ...)."""
        return self.dataset.task

    def user_content(self, user: "User") -> UserContent:
        """What Persona-F1 and the copy rate score an answer against: the user's profile and full
        history, prepared once per user and data (shared by the process's sessions)."""
        def build() -> UserContent:
            return user_content_of("\n".join([user.profile, *memory_texts(self.task, user.history)]))

        return _CONTENTS.get((self._data_key, user.user_id), build)

    def persona_content(self, user: "User") -> Counter:
        """The token counts Persona-F1 scores against (those of :meth:`user_content`)."""
        return self.user_content(user).tokens


def bound_kernel_caches() -> None:
    """Cap the process's oneDNN kernel caches (:data:`KERNEL_CACHE_VARIABLES`) unless the environment sets them.

    Takes effect when called before the process's first bf16 kernel on a CPU (the caches read
    their capacity once); the variables also reach the worker processes started later.
    """
    for name in KERNEL_CACHE_VARIABLES:
        os.environ.setdefault(name, str(KERNEL_CACHE_ENTRIES))


def session_for(setup: TrialSetup) -> Session:
    """The process-wide session of ``setup`` (created on first use; the last few are kept)."""
    return _SESSIONS.get(setup, lambda: Session(setup))


def cache_info() -> dict[str, dict[str, int]]:
    """Per shared cache of this process: values alive, builds and hits (``models.builds`` counts model loads)."""
    return {name: {"alive": len(cache), "builds": cache.builds, "hits": cache.hits} for name, cache in CACHES.items()}


def clear_caches() -> None:
    """Drop everything this process's caches hold (what is still in use elsewhere lives on until released)."""
    for cache in CACHES.values():
        cache.clear()
