"""A live trial session: what stays loaded across the trials of one process.

Loading the base model, reading and splitting the data and building retrieval indexes are
done once per setup; every trial then attaches fresh memory to the same base model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from runners.cohort import ensure_cohort_adapter, merged_cohort_model
from runners.data.load import load_dataset
from runners.data.pairs import memory_texts
from runners.data.splits import split_dataset
from runners.memory import layout_of
from runners.metrics import UserContent, user_content_of
from runners.models import load_model
from runners.perpcs.pool import require_pool
from runners.retrieval.cache import IndexCache
from runners.spec import TrialSetup

if TYPE_CHECKING:  # pragma: no cover
    from runners.data.types import Dataset, User, UserSplit
    from runners.memory import Layout
    from runners.models import LoadedModel
    from runners.perpcs.pool import Pool
    from runners.retrieval.cache import IndexCache


@dataclass
class Session:
    """Loaded model, split users and caches for one :class:`TrialSetup`."""

    setup: TrialSetup
    _contents: dict[str, UserContent] = field(default_factory=dict, repr=False)

    @cached_property
    def loaded(self) -> "LoadedModel":
        """The base model and tokenizer on their device (loaded on first use)."""
        return load_model(self.setup.model)

    @cached_property
    def cohort_model(self):
        """The base model with the cohort adapter merged in (trained on first use, then read from
        the tool's home: :mod:`runners.cohort`)."""
        return merged_cohort_model(self, ensure_cohort_adapter(self))

    def base_model(self, base: str):
        """The model a trial's memory sits on: the base model (``none``) or :attr:`cohort_model`."""
        return self.cohort_model if base == "cohort" else self.loaded.model

    @cached_property
    def layout(self) -> "Layout":
        """The shapes of the model's target projections."""
        return layout_of(self.loaded.model, self.setup.model.targets)

    @cached_property
    def dataset(self) -> "Dataset":
        """Every user of the data source."""
        d = self.setup.data
        return load_dataset(d.source, format=d.format, outputs=d.outputs, task=d.task)

    @cached_property
    def splits(self) -> "tuple[UserSplit, ...]":
        """The cohort's users, each split into training, held-out, validation and test parts."""
        d = self.setup.data
        return tuple(split_dataset(
            self.dataset, seed=d.split_seed, users=d.users, user_ids=d.user_ids, val_fraction=d.val_fraction,
            heldout_fraction=d.heldout_fraction, max_val_queries=d.max_val_queries,
        ))

    @cached_property
    def index_cache(self) -> "IndexCache":
        """Retrieval indexes, built once per user, retriever and history."""
        return IndexCache()

    @cached_property
    def pool(self) -> "Pool":
        """The Per-Pcs pool for this setup (raises ``PoolMissing`` with the build command)."""
        return require_pool(self.setup, self.setup.pool_dir)

    @property
    def task(self) -> str:
        """The data's task (``demo``, ``LaMP_4``, ``meddialogue`` ...)."""
        return self.dataset.task

    def user_content(self, user: "User") -> UserContent:
        """What Persona-F1 and the copy rate score an answer against: the user's profile and full
        history, prepared once per user."""
        if user.user_id not in self._contents:
            text = "\n".join([user.profile, *memory_texts(self.task, user.history)])
            self._contents[user.user_id] = user_content_of(text)
        return self._contents[user.user_id]

    def persona_content(self, user: "User") -> Counter:
        """The token counts Persona-F1 scores against (those of :meth:`user_content`)."""
        return self.user_content(user).tokens


_SESSIONS: dict[TrialSetup, Session] = {}


def session_for(setup: TrialSetup) -> Session:
    """The process-wide session of ``setup`` (created on first use)."""
    if setup not in _SESSIONS:
        _SESSIONS[setup] = Session(setup)
    return _SESSIONS[setup]
