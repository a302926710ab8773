"""The bridge from a study to the trial runner: a configuration in, validation metrics out.

Storage is an exact function of the configuration, so it is also given to the optimiser as
a known objective (computed in the acquisition, never learned).
"""

from __future__ import annotations

from typing import Any


class TrialObjective:
    """Runs a trial per configuration with a fixed setup; reports validation metrics."""

    def __init__(self, setup) -> None:
        self.setup = setup

    def __call__(self, config: dict[str, Any]):
        from runners.trial import run_trial
        from search.api import Evaluation

        result = run_trial(config, self.setup, split="val")
        per_user = {u.user_id: dict(u.metrics) for u in result.users}
        return Evaluation(values=dict(result.metrics), user_attrs={"users": per_user})

    def test_metrics(self, config: dict[str, Any]) -> dict[str, float]:
        """The configuration evaluated once on the test queries."""
        from runners.trial import run_trial

        return dict(run_trial(config, self.setup, split="test").metrics)

    def known_objectives(self) -> dict[str, Any]:
        """``storage_bytes`` as the exact size of the adapter file the trial would write."""
        from runners.memory import memory_from_config, storage_bytes
        from runners.session import session_for

        session = session_for(self.setup)
        layout, spec = session.layout, self.setup.training

        def storage(config: dict[str, Any]) -> float:
            memory = memory_from_config(config, layout.n_layers, spec.lora_alpha_ratio, spec.lora_dropout)
            return float(storage_bytes(layout, memory))

        return {"storage_bytes": storage}
