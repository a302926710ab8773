"""The bridge from a study to the trial runner: a configuration in, validation metrics out.

Storage is an exact function of the configuration, so it is also given to the optimiser as
a known objective (computed in the acquisition, never learned).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from runners.memory import MemoryConfig, storage_bytes
from runners.session import session_for
from runners.monitor import Report
from runners.spec import MonitorSpec, TrialConfig, TrialSetup
from runners.trial import run_trial
from search.execution.executors.base import Evaluation
from search.optimizers.base import KnownObjective
from search.study.study import TrialRecord

# The trial's test-query metrics, measured with the trial's own trained memory and kept out of
# ``values`` (the optimiser never sees them); shown only once the trial is on the front.
TEST_ATTR = "test_metrics"


def artifact_name(config: dict[str, Any]) -> str:
    """A short stable directory name for a configuration's kept adapters.

    A hash of the configuration as the trial received it (already canonical: the optimisers
    return :func:`search.encoding.canonical` configurations); :func:`search.encoding.config_key`
    is the readable de-duplication key, too long for a directory name.
    """
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class TrialObjective:
    """Runs a trial per configuration with a fixed setup; reports validation metrics.

    Args:
        setup: the runner's frozen setup.
        adapter_root: when given, every trial keeps its users' adapters under
            ``adapter_root/<config key>/<name>``, the user's :func:`runners.files.user_file_name`
            (recorded as the ``adapter_dir`` attr).
        monitor: what to report while training when a ``report`` callback is given (early stopping).
        test: every trial also answers the test queries with its trained memory, kept in the
            ``test_metrics`` attr (hidden from the optimiser), so the front's test figures need no
            second training (:meth:`measured_test`).
    """

    def __init__(self, setup: TrialSetup, adapter_root: str | Path | None = None,
                 monitor: MonitorSpec | None = None, test: bool = False) -> None:
        self.setup = setup
        self.adapter_root = Path(adapter_root) if adapter_root else None
        self.monitor = monitor or MonitorSpec()
        self.test = test

    def typed(self, config: dict[str, Any]) -> TrialConfig:
        """The runner's typed configuration of a flat one (checked against the model's layers)."""
        return TrialConfig.from_flat(config, session_for(self.setup).layout.n_layers)

    def __call__(self, config: dict[str, Any], report: Report | None = None) -> Evaluation:
        """Run the trial; ``report`` hears its checkpoints (and may stop it, see ``search.execution.stopping``)."""
        adapter_dir = self.adapter_root / artifact_name(config) if self.adapter_root else None
        result = run_trial(self.typed(config), self.setup, split="val", adapter_dir=adapter_dir,
                           monitor=self.monitor if report else None, report=report, test=self.test)
        attrs: dict[str, Any] = {
            "users": {u.user_id: dict(u.metrics) for u in result.users},
            "predictions": result.predictions,
        }
        if result.test_metrics:
            attrs[TEST_ATTR] = dict(result.test_metrics)
        if adapter_dir is not None:
            attrs["adapter_dir"] = str(adapter_dir)
        return Evaluation(values=dict(result.metrics), user_attrs=attrs)

    def test_metrics(self, config: dict[str, Any]) -> dict[str, float]:
        """The configuration evaluated once on the test queries (trained again)."""
        return dict(run_trial(self.typed(config), self.setup, split="test").metrics)

    @staticmethod
    def measured_test(trial: TrialRecord) -> dict[str, float] | None:
        """The test metrics the trial measured beside its validation ones, or None."""
        kept = trial.user_attrs.get(TEST_ATTR)
        return {k: float(v) for k, v in kept.items()} if kept else None

    def known_objectives(self) -> dict[str, KnownObjective]:
        """``storage_bytes`` as the exact size of the adapter file the trial would write."""
        layout = session_for(self.setup).layout

        def storage(config: dict[str, Any]) -> float:
            return float(storage_bytes(layout, MemoryConfig.of(self.typed(config), self.setup.training)))

        return {"storage_bytes": storage}
