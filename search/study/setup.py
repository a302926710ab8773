"""From a space to what the trial runner needs: the frozen setup, the space bound to the model,
and the checks that must pass before a study spends its first trial.

No argparse here: the CLI (``search/commands``) turns options into a :class:`Space` and calls these.
"""

from __future__ import annotations

import dataclasses

from runners.session import session_for
from runners.spec import TrialSetup
from runners.trial import reported_metrics
from search.space import Space


def trial_setup(space: Space, pool_dir: str | None = None) -> TrialSetup:
    """The runner's frozen setup: the space's ``model``, ``data`` and ``training`` sections as they are."""
    return TrialSetup(model=space.model, data=space.data, training=space.training, pool_dir=pool_dir)


def user_setup(setup: TrialSetup, user: str) -> TrialSetup:
    """The setup of one user's study (a per-user search): the same settings, the data narrowed to that
    user; the whole cohort's data stays in ``cohort`` (the cohort adapter is trained on it)."""
    return dataclasses.replace(setup, data=dataclasses.replace(setup.data, user_ids=(user,), users=None),
                               cohort=setup.cohort or setup.data)


def bind_to_model(space: Space, pool_dir: str | None = None) -> tuple[Space, TrialSetup]:
    """Load the space's model; return the space with its layer masks sized to the model, and the setup."""
    setup = trial_setup(space, pool_dir)
    return space.bind(session_for(setup).layout.n_layers), setup


def check_reported(space: Space, setup: TrialSetup) -> None:
    """Every objective and constraint metric must be one the runner reports (checked before any trial).

    Raises:
        SpaceError: a metric the trials would not report; the message lists those they do.
    """
    space.check_objectives(set(reported_metrics(session_for(setup).task)))
