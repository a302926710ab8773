"""The serving bundle of a per-user study: each user's own pick, one bundle for all of them.

A per-user search (``scope: per_user``) gives every user a front of its own. ``export`` with a
pick expression (``knee``, ``max:METRIC``, ``min:METRIC`` with ``where`` clauses) applies it to
each user's study separately, then writes one bundle in the layout of :mod:`search.export`:
``adapters/<name>`` holds each user's adapter at its own rank, ``serving.yaml`` lists under
``per_user`` every user's trial, configuration, memory, retrieval and metrics, and ``vllm.sh``
serves every adapter at once (``--max-lora-rank`` is the largest any user needs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runners.session import session_for
from runners.spec import TrialConfig
from search.errors import ExportError
from search.export.bundle import (
    ADAPTER_FILE, _check_base_model, _copy_base_model, _example_request, _point_adapters_at, _publish,
    _write_adapters, _write_profiles,
)
from search.export.bundle_files import begin_staging, finish_staging, prepare_out
from search.export.manifest import _rel, serving_manifest, write_yaml
from search.export.pick import Pick, parse_pick, pick_trial
from search.export.vllm import max_loras, vllm_command, vllm_script
from search.setup import trial_setup, user_setup
from search.study import TrialRecord

if TYPE_CHECKING:
    from search.per_user import CohortStudy

PER_USER_KEYS = ("trial", "config", "memory", "retrieval", "metrics", "mlflow", "shared_pieces")


@dataclass(frozen=True)
class CohortBundle:
    """What :func:`export_cohort` wrote: the bundle directory, each user's trial, the manifest, the vLLM line."""

    out: Path
    trials: dict[str, TrialRecord]
    manifest: dict[str, Any]
    command: str


def export_cohort(cohort: "CohortStudy", pick: Pick | str, out: str | Path, *, force: bool = False,
                  pool_dir: str | None = None, base_model: str | None = None) -> CohortBundle:
    """Write one bundle with each user's own pick from its own study.

    Args:
        cohort: a loaded per-user study (:func:`search.per_user.load_cohort`).
        pick: a pick expression applied to each user's study; ``trial:N`` names a trial of one
            study, so it is refused here.
        out, force, pool_dir, base_model: as for :func:`search.export.export_bundle`.

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
    trials = {user: _pick(study, parsed, user) for user, study in cohort.studies.items()}
    first = next(iter(cohort.studies.values()))
    cohort_setup = trial_setup(first.space, pool_dir)
    cohort_session = session_for(cohort_setup)
    given = _check_base_model(cohort_session, base_model) if base_model else None
    out = prepare_out(out, force)
    stage = begin_staging(out)
    manifests, adapters, example = {}, [], None
    for user, trial in trials.items():
        session = session_for(user_setup(cohort_setup, user))
        config = TrialConfig.from_flat(trial.config, session.layout.n_layers)
        served = _write_adapters(trial, config, session, stage)
        profiles = _write_profiles(session, config, stage)
        if example is None:
            example = _example_request(session, config, stage, served)
        manifests[user] = serving_manifest(cohort.studies[user], trial, config, parsed.text, session, served,
                                           given or "./base", given is None, profiles, example)
        adapters += served
    base = given or _copy_base_model(cohort_session, stage)
    _point_adapters_at(stage, base)
    manifest = _cohort_manifest(cohort, parsed.text, manifests, adapters, base, cohort_session)
    (stage / "trial.json").write_text(json.dumps({u: t.to_json() for u, t in trials.items()}, indent=1,
                                                 default=str), encoding="utf-8")
    slot = next(((a.vllm_path / ADAPTER_FILE).stat().st_size for a in adapters), None)
    command = manifest["vllm"]["command"]
    (stage / "vllm.sh").write_text(vllm_script(command, len(adapters), manifest["vllm"]["max_lora_rank"], slot),
                                   encoding="utf-8")
    write_yaml(stage / "serving.yaml", manifest)
    _publish(stage)
    finish_staging(out, stage)
    _publish(out)
    return CohortBundle(out, trials, manifest, command)


def _pick(study, pick: Pick, user: str) -> TrialRecord:
    try:
        return pick_trial(study, pick)
    except ExportError as err:
        raise ExportError(f"user {user!r}: {err}") from err


def _cohort_manifest(cohort: "CohortStudy", pick: str, manifests: dict[str, dict], adapters, base: str,
                     session) -> dict[str, Any]:
    """``serving.yaml`` of the cohort: what all users share once, what differs under ``per_user``."""
    shared = dict(next(iter(manifests.values())))
    ranks = [m["vllm"]["max_lora_rank"] for m in manifests.values() if m["vllm"]["max_lora_rank"]]
    max_rank = max(ranks) if ranks else None
    name = session.setup.model.name
    command = vllm_command(base, {a.lora_name: f"./{_rel(a.vllm_path)}" for a in adapters}, max_rank,
                           served_name=name)
    notes = [m["vllm"]["note"] for m in manifests.values() if m["vllm"]["note"]]
    shared.update(
        study=cohort.name, scope="per_user", trial=None, pick=pick, users=sorted(manifests),
        adapters={user: entry for m in manifests.values() for user, entry in m["adapters"].items()},
        memory="per user: per_user.<user>.memory",
        retrieval={"k": None, "note": "per user: per_user.<user>.retrieval"},
        config="per user: per_user.<user>.config", metrics="per user: per_user.<user>.metrics",
        mlflow="per user: per_user.<user>.mlflow",
        per_user={user: {key: m[key] for key in PER_USER_KEYS if key in m} for user, m in manifests.items()},
        vllm={**shared["vllm"], "command": command, "max_lora_rank": max_rank,
              "max_loras": max_loras(len(adapters)) if adapters else None,
              "note": "; ".join(notes) or None},
    )
    shared.pop("shared_pieces", None)
    return shared
