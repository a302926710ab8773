"""The serving bundle of a per-user study: each user's own pick, one bundle for all of them.

A per-user search (``scope: per_user``) gives every user a front of its own. ``export`` with a
pick expression (``knee``, ``max:METRIC``, ``min:METRIC`` with ``where`` clauses) applies it to
each user's study separately; the bundle is written by the one bundle writer
(:func:`search.export.bundle.write_bundle`), as a study's is. What is the cohort's own is here:
picking each user's trial, and ``serving.yaml``'s per-user part: what all users share is said
once, what differs (each user's trial, configuration, memory, retrieval, metrics, MLflow run)
under ``per_user``. ``adapters/<name>`` holds each user's adapter at its own rank; how ``vllm.sh``
serves them (listed, or loaded on demand by rank bucket) is :mod:`search.export.vllm`'s.

``--register NAME`` registers the whole bundle as one version of ``NAME``, logged under the
per-user study's ``cohort`` run (``serving/``), tagged with the study, ``scope=per_user``, the
number of users and the pick; each user's trial run stays named under ``per_user.<user>.mlflow``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from search.errors import ExportError
from search.export.bundle import Bundle, BundleScope, PickedTrial, refuse_cohort_base, write_bundle
from search.export.pick import Pick, parse_pick, pick_trial
from search.execution.per_user import CohortStudy
from search.study.setup import trial_setup, user_setup
from search.study.study import Study, TrialRecord
from search.tracking.registry import Registration, cohort_run, reserve_version
from search.tracking.tracker import Tracker

PER_USER_KEYS = ("trial", "config", "memory", "retrieval", "metrics", "mlflow", "shared_pieces")
PER_USER_NOTE = "per user: per_user.<user>.{key}"


def export_cohort(cohort: CohortStudy, pick: Pick | str, out: str | Path, *, force: bool = False,
                  register: str | None = None, tracking_uri: str | None = None, pool_dir: str | None = None,
                  base_model: str | None = None) -> Bundle:
    """Write one bundle with each user's own pick from its own study.

    Args:
        cohort: a loaded per-user study (:func:`search.execution.per_user.load_cohort`).
        pick: a pick expression applied to each user's study; ``trial:N`` names a trial of one
            study, so it is refused here.
        out, force, pool_dir, base_model: as for :func:`search.export.export_bundle`.
        register: register the bundle as one version of this MLflow model (see the module docstring).
        tracking_uri: the MLflow store for ``register`` (default: the study's, as for ``run``).

    Raises:
        ExportError: ``trial:N``, no user searched yet, a user whose front has nothing the pick
            accepts (named), or what :func:`~search.export.export_bundle` raises.
    """
    parsed = parse_pick(pick) if isinstance(pick, str) else pick
    if parsed.kind == "trial":
        raise ExportError(f"--pick {parsed.text!r}: a per-user study has one front per user; pick by rule "
                          "(knee, max:METRIC, min:METRIC, with 'where ...'), or export one user's study "
                          f"{cohort.name}/users/<name> (the user's directory there) with trial:N")
    if not cohort.studies:
        raise ExportError(f"study {cohort.name!r}: no user has been searched yet; run it first")
    scope = CohortScope(cohort.name, cohort.directory.parent, parsed.text, picked_trials(cohort, parsed, pool_dir))
    return write_bundle(scope, out, force=force, register=register, tracking_uri=tracking_uri, base_model=base_model)


def picked_trials(cohort: CohortStudy, pick: Pick, pool_dir: str | None = None) -> tuple[PickedTrial, ...]:
    """Each searched user's trial by ``pick`` from its own study, with the runner setup of that user."""
    setup = trial_setup(next(iter(cohort.studies.values())).space, pool_dir)
    return tuple(PickedTrial(study, _pick(study, pick, user), user_setup(setup, user), user)
                 for user, study in cohort.studies.items())


def _pick(study: Study, pick: Pick, user: str) -> TrialRecord:
    try:
        trial = pick_trial(study, pick)
        refuse_cohort_base(trial)
        return trial
    except ExportError as err:
        raise ExportError(f"user {user!r}: {err}") from err


@dataclass(frozen=True)
class CohortScope(BundleScope):
    """A per-user study's bundle: each user's own picked trial."""

    def manifest(self, parts: Sequence[dict[str, Any]], registration: Registration | None) -> dict[str, Any]:
        """``serving.yaml`` of the cohort: what all users share once, what differs under ``per_user``."""
        manifests = {p.user: part for p, part in zip(self.picked, parts)}
        shared = dict(parts[0])
        shared.pop("shared_pieces", None)
        notes = {key: PER_USER_NOTE.format(key=key) for key in ("memory", "config", "metrics", "mlflow")}
        shared.update(
            study=self.name, scope="per_user", trial=None, pick=self.pick, users=sorted(manifests),
            adapters={user: entry for m in manifests.values() for user, entry in m["adapters"].items()},
            retrieval={"k": None, "note": PER_USER_NOTE.format(key="retrieval")}, **notes,
            per_user={user: {key: m[key] for key in PER_USER_KEYS if key in m} for user, m in manifests.items()},
        )
        if registration is not None:
            shared["mlflow"] = {**registration.entry(), "trials": notes["mlflow"]}
        return shared

    def register(self, tracker: Tracker, name: str) -> Registration:
        """One version holding every user's adapter, under the cohort run's ``serving/``."""
        users = len(self.picked)
        tags = {"study": self.name, "scope": "per_user", "users": str(users), "pick": self.pick,
                "base_model": self.picked[0].setup.model.name}
        return reserve_version(tracker, cohort_run(tracker, self.name, self.study_dir / self.name), name, tags,
                               f"per-user study {self.name}: {users} users, each with its own pick {self.pick!r} "
                               "(serving.yaml per_user)", f"pers-search serving bundles of study {self.name}")
