"""The one bundle writer: the serving bundle of picked trials (its files: :mod:`search.export`).

A bundle serves the users of one or more picked trials. A study's export picks one trial, which
serves every user of the study (:func:`export_bundle`); a per-user study's export picks one trial
per user from the user's own study (:func:`search.export.cohort.export_cohort`). Both say what
they picked as a :class:`BundleScope` and :func:`write_bundle` writes it, into a staging directory
of ``--out`` (:mod:`search.export.bundle_files`):

1. each picked trial's adapters (copied when the study kept them, else trained again and checked)
   and its users' profiles;
2. the base model (unless ``--base-model``), and every adapter pointed at it;
3. when ``vllm.sh`` lists the adapters (a few of them), their zero-padded copies under ``vllm/``;
4. ``request.json``, ``trial.json``, ``vllm.sh`` (:mod:`search.export.vllm`) and ``summary.json``;
5. with ``--register``, a reserved model version (:mod:`search.tracking.registry`);
6. ``serving.yaml``, once, last, atomically;

then, with ``--register``, logs the bundle to the version's run, and moves it into ``--out``
(``serving.yaml`` last).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from runners.files import user_file_name, user_file_names
from runners.memory import ADAPTER_FILE, MemoryConfig, storage_bytes
from runners.metrics.storage import file_bytes
from runners.perpcs.assembly import ASSEMBLY_FILE
from runners.perpcs.serving import write_serving_adapter
from runners.session import Session, session_for
from runners.spec import FLAT_KEYS, TrialConfig, TrialSetup
from runners.trial import run_trial
from search.errors import ExportError
from search.export.bundle_files import (
    FILE_LIST, STAGING_PREFIX, begin_staging, finish_staging, prepare_out, read_list,
)
from search.export.manifest import REQUEST_FILE, ServedAdapter, serving_manifest, write_yaml
from search.export.pick import Pick, pick_trial
from search.export.prompt import MANIFEST, completion_request, personalized_prompt, profile_path, write_profile
from search.export.summary import SUMMARY_FILE, bundle_summary
from search.export.vllm import SCRIPT, ServingPlan, loads_on_demand, pad_adapter, serving_plan, vllm_script
from search.study.cohort_file import COHORT_FILE, USERS_DIR, read_cohort_file
from search.study.setup import trial_setup, user_setup
from search.study.study import Study, TrialRecord
from search.tracking.registry import (
    Registration, connect_tracker, log_bundle, reserve_version, trial_run, withdraw,
)
from search.tracking.tracker import Tracker

TRIAL_FILE = "trial.json"
BUNDLE_ENTRIES = (MANIFEST, SCRIPT, TRIAL_FILE, REQUEST_FILE, SUMMARY_FILE, "adapters", "vllm", "base", "state",
                  "users")
BASE_IN_BUNDLE = "./base"  # the base model's files, copied into the bundle
ADAPTER_CONFIG = "adapter_config.json"
# What must agree between the study's model and a --base-model directory.
_SAME_CONFIG = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size")


@dataclass(frozen=True)
class PickedTrial:
    """A trial picked for a bundle: its study, the trial, and the runner setup of the users it serves
    (the study's users, or one user of a per-user study)."""

    study: Study
    trial: TrialRecord
    setup: TrialSetup
    user: str | None = None


@dataclass(frozen=True)
class BundleScope(ABC):
    """What a bundle serves: one study's picked trial, or each user's pick of a per-user study.

    Attributes:
        name: the study's name (the MLflow experiment of ``--register``).
        study_dir: the directory holding the study.
        pick: the pick expression.
        picked: the picked trials, in the order the bundle lists them.
    """

    name: str
    study_dir: Path
    pick: str
    picked: tuple[PickedTrial, ...]

    @abstractmethod
    def manifest(self, parts: Sequence[dict[str, Any]], registration: Registration | None) -> dict[str, Any]:
        """``serving.yaml`` but its ``vllm`` entry, from each picked trial's manifest (in ``picked`` order)."""

    @abstractmethod
    def register(self, tracker: Tracker, name: str) -> Registration:
        """Reserve a version of registered model ``name`` for the bundle
        (:func:`search.tracking.registry.reserve_version`)."""

    def trials(self) -> dict[str, TrialRecord]:
        """The picked trials by user (``all`` for a study's one trial)."""
        return {p.user or "all": p.trial for p in self.picked}

    def trial_record(self) -> Any:
        """What ``trial.json`` holds: the trial record, or each user's."""
        trials = self.trials()
        return {u: t.to_json() for u, t in trials.items()} if self.picked[0].user else trials["all"].to_json()


@dataclass(frozen=True)
class StudyScope(BundleScope):
    """A study's bundle: one picked trial for all its users."""

    def manifest(self, parts: Sequence[dict[str, Any]], registration: Registration | None) -> dict[str, Any]:
        """The trial's manifest, its ``mlflow`` entry naming the registered version when there is one."""
        (manifest,) = parts
        if registration is not None:
            manifest["mlflow"] = registration.entry()
        return manifest

    def register(self, tracker: Tracker, name: str) -> Registration:
        """A version under the trial's run (the study logged first where it was not)."""
        (picked,) = self.picked
        study, trial = picked.study, picked.trial
        tags = {"study": study.name, "trial": str(trial.number), "pick": self.pick, "base_model": picked.setup.model.name}
        return reserve_version(tracker, trial_run(tracker, study, trial), name, tags,
                               f"study {study.name}, trial {trial.number}, picked by {self.pick!r}",
                               f"pers-search serving bundles of study {study.name}")


@dataclass(frozen=True)
class Bundle:
    """What :func:`write_bundle` wrote.

    Attributes:
        out: the bundle directory.
        trials: the picked trials by user (``all`` for a study's one trial).
        manifest: the contents of ``serving.yaml``.
        command: the vLLM command line (the default server's).
        summary: the contents of ``summary.json``.
        registered: ``(model name, version)`` when registered in MLflow.
    """

    out: Path
    trials: dict[str, TrialRecord]
    manifest: dict[str, Any]
    command: str
    summary: dict[str, Any]
    registered: tuple[str, str] | None = None

    @property
    def trial(self) -> TrialRecord:
        """The exported trial of a study's bundle (the first user's, of a per-user study's)."""
        return next(iter(self.trials.values()))


@dataclass(frozen=True)
class _Written:
    """One picked trial once its files are in the bundle: its session, configuration, adapters, profiles."""

    picked: PickedTrial
    session: Session
    config: TrialConfig
    adapters: tuple[ServedAdapter, ...]
    profiles: dict[str, str]


def unfinished_bundle(out: Path) -> bool:
    """``out`` holds what a stopped export leaves: a file list of an export that did not end."""
    listed = read_list(Path(out))
    return listed is not None and not listed.complete


def export_bundle(study: Study, pick: Pick | str, out: str | Path, *, force: bool = False,
                  register: str | None = None, tracking_uri: str | None = None,
                  pool_dir: str | None = None, base_model: str | None = None) -> Bundle:
    """Write the serving bundle of the picked trial (see the module docstring of :mod:`search.export`).

    Adapters are copied from the trial's kept ``adapter_dir`` when the study kept them; otherwise
    the configuration is run again (runs are deterministic under the training seed) with the
    adapters written into the bundle, and the regenerated predictions must equal the recorded ones.
    Every path the bundle names is relative to it, so it can be copied anywhere; files are
    world-readable (0644; ``vllm.sh`` 0755).

    Args:
        study: a loaded study.
        pick: a pick expression or a parsed :class:`Pick`.
        out: the bundle directory.
        force: replace an earlier bundle in ``out``: the files its file list names
            (:mod:`search.export.bundle_files`); files no export wrote are never removed.
        register: register the bundle as a version of this MLflow registered model.
        tracking_uri: the MLflow store for ``register`` (default as for ``run``).
        pool_dir: the Per-Pcs pool of a trial that used shared pieces (default: the pool
            found under ``$PERS_SEARCH_HOME/pools`` for the study's model and data).
        base_model: the base model's directory as serving will see it; it must hold the study's
            model (its ``config.json`` is checked). Default: the base model is copied into
            ``base/``.

    Raises:
        ExportError: bad pick; ``out`` inside a study directory, holding files no export wrote, or
            an earlier bundle without ``force``; a ``base_model`` that is not the study's model; a
            trial on the cohort adapter (not bundled yet); or an adapter that does not reproduce the trial.
        TrackingError: ``register`` and the tracking store is unreachable.
    """
    trial = pick_trial(study, pick)
    refuse_cohort_base(trial)
    text = pick if isinstance(pick, str) else pick.text
    setup, owner = trial_setup(study.space, pool_dir), cohort_user(study)
    picked = PickedTrial(study, trial, user_setup(setup, owner) if owner is not None else setup)
    scope = StudyScope(study.name, study.directory.parent, text, (picked,))
    return write_bundle(scope, out, force=force, register=register, tracking_uri=tracking_uri, base_model=base_model)


def refuse_cohort_base(trial: TrialRecord) -> None:
    """A bundle serves the base model with each user's own adapter; it does not carry the cohort adapter yet.

    Raises:
        ExportError: the trial's memory sits on the cohort adapter (``lora.base=cohort``).
    """
    on = trial.config.get(FLAT_KEYS["base"], "none")
    if on != "none":
        raise ExportError(f"export: trial {trial.number} runs on the {on} adapter ({FLAT_KEYS['base']}={on}); a bundle "
                          f"serves the base model with each user's own adapter and does not carry the cohort adapter "
                          f"yet; pick a trial with {FLAT_KEYS['base']}=none")


def cohort_user(study: Study) -> str | None:
    """The user of one user's study of a per-user study (``<cohort>/users/<name>``), else None.

    Its space is the cohort's (all users); the runner narrowed it to the user, and so must export.
    """
    directory = study.directory
    if directory.parent.name != USERS_DIR or not (directory.parent.parent / COHORT_FILE).is_file():
        return None
    users = read_cohort_file(directory.parent.parent.name, directory.parent.parent.parent).users
    return next((user for user in users if user_file_name(user) == directory.name), None)


def write_bundle(scope: BundleScope, out: str | Path, *, force: bool = False, register: str | None = None,
                 tracking_uri: str | None = None, base_model: str | None = None) -> Bundle:
    """Write the bundle of ``scope``'s picked trials (the steps of the module docstring).

    Args:
        scope: what the bundle serves.
        out, force, register, tracking_uri, base_model: as for :func:`export_bundle`.

    Raises:
        ExportError: as for :func:`export_bundle`.
        TrackingError: ``register`` and the tracking store is unreachable or refuses.
    """
    tracker = connect_tracker(scope.name, scope.study_dir, tracking_uri) if register else None
    first = session_for(scope.picked[0].setup)
    given = _check_base_model(first, base_model) if base_model else None
    out = prepare_out(out, force)
    stage = begin_staging(out)
    staged = _stage_files(scope, first, given, stage)
    registration = scope.register(tracker, register) if tracker is not None else None
    try:
        manifest = _write_manifest(scope, staged, registration, stage)
        if registration is not None:
            log_bundle(tracker, registration, stage)
    except BaseException:
        if registration is not None:
            withdraw(tracker, registration)
        raise
    finish_staging(out, stage)
    registered = (registration.name, registration.version) if registration else None
    return Bundle(out, scope.trials(), manifest, staged.plan.command(), staged.summary, registered)


@dataclass(frozen=True)
class _Staged:
    """The bundle in its staging directory but ``serving.yaml``: what the manifest is made of."""

    written: list[_Written]
    base: str
    in_bundle: bool
    example: dict[str, str] | None
    plan: ServingPlan
    summary: dict[str, Any]


def _stage_files(scope: BundleScope, first: Session, given: str | None, stage: Path) -> _Staged:
    """Steps 1-4 of the module docstring: every file of the bundle but ``serving.yaml``."""
    written = []
    for picked in scope.picked:  # a loop, not a comprehension: the warnings' stack levels count on it
        written.append(_write_trial(picked, stage))
    written = _ready_for_vllm(written, stage)
    base = given or _copy_base_model(first, stage)
    _point_adapters_at(stage, base)
    example = _example_request(written, stage)
    adapters = [a for w in written for a in w.adapters]
    plan = serving_plan(adapters, base, first.setup.model.name, _slot_bytes_per_rank(first), _model_bytes(first))
    users = list(dict.fromkeys(s.user.user_id for w in written for s in w.session.splits))
    profiles = sum(file_bytes(stage / path) for w in written for path in w.profiles.values())
    summary = bundle_summary(users, adapters, plan, profiles)
    (stage / TRIAL_FILE).write_text(json.dumps(scope.trial_record(), indent=1, default=str), encoding="utf-8")
    (stage / SCRIPT).write_text(vllm_script(plan), encoding="utf-8")
    (stage / SUMMARY_FILE).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return _Staged(written, base, given is None, example, plan, summary)


def _write_manifest(scope: BundleScope, staged: _Staged, registration: Registration | None,
                    stage: Path) -> dict[str, Any]:
    """Step 6: ``serving.yaml``, written once, atomically, as the bundle's last file; then its modes."""
    parts = [serving_manifest(w.picked.study, w.picked.trial, w.config, scope.pick, w.session, w.adapters,
                              staged.base, staged.in_bundle, w.profiles, staged.example) for w in staged.written]
    manifest = {**scope.manifest(parts, registration), "vllm": staged.plan.entry()}
    write_yaml(stage / MANIFEST, manifest)
    _publish(stage)
    return manifest


def _write_trial(picked: PickedTrial, stage: Path) -> _Written:
    """A picked trial's adapters and its users' profiles, into the staging directory."""
    session = session_for(picked.setup)
    config = TrialConfig.from_flat(picked.trial.config, session.layout.n_layers)
    adapters = _write_adapters(picked.trial, config, session, stage)
    return _Written(picked, session, config, tuple(adapters), _write_profiles(session, config, stage))


def _ready_for_vllm(written: list[_Written], stage: Path) -> list[_Written]:
    """Warn of ranks vLLM cannot serve; when ``vllm.sh`` lists the adapters, pad those whose rank vLLM
    does not take (``vllm/<name>``). Adapters loaded on demand are served as they are."""
    adapters = [a for w in written for a in w.adapters]
    too_big = sorted({a.rank for a in adapters if a.bucket is None})
    if too_big:
        warnings.warn(f"merged LoRA rank {too_big[-1]} is above 256, the largest --max-lora-rank vLLM serves; "
                      "serve with PEFT or pick a trial with a smaller lora.count * lora.rank",
                      UserWarning, stacklevel=5)
    if loads_on_demand(adapters):
        return written
    return [dataclasses.replace(w, adapters=tuple(_padded(stage, a) for a in w.adapters)) for w in written]


def _padded(stage: Path, adapter: ServedAdapter) -> ServedAdapter:
    """The adapter with a zero-padded copy under ``vllm/`` when its rank is not one vLLM takes."""
    if adapter.bucket is None or adapter.bucket == adapter.rank:
        return adapter
    target = stage / "vllm" / adapter.path.name
    pad_adapter(adapter.path, target, adapter.bucket)
    return dataclasses.replace(adapter, vllm_path=target)


def _slot_bytes_per_rank(session: Session) -> int:
    """fp16 bytes of a LoRA of rank 1 on every target projection of every layer (A: d_in, B: d_out)."""
    return 2 * sum(d_in + d_out for _, _, d_in, d_out in session.layout.modules)


def _model_bytes(session: Session) -> int:
    """The base model's weights in bytes, as loaded."""
    return sum(p.numel() * p.element_size() for p in session.loaded.model.parameters())


def _publish(out: Path) -> None:
    """Bundle files 0644 and directories 0755 (``vllm.sh`` 0755), whatever wrote them."""
    for name in (*BUNDLE_ENTRIES, FILE_LIST):
        top = out / name
        if not top.exists():
            continue
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            path.chmod(0o755 if path.is_dir() or path.name == SCRIPT else 0o644)


def _check_base_model(session, base_model: str) -> str:
    """``--base-model``: a model directory whose config matches the study's model; its absolute path.

    Raises:
        ExportError: naming the file, the key and what to give instead.
    """
    path = Path(base_model).expanduser()
    config_file = path / "config.json"
    source = session.loaded.source_dir or "none: the tiny model has no directory; leave --base-model out"
    if not config_file.is_file():
        raise ExportError(f"--base-model {base_model}: {config_file} is missing; give the directory of the study's "
                          f"base model ({source}), or leave --base-model out to copy it into the bundle")
    theirs = json.loads(config_file.read_text(encoding="utf-8"))
    ours = session.loaded.model.config.to_dict()
    for key in _SAME_CONFIG:
        if key in ours and theirs.get(key) != ours[key]:
            raise ExportError(f"--base-model {base_model}: {config_file} has {key}={theirs.get(key)!r} but the study's "
                              f"model {session.setup.model.name!r} has {key}={ours[key]!r}; give the directory of "
                              f"the model the study ran on ({source})")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise ExportError(f"--base-model {base_model}: no tokenizer files (tokenizer.json, tokenizer_config.json); "
                          "prompts are counted with the base model's tokenizer, so the directory must hold it")
    return str(path.resolve())


def _copy_base_model(session, out: Path) -> str:
    """The base model's files into ``out/base`` (saved from memory for ``tiny``); returns ``./base``."""
    target = out / "base"
    if session.loaded.source_dir:
        shutil.copytree(session.loaded.source_dir, target, ignore=shutil.ignore_patterns(".*"), dirs_exist_ok=True)
    else:
        session.loaded.model.save_pretrained(str(target), safe_serialization=True)
        session.loaded.tokenizer.save_pretrained(str(target))
    return BASE_IN_BUNDLE


def _point_adapters_at(out: Path, base: str) -> None:
    """Set ``base_model_name_or_path`` of every adapter in the bundle (PEFT writes None)."""
    for name in ("adapters", "vllm", "state"):
        for config_file in sorted((out / name).glob(f"*/{ADAPTER_CONFIG}")):
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = base
            config_file.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")


def _write_profiles(session, config: TrialConfig, out: Path) -> dict[str, str]:
    """Each served user's profile items (what retrieval draws from) as ``users/<name>/profile.jsonl``.

    The users the trial ran for: a ``users`` split's held-out test users (no validation queries)
    are not served, since the search never trained them.
    """
    if config.rag_k <= 0:
        return {}
    profiles = {}
    for split in (s for s in session.splits if s.val):
        relative = profile_path(split.user.user_id)
        write_profile(out / relative, split.train)
        profiles[split.user.user_id] = relative
    return profiles


def _example_request(written: Sequence[_Written], out: Path) -> dict[str, str] | None:
    """``request.json``: the first user's first validation query as a vLLM completion request."""
    found = next(((w, s) for w in written for s in w.session.splits if s.val), None)
    if found is None:
        return None
    w, split = found
    session, query, user = w.session, split.val[0].input, split.user.user_id
    spec = session.setup.training
    prompt = personalized_prompt(session.task, query, split.train, w.config.retriever, w.config.rag_k,
                                 session.loaded.tokenizer, spec.max_prompt_tokens, user_id=user,
                                 cache=session.index_cache)
    model = next((a.lora_name for a in w.adapters if a.user == user), session.setup.model.name)
    body = completion_request(model, prompt, spec.max_new_tokens)
    (out / REQUEST_FILE).write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"user": user, "query": query}


def _write_adapters(trial: TrialRecord, config: TrialConfig, session: Session, out: Path) -> list[ServedAdapter]:
    """The trial's adapters in the bundle (``adapters/<name>``; with shared pieces, ``state/<name>`` too)."""
    memory = MemoryConfig.of(config, session.setup.training)
    shared = config.uses_pool
    if not memory.enabled and not shared:
        return []
    users = _user_dirs(trial, config, session, out / ("state" if shared else "adapters"))
    _check_storage(trial, users, session.layout, memory)
    if shared:
        return _serving_adapters(users, session, out)
    rank = config.merged_rank
    return [ServedAdapter(user, user_dir, user_dir, rank, (user_dir / ADAPTER_FILE).stat().st_size)
            for user, user_dir in users]


def _user_dirs(trial: TrialRecord, config: TrialConfig, session, root: Path) -> list[tuple[str, Path]]:
    """``(user id, directory)`` of each user of the trial: copied when the study kept them, else
    trained again, and moved into ``root`` (which may already hold other users', in a per-user
    study's bundle). Directories are named by :func:`runners.files.user_file_name`; the user id is
    known from the session's users, never read back from a directory's name."""
    names = user_file_names(s.user.user_id for s in session.splits)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root.parent))
    try:
        kept = _kept_adapters(trial, names)
        if kept is not None:
            for name in names.values():
                shutil.copytree(kept / name, staging / name)
        else:
            _rerun(trial, config, session, staging)
        users = []
        for user, name in names.items():
            source, target = staging / name, root / name
            if not source.is_dir():
                raise ExportError(f"export: trial {trial.number} stored nothing for user {user!r} ({source.name}); "
                                  "the study and the runner disagree")
            if target.exists():
                raise ExportError(f"export: {target} exists already: two picked trials serve user {user!r}")
            shutil.move(str(source), target)
            users.append((user, target))
        return users
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _kept_adapters(trial: TrialRecord, names: dict[str, str]) -> Path | None:
    """The trial's kept adapter directory when it holds every user's directory, else None (train again).

    A study kept by an older version named the directory of an id such as ``alice/bob`` otherwise
    (``alice_bob``, which another user may own): such users' adapters are trained again.
    """
    kept = trial.user_attrs.get("adapter_dir")
    if not kept or not Path(kept).is_dir():
        return None
    missing = [user for user, name in names.items() if not (Path(kept) / name).is_dir()]
    if missing:
        warnings.warn(f"trial {trial.number}: {kept} holds no adapter directory for users {missing} under their "
                      "file names (an older version named them otherwise); training the trial again",
                      UserWarning, stacklevel=8)
        return None
    return Path(kept)


def _check_storage(trial: TrialRecord, users: list[tuple[str, Path]], layout, memory: MemoryConfig) -> None:
    """Each user's files add up to the storage the trial reported (and the formula, for own memory)."""
    expected = storage_bytes(layout, memory)
    for user, user_dir in users:
        own = user_dir / ADAPTER_FILE
        size = own.stat().st_size if own.exists() else 0
        recorded = trial.user_attrs.get("users", {}).get(user, {}).get("storage_bytes")
        total = size + (file_bytes(user_dir / ASSEMBLY_FILE) if (user_dir / ASSEMBLY_FILE).exists() else 0)
        if size != expected or (recorded is not None and int(recorded) != total):
            raise ExportError(f"export: {user_dir} holds {total} bytes ({own.name}: {size}) but trial {trial.number} "
                              f"reported {recorded} (adapter formula {expected}); the study and the runner disagree")


def _serving_adapters(users: list[tuple[str, Path]], session, out: Path) -> list[ServedAdapter]:
    """One PEFT adapter per user from its own memory and its shared pieces (see ``runners.perpcs.serving``)."""
    adapters = []
    for user, user_dir in users:
        path, rank = write_serving_adapter(user_dir, session.pool, out / "adapters" / user_dir.name,
                                           session.loaded.source_dir)
        adapters.append(ServedAdapter(user, path.parent, path.parent, rank, path.stat().st_size))
    return adapters


def _rerun(trial: TrialRecord, config: TrialConfig, session, root: Path) -> None:
    result = run_trial(config, session.setup, split="val", adapter_dir=root)
    recorded = trial.user_attrs.get("predictions")
    if recorded is None:
        warnings.warn(f"trial {trial.number} has no recorded predictions; the re-run adapters are not checked",
                      UserWarning, stacklevel=8)
        return
    for user in result.users:
        if list(user.predictions) != list(recorded.get(user.user_id, [])):
            raise ExportError(
                f"export: re-running trial {trial.number} gave other generations for user {user.user_id!r} "
                f"({list(user.predictions)[:1]} vs {list(recorded.get(user.user_id, []))[:1]}); this machine "
                "does not reproduce the study; run the study with --keep-adapters so export copies the adapters"
            )
