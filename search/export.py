"""Pick a configuration from a study's front and export it to serving.

Pick expressions: ``knee``, ``max:METRIC``, ``min:METRIC``, ``trial:N``, each optionally
followed by ``where METRIC OP NUMBER [and ...]`` (``OP`` in ``<, <=, >, >=, ==, !=``); a metric
named ``test_X`` reads the test value of ``X``. ``knee``/``max``/``min`` choose among the front's
trials (ties go to the lower trial number); ``trial:N`` takes any completed trial.

The serving bundle written by :func:`export_bundle` into ``DIR``::

    serving.yaml           base model, adapters per user, retrieval, prompt, metrics, vLLM command
    vllm.sh                the ready ``vllm serve ... --enable-lora --lora-modules ...`` line
    trial.json             the trial record as the study holds it
    adapters/<user>/       PEFT adapter (adapter_config.json + fp16 adapter_model.safetensors),
                           merged rank n*r, the exact file whose size is the trial's storage_bytes;
                           for a trial with shared pieces (perpcs.top_k or perpcs.retrieve), the
                           user's own memory and assembled pieces as one adapter of the summed rank
    state/<user>/          (shared pieces only) what the trial stored per user: the assembly file
                           (and own adapter), whose sizes add up to the trial's storage_bytes
    vllm/<user>/           the same adapter zero-padded to the rank vLLM is started with
                           (only when n*r is not already 8, 16, ..., 256)
    base/                  the base model, when it has no directory of its own (the tiny model)
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from search.errors import SearchError
from search.space import Condition, parse_condition
from search.study import Study, TrialRecord, TrialState

VLLM_RANKS = (8, 16, 32, 64, 128, 256)
BUNDLE_ENTRIES = ("serving.yaml", "vllm.sh", "trial.json", "adapters", "vllm", "base", "state")
_HEAD_RE = re.compile(r"^(?:(knee)|(max|min):\s*([A-Za-z_][\w.\-]*)|(trial):\s*(\d+))$")


class ExportError(SearchError, ValueError):
    """A pick expression is malformed or matches nothing, or a bundle cannot be written."""


# --------------------------------------------------------------------------- the front as a table
def _mask(value: Any) -> Any:
    return "".join(str(int(v)) for v in value) if isinstance(value, (list, tuple)) else value


def front_rows(study: Study) -> list[dict[str, Any]]:
    """The front's trials as flat rows: number, knee flag, validation and test objectives,
    the configuration (layer masks as ``0110...``) and the MLflow run id."""
    knee = study.knee_trial()
    rows = []
    for t in sorted(study.pareto_trials(), key=lambda t: t.number):
        row: dict[str, Any] = {"trial": t.number, "knee": knee is not None and knee.number == t.number}
        row.update({m: t.values.get(m) for m in study.space.objectives})
        row.update({f"test_{m}": t.test_values.get(m) for m in study.space.objectives})
        row.update({k: _mask(v) for k, v in t.config.items()})
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        rows.append(row)
    return rows


def rows_to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV text (columns in first-seen order; missing values empty)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows([{k: ("" if v is None else v) for k, v in row.items()} for row in rows])
    return buffer.getvalue()


def front_text(study: Study) -> str:
    """The front as indented lines, for error messages."""
    rows = front_rows(study)
    if not rows:
        return "  (the front is empty: no completed feasible trial)"
    objectives = list(study.space.objectives)
    return "\n".join(
        f"  trial {r['trial']}{' (knee)' if r['knee'] else ''}: "
        + ", ".join(f"{m}={r[m]:.6g}" for m in objectives if r[m] is not None) for r in rows
    )


# --------------------------------------------------------------------------- pick expressions
@dataclass(frozen=True)
class Pick:
    """A parsed pick expression.

    Attributes:
        kind: ``knee``, ``max``, ``min`` or ``trial``.
        metric: the metric of ``max``/``min``.
        number: the trial number of ``trial``.
        where: conditions every candidate must satisfy.
        text: the expression as given.
    """

    kind: str
    metric: str | None = None
    number: int | None = None
    where: tuple[Condition, ...] = field(default_factory=tuple)
    text: str = ""


def parse_pick(text: str) -> Pick:
    """Parse a pick expression (see the module docstring).

    Raises:
        ExportError: the expression does not follow the grammar.
    """
    usage = "use knee, max:METRIC, min:METRIC or trial:N, optionally with 'where METRIC>=NUMBER [and ...]'"
    parts = re.split(r"\s+where\s+", text.strip(), maxsplit=1)
    head, tail = parts[0].strip(), (parts[1] if len(parts) > 1 else None)
    match = _HEAD_RE.match(head)
    if match is None:
        raise ExportError(f"--pick {text!r}: cannot read {head!r}; {usage}")
    where: list[Condition] = []
    if tail is not None:
        for item in re.split(r"\s+and\s+", tail.strip()):
            try:
                where.append(parse_condition(item))
            except ValueError as err:
                raise ExportError(f"--pick {text!r}: condition {item!r} is not 'METRIC OP NUMBER'; {usage}") from err
    if match.group(1):
        return Pick("knee", where=tuple(where), text=text)
    if match.group(2):
        return Pick(match.group(2), metric=match.group(3), where=tuple(where), text=text)
    if where:
        raise ExportError(f"--pick {text!r}: trial:N names one trial and takes no where clause; drop it")
    return Pick("trial", number=int(match.group(5)), text=text)


def metric_value(trial: TrialRecord, metric: str) -> float | None:
    """A trial's value of ``metric`` (``test_X`` reads the test value of ``X``), or None."""
    if metric in trial.values:
        return trial.values[metric]
    if metric.startswith("test_"):
        return trial.test_values.get(metric[len("test_"):])
    return None


def pick_trial(study: Study, pick: Pick | str) -> TrialRecord:
    """The trial a pick expression selects.

    Raises:
        ExportError: bad expression, unknown metric, no such completed trial, or no front
            trial satisfies the conditions (the message lists the front).
    """
    pick = parse_pick(pick) if isinstance(pick, str) else pick
    if pick.kind == "trial":
        return _numbered(study, pick)
    known = sorted({m for t in study.completed() for m in t.values}
                   | {f"test_{m}" for t in study.completed() for m in t.test_values})
    for metric in [c.param for c in pick.where] + ([pick.metric] if pick.metric else []):
        if metric not in known:
            raise ExportError(f"--pick {pick.text!r}: study {study.name!r} has no metric {metric!r}; "
                              f"use one of: {', '.join(known) or '(no completed trial)'}")
    candidates = [t for t in study.pareto_trials() if all(_holds(t, c) for c in pick.where)]
    if pick.metric:
        candidates = [t for t in candidates if metric_value(t, pick.metric) is not None]
    if not candidates:
        if not study.pareto_trials():
            why = "the front is empty"
        elif pick.where:
            why = "no front trial satisfies " + " and ".join(f"{c.param}{c.op}{c.value:g}" for c in pick.where)
        else:
            why = f"no front trial has {pick.metric}"
        raise ExportError(f"--pick {pick.text!r} matches nothing in study {study.name!r}: {why}; "
                          f"relax the condition or pick one of:\n{front_text(study)}")
    if pick.kind == "knee":
        return _knee(study, candidates)
    sign = 1.0 if pick.kind == "max" else -1.0
    return max(candidates, key=lambda t: (sign * float(metric_value(t, pick.metric)), -t.number))


def _holds(trial: TrialRecord, condition: Condition) -> bool:
    value = metric_value(trial, condition.param)
    return value is not None and condition.holds(value)


def _numbered(study: Study, pick: Pick) -> TrialRecord:
    if pick.number >= len(study.trials):
        raise ExportError(f"--pick {pick.text!r}: study {study.name!r} has trials 0..{len(study.trials) - 1}; "
                          f"pick an existing one, e.g. from the front:\n{front_text(study)}")
    trial = study.trials[pick.number]
    if trial.state is not TrialState.COMPLETED:
        raise ExportError(f"--pick {pick.text!r}: trial {trial.number} is {trial.state.value}"
                          f"{' (' + trial.error + ')' if trial.error else ''}; pick a completed trial, e.g.:\n"
                          f"{front_text(study)}")
    return trial


def _knee(study: Study, candidates: list[TrialRecord]) -> TrialRecord:
    from search.pareto import knee_index

    i = knee_index([t.values for t in candidates], study.space.objectives, study.space.parsed_constraints)
    return candidates[0 if i is None else i]


# --------------------------------------------------------------------------- vLLM ranks and padding
def vllm_rank(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``, or None above 256."""
    return next((r for r in VLLM_RANKS if r >= rank), None)


def pad_adapter(src: str | Path, dst: str | Path, rank: int) -> Path:
    """Copy a PEFT LoRA adapter with its rank raised to ``rank`` by zero rows/columns.

    ``lora_A`` (r x d_in) gets ``rank - r`` zero rows, ``lora_B`` (d_out x r) as many zero
    columns, and ``lora_alpha`` is scaled by ``rank / r`` so ``alpha / r`` is unchanged: the
    product ``B A`` and thus the model are exactly the same.

    Returns:
        The written safetensors path.

    Raises:
        ExportError: ``rank`` is below the adapter's rank.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    config = json.loads((src / "adapter_config.json").read_text(encoding="utf-8"))
    old = int(config["r"])
    if rank < old:
        raise ExportError(f"pad_adapter: target rank {rank} < adapter rank {old} in {src}; pad upwards only")
    tensors = {}
    with safe_open(str(src / "adapter_model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
        for name in handle.keys():
            t = handle.get_tensor(name)
            if name.endswith("lora_A.weight"):
                t = torch.cat([t, t.new_zeros(rank - old, t.shape[1])], dim=0)
            elif name.endswith("lora_B.weight"):
                t = torch.cat([t, t.new_zeros(t.shape[0], rank - old)], dim=1)
            tensors[name] = t.contiguous()
    dst.mkdir(parents=True, exist_ok=True)
    path = dst / "adapter_model.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    config.update(r=rank, lora_alpha=float(config["lora_alpha"]) * rank / old)
    (dst / "adapter_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def vllm_command(base: str, adapters: Mapping[str, str], max_lora_rank: int | None) -> str:
    """The ``vllm serve`` line for a base model and per-user adapters (empty dict: no LoRA)."""
    import shlex

    parts = ["vllm", "serve", shlex.quote(base)]
    if adapters:
        parts += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(len(adapters)),
                  "--lora-modules", *(shlex.quote(f"{name}={path}") for name, path in adapters.items())]
    return " ".join(parts)


# --------------------------------------------------------------------------- the bundle
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
            raise ExportError(f"--out {out}: directory exists and is not empty; choose a new directory or pass --force")
        for name in BUNDLE_ENTRIES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def export_bundle(study: Study, pick: Pick | str, out: str | Path, *, force: bool = False,
                  register: str | None = None, tracking_uri: str | None = None,
                  pool_dir: str | None = None) -> Bundle:
    """Write the serving bundle of the picked trial (see the module docstring).

    Adapters are copied from the trial's kept ``adapter_dir`` when the study kept them; otherwise
    the configuration is run again (runs are deterministic under the training seed) with the
    adapters written into the bundle, and the regenerated predictions must equal the recorded ones.

    Args:
        study: a loaded study.
        pick: a pick expression or a parsed :class:`Pick`.
        out: the bundle directory.
        force: write into a non-empty ``out`` (replacing an earlier bundle's files).
        register: register the bundle as a version of this MLflow registered model.
        tracking_uri: the MLflow store for ``register`` (default as for ``run``).
        pool_dir: the Per-Pcs pool of a trial that used shared pieces (default: the pool
            found under ``$PERS_SEARCH_HOME/pools`` for the study's model and data).

    Raises:
        ExportError: bad pick, non-empty ``out``, or an adapter that does not reproduce the trial.
        TrackingError: ``register`` and the tracking store is unreachable.
    """
    trial = pick_trial(study, pick)
    pick_text = pick if isinstance(pick, str) else pick.text
    tracker = _tracker(study, tracking_uri) if register else None
    out = prepare_out(out, force)
    from search.cli import setup_from_space
    from runners.session import session_for

    session = session_for(setup_from_space(study.space, pool_dir))
    adapters = _write_adapters(study, trial, session, out)
    base = _base_model(session, out)
    manifest = _manifest(study, trial, pick_text, session, adapters, base)
    (out / "trial.json").write_text(json.dumps(trial.to_json(), indent=1, default=str), encoding="utf-8")
    command = manifest["vllm"]["command"]
    (out / "vllm.sh").write_text("#!/bin/sh\n# serve the exported adapters with vLLM\nexec " + command + "\n",
                                 encoding="utf-8")
    (out / "vllm.sh").chmod(0o755)
    _write_yaml(out / "serving.yaml", manifest)
    registered = _register(tracker, study, trial, out, register, manifest) if tracker else None
    return Bundle(out, trial, manifest, command, registered)


@dataclass(frozen=True)
class _Adapter:
    user: str
    path: Path
    vllm_path: Path
    rank: int
    storage_bytes: int


def _write_adapters(study: Study, trial: TrialRecord, session, out: Path) -> list[_Adapter]:
    from runners.memory import ADAPTER_FILE, memory_from_config

    spec = session.setup.training
    memory = memory_from_config(trial.config, session.layout.n_layers, spec.lora_alpha_ratio, spec.lora_dropout)
    shared = any(int(trial.config.get(k, 0) or 0) > 0 for k in ("perpcs.top_k", "perpcs.retrieve"))
    if not memory.enabled and not shared:
        return []
    root = out / ("state" if shared else "adapters")
    kept = trial.user_attrs.get("adapter_dir")
    if kept and Path(kept).is_dir():
        shutil.copytree(kept, root)
    else:
        _rerun(study, trial, session, root)
    users = sorted(p for p in root.iterdir() if p.is_dir())
    _check_storage(trial, users, session.layout, memory)
    if shared:
        adapters = _serving_adapters(users, session, out)
    else:
        rank = memory.count * memory.rank
        adapters = [_vllm_ready(out, user_dir, rank, (user_dir / ADAPTER_FILE).stat().st_size) for user_dir in users]
    too_big = sorted({a.rank for a in adapters if vllm_rank(a.rank) is None})
    if too_big:
        warnings.warn(f"merged LoRA rank {too_big[-1]} is above 256, the largest --max-lora-rank vLLM serves; "
                      "serve with PEFT or pick a trial with a smaller lora.count * lora.rank",
                      UserWarning, stacklevel=3)
    return adapters


def _check_storage(trial: TrialRecord, users: list[Path], layout, memory) -> None:
    """Each user's files add up to the storage the trial reported (and the formula, for own memory)."""
    from runners.memory import ADAPTER_FILE, storage_bytes
    from runners.metrics.storage import file_bytes
    from runners.perpcs.assembly import ASSEMBLY_FILE

    expected = storage_bytes(layout, memory)
    for user_dir in users:
        own = user_dir / ADAPTER_FILE
        size = own.stat().st_size if own.exists() else 0
        recorded = trial.user_attrs.get("users", {}).get(user_dir.name, {}).get("storage_bytes")
        total = size + (file_bytes(user_dir / ASSEMBLY_FILE) if (user_dir / ASSEMBLY_FILE).exists() else 0)
        if size != expected or (recorded is not None and int(recorded) != total):
            raise ExportError(f"export: {user_dir} holds {total} bytes ({own.name}: {size}) but trial {trial.number} "
                              f"reported {recorded} (adapter formula {expected}); the study and the runner disagree")


def _serving_adapters(users: list[Path], session, out: Path) -> list[_Adapter]:
    """One PEFT adapter per user from its own memory and its shared pieces (see ``runners.perpcs.serving``)."""
    from runners.perpcs.serving import write_serving_adapter

    adapters = []
    for user_dir in users:
        path, rank = write_serving_adapter(user_dir, session.pool, out / "adapters" / user_dir.name,
                                           session.loaded.source_dir)
        adapters.append(_vllm_ready(out, path.parent, rank, path.stat().st_size))
    return adapters


def _vllm_ready(out: Path, user_dir: Path, rank: int, size: int) -> _Adapter:
    """The adapter record, with a zero-padded copy under ``vllm/`` when vLLM needs another rank."""
    target = vllm_rank(rank)
    vllm_path = user_dir
    if target is not None and target != rank:
        vllm_path = out / "vllm" / user_dir.name
        pad_adapter(user_dir, vllm_path, target)
    return _Adapter(user_dir.name, user_dir, vllm_path, rank, size)


def _rerun(study: Study, trial: TrialRecord, session, root: Path) -> None:
    from runners.trial import run_trial

    result = run_trial(trial.config, session.setup, split="val", adapter_dir=root)
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


def _base_model(session, out: Path) -> str:
    """The base model's directory; a model without one (``tiny``) is saved into ``out/base``."""
    if session.loaded.source_dir:
        return session.loaded.source_dir
    target = out / "base"
    session.loaded.model.save_pretrained(str(target), safe_serialization=True)
    session.loaded.tokenizer.save_pretrained(str(target))
    return str(target.resolve())


def _manifest(study: Study, trial: TrialRecord, pick: str, session, adapters: list[_Adapter], base: str) -> dict:
    from runners.chat import render_prompt
    from runners.prompts import GENERIC_TASKS, GENERIC_HEADER

    config, spec, task = trial.config, session.setup.training, session.task
    rank = adapters[0].rank if adapters else 0
    max_rank = vllm_rank(rank) if adapters else None
    command = vllm_command(base, {a.user: str(a.vllm_path.resolve()) for a in adapters}, max_rank)
    k = int(config.get("rag.k", 0) or 0)
    return {
        "format": "pers-search-serving/1",
        "study": study.name,
        "trial": trial.number,
        "pick": pick,
        "base_model": {"name": session.setup.model.name, "path": base, "dtype": session.setup.model.dtype},
        "adapters": {a.user: {"path": str(a.path.relative_to(a.path.parents[1])), "rank": a.rank,
                              "storage_bytes": a.storage_bytes,
                              "vllm_path": str(a.vllm_path.relative_to(a.path.parents[1]))} for a in adapters},
        "memory": {"layers": _mask(config.get("lora.layers", [])), "count": int(config.get("lora.count", 0) or 0),
                   "rank": int(config.get("lora.rank", 0) or 0), "merged_rank": rank,
                   "targets": list(session.setup.model.targets)},
        **_shared_pieces(config, session),
        "retrieval": {"k": k, "retriever": config.get("rag.retriever") if k > 0 else None,
                      "corpus": "the user's history items (profile entries)"},
        "prompt": {"task": task, "builder": "runners.prompts.build_prompt + runners.chat.render_prompt",
                   "header": GENERIC_HEADER if task in GENERIC_TASKS else f"LaMP template of {task}",
                   "chat_template": bool(getattr(session.loaded.tokenizer, "chat_template", None)),
                   "chat_format": render_prompt(session.loaded.tokenizer, "{prompt}"),
                   "max_prompt_tokens": spec.max_prompt_tokens, "max_new_tokens": spec.max_new_tokens,
                   "decoding": "greedy"},
        "config": {k: _mask(v) for k, v in config.items()},
        "metrics": {"validation": dict(trial.values), "test": dict(trial.test_values)},
        "mlflow": {"run_id": trial.user_attrs.get("mlflow_run_id")},
        "vllm": {"command": command, "max_lora_rank": max_rank,
                 "note": None if not adapters or max_rank else f"rank {rank} is above 256; vLLM cannot serve it"},
    }


def _shared_pieces(config: Mapping[str, Any], session) -> dict:
    """The ``shared_pieces`` manifest entry of a trial that used the Per-Pcs pool (else nothing)."""
    top_k, retrieve = (int(config.get(k, 0) or 0) for k in ("perpcs.top_k", "perpcs.retrieve"))
    if not top_k and not retrieve:
        return {}
    pool = session.pool
    return {"shared_pieces": {
        "method": "per-pcs" if top_k else "peft-retrieval", "top_k": top_k, "retrieve": retrieve,
        "pool": {"key": pool.key, "path": str(pool.directory.resolve()), "rank": pool.rank,
                 "sharers": len(pool.sharer_ids)},
        "state": "state/<user>/ (what the trial stores: assembly indices and weights, and own adapter)",
        "note": "adapters/<user> materialise own memory + assembled pieces as one LoRA of the summed rank",
    }}


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    import yaml

    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, width=120), encoding="utf-8")


def _tracker(study: Study, tracking_uri: str | None):
    from search.tracking import Tracker

    tracker = Tracker(tracking_uri)
    tracker.connect(study.name, study.directory.parent)
    return tracker


def _register(tracker, study: Study, trial: TrialRecord, out: Path, name: str, manifest: dict) -> tuple[str, str]:
    """Log the bundle to the trial's run (``serving/``) and register it as a model version."""
    from mlflow.exceptions import MlflowException

    tracker.sync(study)
    run_id = tracker.trial_run_id(trial.number)
    client = tracker.client
    manifest["mlflow"] = {"run_id": run_id, "registered_model": name}
    _write_yaml(out / "serving.yaml", manifest)
    client.log_artifacts(run_id, str(out), "serving")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"pers-search serving bundles of study {study.name}")
    source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/serving"
    version = client.create_model_version(
        name, source=source, run_id=run_id,
        tags={"study": study.name, "trial": str(trial.number), "pick": manifest["pick"],
              "base_model": manifest["base_model"]["name"]},
        description=f"study {study.name}, trial {trial.number}, picked by {manifest['pick']!r}",
    )
    manifest["mlflow"]["version"] = str(version.version)
    _write_yaml(out / "serving.yaml", manifest)
    client.log_artifact(run_id, str(out / "serving.yaml"), "serving")
    client.set_tag(run_id, "registered_model", f"{name}/{version.version}")
    return name, str(version.version)
