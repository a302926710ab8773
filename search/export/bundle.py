"""The serving bundle of a trial picked from a study's front (see :mod:`search.export`)."""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runners.memory import ADAPTER_FILE, MemoryConfig, storage_bytes
from runners.metrics.storage import file_bytes
from runners.perpcs.assembly import ASSEMBLY_FILE
from runners.perpcs.serving import write_serving_adapter
from runners.session import session_for
from runners.spec import FLAT_KEYS, TrialConfig
from runners.trial import run_trial
from search.errors import ExportError
from search.export.manifest import REQUEST_FILE, serving_manifest, write_yaml
from search.export.pick import Pick, pick_trial
from search.export.prompt import completion_request, personalized_prompt, profile_path, write_profile
from search.export.registry import connect_tracker, register_bundle
from search.export.vllm import pad_adapter, vllm_rank, vllm_script
from search.setup import trial_setup
from search.study import Study, TrialRecord

BUNDLE_ENTRIES = ("serving.yaml", "vllm.sh", "trial.json", REQUEST_FILE, "adapters", "vllm", "base", "state", "users")
STAGING_PREFIX = ".staging-"  # adapters being written, moved into the bundle when whole
BASE_IN_BUNDLE = "./base"  # the base model's files, copied into the bundle
ADAPTER_CONFIG = "adapter_config.json"
# What must agree between the study's model and a --base-model directory.
_SAME_CONFIG = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "vocab_size")


@dataclass(frozen=True)
class Bundle:
    """What :func:`export_bundle` wrote.

    Attributes:
        out: the bundle directory.
        trial: the exported trial.
        manifest: the contents of ``serving.yaml``.
        command: the vLLM command line.
        registered: ``(model name, version)`` when registered in MLflow.
    """

    out: Path
    trial: TrialRecord
    manifest: dict[str, Any]
    command: str
    registered: tuple[str, str] | None = None


def prepare_out(out: str | Path, force: bool) -> Path:
    """Make sure ``out`` can take a bundle: missing or empty, or ``force`` (old bundle parts removed).

    Raises:
        ExportError: ``out`` is a file, or a non-empty directory without ``force``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out}: is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            if unfinished_bundle(out):
                raise ExportError(f"--out {out}: holds an unfinished export (bundle files but no serving.yaml: an "
                                  "earlier export was stopped before it ended); pass --force to redo it there, or "
                                  "choose a new directory")
            raise ExportError(f"--out {out}: directory exists and is not empty; choose a new directory or pass --force")
        for target in _export_parts(out):
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _export_parts(out: Path) -> list[Path]:
    """What an export wrote in ``out``: the bundle entries there, its staging directories and a
    half-written manifest's temp file (other files are the user's and stay)."""
    return ([out / name for name in BUNDLE_ENTRIES if (out / name).exists()]
            + list(out.glob(f"{STAGING_PREFIX}*")) + list(out.glob(".serving.yaml.*.tmp")))


def unfinished_bundle(out: Path) -> bool:
    """``out`` holds what a stopped export leaves: bundle parts or staging, but no ``serving.yaml``
    (written last, atomically)."""
    return not (out / "serving.yaml").exists() and bool(_export_parts(out))


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
        force: write into a non-empty ``out`` (replacing an earlier bundle's files).
        register: register the bundle as a version of this MLflow registered model.
        tracking_uri: the MLflow store for ``register`` (default as for ``run``).
        pool_dir: the Per-Pcs pool of a trial that used shared pieces (default: the pool
            found under ``$PERS_SEARCH_HOME/pools`` for the study's model and data).
        base_model: the base model's directory as serving will see it; it must hold the study's
            model (its ``config.json`` is checked). Default: the base model is copied into
            ``base/``.

    Raises:
        ExportError: bad pick, non-empty ``out``, a ``base_model`` that is not the study's model,
            a trial on the cohort adapter (not bundled yet), or an adapter that does not reproduce the trial.
        TrackingError: ``register`` and the tracking store is unreachable.
    """
    trial = pick_trial(study, pick)
    pick_text = pick if isinstance(pick, str) else pick.text
    tracker = connect_tracker(study, tracking_uri) if register else None
    session = session_for(trial_setup(study.space, pool_dir))
    given = _check_base_model(session, base_model) if base_model else None
    on = trial.config.get(FLAT_KEYS["base"], "none")
    if on != "none":
        raise ExportError(f"export: trial {trial.number} runs on the {on} adapter ({FLAT_KEYS['base']}={on}); a bundle "
                          f"serves the base model with each user's own adapter and does not carry the cohort adapter "
                          f"yet; pick a trial with {FLAT_KEYS['base']}=none")
    out = prepare_out(out, force)
    config = TrialConfig.from_flat(trial.config, session.layout.n_layers)
    adapters = _write_adapters(trial, config, session, out)
    base = given or _copy_base_model(session, out)
    _point_adapters_at(out, base)
    profiles = _write_profiles(session, config, out)
    example = _example_request(session, config, out, adapters)
    manifest = serving_manifest(study, trial, config, pick_text, session, adapters, base, given is None, profiles,
                                example)
    (out / "trial.json").write_text(json.dumps(trial.to_json(), indent=1, default=str), encoding="utf-8")
    command = manifest["vllm"]["command"]
    slot = next(((a.vllm_path / ADAPTER_FILE).stat().st_size for a in adapters), None)
    (out / "vllm.sh").write_text(vllm_script(command, len(adapters), manifest["vllm"]["max_lora_rank"], slot),
                                 encoding="utf-8")
    write_yaml(out / "serving.yaml", manifest)
    _publish(out)
    registered = register_bundle(tracker, study, trial, out, register, manifest) if tracker else None
    _publish(out)
    return Bundle(out, trial, manifest, command, registered)


def _publish(out: Path) -> None:
    """Bundle files 0644 and directories 0755 (``vllm.sh`` 0755), whatever wrote them."""
    for name in BUNDLE_ENTRIES:
        top = out / name
        if not top.exists():
            continue
        for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
            path.chmod(0o755 if path.is_dir() or path.name == "vllm.sh" else 0o644)


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
    """Each user's profile items (what retrieval draws from) as ``users/<user>/profile.jsonl``."""
    if config.rag_k <= 0:
        return {}
    profiles = {}
    for split in session.splits:
        relative = profile_path(split.user.user_id)
        write_profile(out / relative, split.train)
        profiles[split.user.user_id] = relative
    return profiles


def _example_request(session, config: TrialConfig, out: Path, adapters) -> dict[str, str] | None:
    """``request.json``: the first user's first validation query as a vLLM completion request."""
    split = next((s for s in session.splits if s.val), None)
    if split is None:
        return None
    query = split.val[0].input
    spec = session.setup.training
    prompt = personalized_prompt(session.task, query, split.train, config.retriever, config.rag_k,
                                 session.loaded.tokenizer, spec.max_prompt_tokens, user_id=split.user.user_id,
                                 cache=session.index_cache)
    user = split.user.user_id
    model = user if any(a.user == user for a in adapters) else session.setup.model.name
    body = completion_request(model, prompt, spec.max_new_tokens)
    (out / REQUEST_FILE).write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"user": user, "query": query}


@dataclass(frozen=True)
class ServedAdapter:
    """One user's exported adapter: where it is, its vLLM-ready copy, its rank and stored bytes."""

    user: str
    path: Path
    vllm_path: Path
    rank: int
    storage_bytes: int


def _write_adapters(trial: TrialRecord, config: TrialConfig, session, out: Path) -> list[ServedAdapter]:
    memory = MemoryConfig.of(config, session.setup.training)
    shared = config.uses_pool
    if not memory.enabled and not shared:
        return []
    users = _user_dirs(trial, config, session, out / ("state" if shared else "adapters"))
    _check_storage(trial, users, session.layout, memory)
    if shared:
        adapters = _serving_adapters(users, session, out)
    else:
        rank = config.merged_rank
        adapters = [_vllm_ready(out, user_dir, rank, (user_dir / ADAPTER_FILE).stat().st_size) for user_dir in users]
    too_big = sorted({a.rank for a in adapters if vllm_rank(a.rank) is None})
    if too_big:
        warnings.warn(f"merged LoRA rank {too_big[-1]} is above 256, the largest --max-lora-rank vLLM serves; "
                      "serve with PEFT or pick a trial with a smaller lora.count * lora.rank",
                      UserWarning, stacklevel=3)
    return adapters


def _user_dirs(trial: TrialRecord, config: TrialConfig, session, root: Path) -> list[Path]:
    """The trial's per-user directories (copied when the study kept them, else trained again), moved
    into ``root``, which may already hold other users' (a per-user study's bundle)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root.parent))
    try:
        kept = trial.user_attrs.get("adapter_dir")
        if kept and Path(kept).is_dir():
            shutil.copytree(kept, staging, dirs_exist_ok=True)
        else:
            _rerun(trial, config, session, staging)
        users = []
        for user_dir in sorted(p for p in staging.iterdir() if p.is_dir()):
            target = root / user_dir.name
            if target.exists():
                raise ExportError(f"export: {target} exists already: two picked trials serve user {user_dir.name!r}")
            shutil.move(str(user_dir), target)
            users.append(target)
        return users
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_storage(trial: TrialRecord, users: list[Path], layout, memory: MemoryConfig) -> None:
    """Each user's files add up to the storage the trial reported (and the formula, for own memory)."""
    expected = storage_bytes(layout, memory)
    for user_dir in users:
        own = user_dir / ADAPTER_FILE
        size = own.stat().st_size if own.exists() else 0
        recorded = trial.user_attrs.get("users", {}).get(user_dir.name, {}).get("storage_bytes")
        total = size + (file_bytes(user_dir / ASSEMBLY_FILE) if (user_dir / ASSEMBLY_FILE).exists() else 0)
        if size != expected or (recorded is not None and int(recorded) != total):
            raise ExportError(f"export: {user_dir} holds {total} bytes ({own.name}: {size}) but trial {trial.number} "
                              f"reported {recorded} (adapter formula {expected}); the study and the runner disagree")


def _serving_adapters(users: list[Path], session, out: Path) -> list[ServedAdapter]:
    """One PEFT adapter per user from its own memory and its shared pieces (see ``runners.perpcs.serving``)."""
    adapters = []
    for user_dir in users:
        path, rank = write_serving_adapter(user_dir, session.pool, out / "adapters" / user_dir.name,
                                           session.loaded.source_dir)
        adapters.append(_vllm_ready(out, path.parent, rank, path.stat().st_size))
    return adapters


def _vllm_ready(out: Path, user_dir: Path, rank: int, size: int) -> ServedAdapter:
    """The adapter record, with a zero-padded copy under ``vllm/`` when vLLM needs another rank."""
    target = vllm_rank(rank)
    vllm_path = user_dir
    if target is not None and target != rank:
        vllm_path = out / "vllm" / user_dir.name
        pad_adapter(user_dir, vllm_path, target)
    return ServedAdapter(user_dir.name, user_dir, vllm_path, rank, size)


def _rerun(trial: TrialRecord, config: TrialConfig, session, root: Path) -> None:
    result = run_trial(config, session.setup, split="val", adapter_dir=root)
    recorded = trial.user_attrs.get("predictions")
    if recorded is None:
        warnings.warn(f"trial {trial.number} has no recorded predictions; the re-run adapters are not checked",
                      UserWarning, stacklevel=4)
        return
    for user in result.users:
        if list(user.predictions) != list(recorded.get(user.user_id, [])):
            raise ExportError(
                f"export: re-running trial {trial.number} gave other generations for user {user.user_id!r} "
                f"({list(user.predictions)[:1]} vs {list(recorded.get(user.user_id, []))[:1]}); this machine "
                "does not reproduce the study; run the study with --keep-adapters so export copies the adapters"
            )
