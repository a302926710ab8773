"""What the runs of a study hold, as plain mappings (no MLflow): the study run's tags, a trial run's
metrics and the tags that mark what a trial was."""

from __future__ import annotations

from search.numbers import finite
from search.study.study import PRUNED_ATTR
from search.study.study import ORIGIN_ATTR, Study, TrialRecord, TrialState


def study_tags(study: Study) -> dict[str, str]:
    """The study run's tags: the study, its directory, optimiser and budget, objectives, constraints, model,
    data and space."""
    space = study.space
    return {
        "pers_search.study": study.name,
        "pers_search.study_dir": str(study.directory.resolve()),
        "optimizer": space.optimizer.name,
        "trials": str(space.optimizer.trials),
        "init_trials": str(space.optimizer.init_trials),
        "seed": str(space.optimizer.seed),
        "objectives": ",".join(f"{m}:{d}" for m, d in space.objectives.items()),
        "constraints": "; ".join(space.constraints) or "none",
        "model": space.model.name,
        "data": f"{space.data.source} ({space.data.users} users)",
        "space": space.source,
    }


def trial_metrics(trial: TrialRecord) -> dict[str, float]:
    """Numeric validation values, ``test_``-prefixed test values and timings of a trial."""
    out = {k: float(v) for k, v in trial.values.items() if finite(v)}
    out.update({f"test_{k}": float(v) for k, v in trial.test_values.items() if finite(v)})
    if trial.seconds is not None:
        out["trial_seconds"] = float(trial.seconds)
    if trial.suggest_seconds is not None:
        out["suggest_seconds"] = float(trial.suggest_seconds)
    return out


def marks_tags(trial: TrialRecord) -> dict[str, str]:
    """A trial run's tags for what the trial was beyond its state: ``origin`` (``warm_start``: a point of
    the earlier users' front) and ``stopped_early`` (``true``, with ``stopped_at``, the checkpoint)."""
    tags = {}
    if ORIGIN_ATTR in trial.user_attrs:
        tags["origin"] = str(trial.user_attrs[ORIGIN_ATTR])
    if trial.state is TrialState.PRUNED:
        tags["stopped_early"] = "true"
        tags["stopped_at"] = str((trial.user_attrs.get(PRUNED_ATTR) or {}).get("checkpoint", "-"))
    return tags
