"""A live trial session: what stays loaded across the trials of one process.

Loading the base model, reading and splitting the data and building retrieval indexes are
done once per setup; every trial then attaches fresh memory to the same base model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from runners.spec import TrialSetup


@dataclass
class Session:
    """Loaded model, split users and caches for one :class:`TrialSetup`."""

    setup: TrialSetup

    @cached_property
    def loaded(self):
        from runners.models import load_model

        return load_model(self.setup.model)

    @cached_property
    def layout(self):
        from runners.memory import layout_of

        return layout_of(self.loaded.model, self.setup.model.targets)

    @cached_property
    def dataset(self):
        from runners.data.load import load_dataset

        d = self.setup.data
        return load_dataset(d.source, format=d.format, outputs=d.outputs, task=d.task)

    @cached_property
    def splits(self):
        from runners.data.splits import split_dataset

        d = self.setup.data
        return split_dataset(
            self.dataset, seed=d.split_seed, users=d.users, val_fraction=d.val_fraction,
            heldout_fraction=d.heldout_fraction, max_val_queries=d.max_val_queries,
        )

    @cached_property
    def index_cache(self):
        from runners.retrieval.cache import IndexCache

        return IndexCache()

    @cached_property
    def pool(self):
        """The Per-Pcs pool for this setup (raises ``PoolMissing`` with the build command)."""
        from runners.perpcs.pool import require_pool

        return require_pool(self.setup, self.setup.pool_dir)

    @property
    def task(self) -> str:
        return self.dataset.task

    @cached_property
    def _persona_contents(self) -> dict:
        return {}

    def persona_content(self, user):
        """The token counts Persona-F1 scores against: the user's profile and full history (cached)."""
        if user.user_id not in self._persona_contents:
            from runners.data.pairs import memory_texts
            from runners.metrics.persona import content_counter

            text = "\n".join([user.profile, *memory_texts(self.task, user.history)])
            self._persona_contents[user.user_id] = content_counter(text)
        return self._persona_contents[user.user_id]


_SESSIONS: dict[TrialSetup, Session] = {}


def session_for(setup: TrialSetup) -> Session:
    """The process-wide session of ``setup`` (created on first use)."""
    if setup not in _SESSIONS:
        _SESSIONS[setup] = Session(setup)
    return _SESSIONS[setup]
