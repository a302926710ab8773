"""The Per-Pcs pool: sharers' LoRA pieces and gates, built once and stored on disk.

Layout of a pool directory (``$PERS_SEARCH_HOME/pools/<key>`` or any ``--pool DIR``):

- ``index.json``: the format tag, the pool's other files (``files``: it is the pool's manifest),
  base model name, layer count, target projections, rank, the modules ``[layer, path, d_in,
  d_out]``, the sharers (user id, history length, cluster, indices of the modules each shares),
  the data fingerprint (source, cohort size, split seed) and the build settings;
- ``pieces.safetensors``: ``"{sharer}.{path}.lora_A"`` (r x d_in) and ``"{sharer}.{path}.lora_B"``
  (d_out x r, the LoRA scale ``alpha/r`` folded in), fp16, for shared pieces only;
- ``gates.safetensors``: ``"{sharer}.{path}.gate"`` (d_in), fp16, for the same pieces.

A pool build writes these files and nothing else, and removes nothing else: it refuses a
directory holding anything but an earlier pool's own files (named in that pool's index), and
``--force`` replaces only those (:func:`check_pool_dir`). The pool is written into a new hidden
directory beside the target and moved into place whole.

The key hashes the base model name, the data fingerprint, the training settings and the pool
settings, so pools for different models, data or settings never collide; :func:`find_pool`
finds the newest pool for a setup's model and data.

Building (:func:`build_pool`): the cohort's users (``split_dataset`` for the setup's data
settings) are excluded; K sharers are chosen among the rest (:mod:`.sharers`); each sharer gets a
LoRA (count 1, rank r) on every layer's target projections, trained on its whole history with
the trial runner's training (:mod:`.history`); its gates are then trained with everything else
frozen (:mod:`.gates`). A sharer shares a seeded random fraction ``share_ratio`` of its pieces
(paper, section 5); only shared pieces are written.

Reference differences: the reference draws shared pieces per module with an unseeded
``random.sample``; here per sharer, seeded by the pool seed and the user id. The reference first
merges a task-adaptation LoRA into the base (its step 1); the pool here builds on the base model
as loaded, like every other trial of the project.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import secrets
import shutil
import time
import zlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from runners.errors import ConfigError, DataError, ModelError
from runners.files import load_safetensors, safe_name
from runners.history import history_examples, train_on_history
from runners.home import tool_home
from runners.memory import MemoryConfig, attach_memory, detach_memory
from runners.metrics.storage import file_bytes
from runners.perpcs.gates import gate_spec, train_gates
from runners.perpcs.sharers import STRATEGIES, select_sharers
from runners.spec import TrialSetup

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from runners.memory import Layout

POOL_FORMAT = "pers-search-perpcs-pool/1"
INDEX_FILE = "index.json"
PIECES_FILE = "pieces.safetensors"
GATES_FILE = "gates.safetensors"
BUILD_HINT = "pers-search pool build --space {space} --sharers 8"
FORMAT_FAMILY = "pers-search-perpcs-pool/"  # any version of the format: a pool this tool wrote
SHOWN = 3  # foreign files named in a refusal
_SHARER_ADAPTER = "m0"  # a sharer's one-adapter memory, as attach_memory names it (runners.memory.adapter_names)


class PoolMissing(ConfigError):
    """A trial needs a Per-Pcs pool and none was found."""

@dataclass(frozen=True)
class PoolSettings:
    """How a pool is built (the ``pool build`` options).

    Attributes:
        sharers: Number of sharers K.
        strategy: ``kmeans``, ``most-active`` or ``random`` (see :mod:`.sharers`).
        rank: LoRA rank r of every piece.
        share_ratio: Fraction of its pieces each sharer shares, in (0, 1].
        gate_steps: Gate-training steps per sharer (paper: about 50).
        gate_lr: Gate-training learning rate (paper: 2e-5).
        sharer_steps: Cap on each sharer's LoRA training steps per phase (None: the setup's).
        seed: Seeds sharer selection and the shared fractions.
    """

    sharers: int = 8
    strategy: str = "kmeans"
    rank: int = 8
    share_ratio: float = 1.0
    gate_steps: int = 50
    gate_lr: float = 2e-5
    sharer_steps: int | None = None
    seed: int = 0

    def check(self) -> None:
        """Raise ConfigError on an out-of-range setting."""
        if not 0.0 < self.share_ratio <= 1.0:
            raise ConfigError(f"pool build: --share-ratio {self.share_ratio} is outside (0, 1]; pass e.g. 0.2 or 1")
        if self.rank < 1:
            raise ConfigError(f"pool build: --rank {self.rank} must be >= 1; pass e.g. --rank 8")
        if self.gate_steps < 1:
            raise ConfigError(f"pool build: --gate-steps {self.gate_steps} must be >= 1; pass e.g. 50")
        if self.sharer_steps is not None and self.sharer_steps < 1:
            raise ConfigError(f"pool build: --steps {self.sharer_steps} must be >= 1, or left out")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"pool build: --strategy {self.strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class ModulePieces:
    """The shared pieces of one module, stacked: ``sharers`` (n,), ``a`` (n, r, d_in),
    ``b`` (n, d_out, r), ``gates`` (n, d_in); fp32 on CPU."""

    sharers: "torch.Tensor"
    a: "torch.Tensor"
    b: "torch.Tensor"
    gates: "torch.Tensor"


class Pool:
    """A pool on disk: its index, with the tensors read on first use.

    Args:
        directory: The pool directory.
        index: The parsed ``index.json``.
    """

    def __init__(self, directory: Path, index: Mapping[str, Any]) -> None:
        self.directory = Path(directory)
        self.index = dict(index)
        self._stacks: dict[str, ModulePieces] = {}

    @property
    def key(self) -> str:
        return str(self.index["key"])

    @property
    def base_model(self) -> str:
        return str(self.index["base_model"])

    @property
    def rank(self) -> int:
        return int(self.index["rank"])

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self.index["targets"])

    @property
    def n_layers(self) -> int:
        return int(self.index["n_layers"])

    @property
    def modules(self) -> tuple[tuple[int, str, int, int], ...]:
        """``(layer, path, d_in, d_out)`` of every module, in model order."""
        return tuple((int(m[0]), str(m[1]), int(m[2]), int(m[3])) for m in self.index["modules"])

    @property
    def sharer_ids(self) -> tuple[str, ...]:
        return tuple(s["user_id"] for s in self.index["sharers"])

    @property
    def n_sharers(self) -> int:
        return len(self.index["sharers"])

    def shared_by(self, module: int) -> list[int]:
        """Indices of the sharers who share the piece of module number ``module``."""
        return [i for i, s in enumerate(self.index["sharers"]) if module in set(s["shared_modules"])]

    @cached_property
    def _tensors(self) -> dict[str, "torch.Tensor"]:
        fix = "rebuild the pool with `pers-search pool build` or pass another --pool"
        tensors = load_safetensors(self.directory / PIECES_FILE, "Per-Pcs pool file", fix)
        tensors.update(load_safetensors(self.directory / GATES_FILE, "Per-Pcs pool file", fix))
        return {name: t.float() for name, t in tensors.items()}

    def piece(self, sharer: int, path: str) -> tuple["torch.Tensor", "torch.Tensor"]:
        """``(A, B)`` of one sharer's piece (fp32; B carries the LoRA scale).

        Raises:
            ConfigError: the sharer does not share this piece.
        """
        try:
            return self._tensors[f"{sharer}.{path}.lora_A"], self._tensors[f"{sharer}.{path}.lora_B"]
        except KeyError as err:
            raise ConfigError(f"pool {self.directory}: sharer {sharer} shares no piece at {path}") from err

    def module_pieces(self, module: int) -> ModulePieces:
        """The shared pieces and gates of module number ``module``, stacked (cached)."""
        import torch

        _, path, d_in, d_out = self.modules[module]
        if path not in self._stacks:
            who = self.shared_by(module)
            t = self._tensors
            self._stacks[path] = ModulePieces(
                sharers=torch.tensor(who, dtype=torch.long),
                a=torch.stack([t[f"{i}.{path}.lora_A"] for i in who]) if who else torch.zeros(0, self.rank, d_in),
                b=torch.stack([t[f"{i}.{path}.lora_B"] for i in who]) if who else torch.zeros(0, d_out, self.rank),
                gates=torch.stack([t[f"{i}.{path}.gate"] for i in who]) if who else torch.zeros(0, d_in),
            )
        return self._stacks[path]

    @property
    def size_bytes(self) -> int:
        """Bytes of the pool directory on disk."""
        return file_bytes(self.directory)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary: sharers, layers, rank, pieces and size on disk."""
        sharers = [{"user_id": s["user_id"], "history_items": s["history_items"], "cluster": s["cluster"],
                    "pieces": len(s["shared_modules"])} for s in self.index["sharers"]]
        settings = self.index.get("settings", {})
        return {
            "directory": str(self.directory), "key": self.key, "base_model": self.base_model,
            "n_layers": self.n_layers, "targets": list(self.targets), "rank": self.rank,
            "strategy": settings.get("strategy"), "share_ratio": settings.get("share_ratio"),
            "n_sharers": self.n_sharers, "sharers": sharers, "pieces": sum(s["pieces"] for s in sharers),
            "modules": len(self.modules), "size_bytes": self.size_bytes, "data": self.index.get("data"),
            "created": self.index.get("created"),
        }


def pools_root() -> Path:
    """Where pools live by default: ``$PERS_SEARCH_HOME/pools``."""
    return tool_home() / "pools"


def data_fingerprint(setup: TrialSetup) -> dict[str, Any]:
    """What identifies the users and the cohort a pool was built against."""
    d = setup.data
    source = d.source
    if source != "demo" and Path(source).exists():
        source = str(Path(source).resolve())
    return {"source": source, "format": d.format, "task": d.task, "users": d.users, "split_seed": d.split_seed}


def pool_key(setup: TrialSetup, settings: PoolSettings) -> str:
    """The pool's directory name: a model slug and a hash of model, data and settings."""
    blob = json.dumps({"base_model": setup.model.name, "targets": list(setup.model.targets),
                       "data": data_fingerprint(setup), "training": dataclasses.asdict(setup.training),
                       "settings": dataclasses.asdict(settings)}, sort_keys=True, default=str)
    slug = safe_name(Path(setup.model.name).name, limit=40, fallback="model")
    return f"{slug}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def shared_modules(user_id: str, n_modules: int, ratio: float, seed: int) -> list[int]:
    """The modules whose pieces a sharer shares: a seeded ``ratio`` of them (at least one)."""
    count = min(n_modules, max(1, round(ratio * n_modules)))
    return sorted(random.Random(f"{seed}:share:{user_id}").sample(range(n_modules), count))


def write_pool(directory: str | os.PathLike, index: Mapping[str, Any],
               pieces: Mapping[tuple[int, str], tuple["torch.Tensor", "torch.Tensor"]],
               gates: Mapping[tuple[int, str], "torch.Tensor"]) -> Pool:
    """Write a pool (replacing an earlier pool's own files there, nothing else) and load it back.

    The files are written into a new hidden directory beside ``directory`` and moved into place
    whole (:func:`_swap_in`), so a stopped build leaves no half pool.

    Args:
        directory: The pool directory: new, empty, or holding an earlier pool and nothing else.
        index: The index; ``format``, ``files`` and ``created`` are added when missing.
        pieces: ``(A, B)`` by ``(sharer index, module path)``.
        gates: The gate by ``(sharer index, module path)``.

    Returns:
        The pool as read from disk.

    Raises:
        ConfigError: ``directory`` holds files no pool build wrote (see :func:`check_pool_dir`).
    """
    import torch
    from safetensors.torch import save_file

    target = Path(directory).resolve() if Path(directory).is_symlink() else Path(directory)  # a link: its directory
    check_pool_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(target, "tmp")
    try:
        half = lambda t: t.detach().to("cpu", torch.float16).contiguous()  # noqa: E731
        tensors = {}
        for (i, path), (a, b) in pieces.items():
            tensors[f"{i}.{path}.lora_A"], tensors[f"{i}.{path}.lora_B"] = half(a), half(b)
        save_file(tensors, str(tmp / PIECES_FILE), metadata={"format": "pt"})
        save_file({f"{i}.{path}.gate": half(g) for (i, path), g in gates.items()}, str(tmp / GATES_FILE),
                  metadata={"format": "pt"})
        full = {"format": POOL_FORMAT, "files": [PIECES_FILE, GATES_FILE],
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **index}
        (tmp / INDEX_FILE).write_text(json.dumps(full, indent=1, default=str))
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_pool(target)


def pool_files(directory: Path) -> frozenset[str]:
    """The names of the files a pool build wrote in ``directory``: ``index.json`` and the files it
    lists, when ``index.json`` is a pool index (of any format version); else none."""
    try:
        index = json.loads((directory / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    if not isinstance(index, dict) or not str(index.get("format", "")).startswith(FORMAT_FAMILY):
        return frozenset()
    listed = index.get("files", [PIECES_FILE, GATES_FILE])
    return frozenset([INDEX_FILE, *(name for name in listed if isinstance(name, str) and Path(name).name == name)])


def check_pool_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a pool; refuse it when it holds anything a pool build did not write.

    Raises:
        ConfigError: ``directory`` is a file, or holds files (or directories, links) other than an
            earlier pool's own; names up to :data:`SHOWN` of them and the fix.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"pool build: {directory} is a file; give a new or empty directory as --pool")
    if not directory.is_dir():
        return False
    own = pool_files(directory)
    with os.scandir(directory) as entries:
        foreign = sorted((e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries
                          if e.name not in own or not e.is_file(follow_symlinks=False)),
                         key=lambda name: (name.startswith("."), name))  # visible names first
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more" if len(foreign) > SHOWN else "")
        raise ConfigError(f"pool build: {directory} holds files no pool build wrote ({shown}); a pool build never "
                          "removes or writes beside them (--force replaces only an earlier pool's own files): "
                          "choose a new or empty --pool directory")
    return bool(own)


def _new_sibling(target: Path, kind: str) -> Path:
    """A new hidden directory beside ``target`` (``.<name>.<hex>.<kind>``), made here: never one that existed."""
    path = target.with_name(f".{target.name}.{secrets.token_hex(6)}.{kind}")
    path.mkdir()  # refuses an existing path; the mode follows the umask, as the pool directory's should
    return path


def _swap_in(new: Path, target: Path) -> None:
    """Move the pool written in ``new`` to ``target``; an earlier pool there (its own files only,
    checked by :func:`check_pool_dir`) is moved aside first, then its files removed one by one."""
    if not target.exists():
        os.replace(new, target)
        return
    own = pool_files(target)
    old = _new_sibling(target, "old")
    os.replace(target, old)  # onto the empty directory just made: the earlier pool, whole
    os.replace(new, target)
    for name in own:
        (old / name).unlink(missing_ok=True)
    try:
        old.rmdir()
    except OSError as err:
        raise ConfigError(f"pool build: the new pool is in {target}, but files appeared beside the earlier pool "
                          f"while it was built; they are in {old} now, untouched: move them back") from err


def load_pool(directory: str | os.PathLike) -> Pool:
    """Read a pool's index (tensors are read on first use).

    Raises:
        DataError: no pool there, or an index of another format.
    """
    path = Path(directory) / INDEX_FILE
    try:
        index = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(f"pool {directory}: no {INDEX_FILE}; build a pool there with `pers-search pool build --pool {directory}`") from err
    except json.JSONDecodeError as err:
        raise DataError(f"pool {path}: not valid JSON ({err.msg}); remove the directory and build the pool again "
                        "with `pers-search pool build`") from err
    if index.get("format") != POOL_FORMAT:
        fix = ("rebuild it with `pers-search pool build --force`" if str(index.get("format", "")).startswith(
            FORMAT_FAMILY) else "it is no pool of this tool; pass another --pool")
        raise DataError(f"pool {path}: format {index.get('format')!r} is not {POOL_FORMAT!r}; {fix}")
    return Pool(Path(directory), index)


def check_base_model(pool: Pool, model_name: str, layout: "Layout | None" = None) -> None:
    """Refuse a pool built for another base model (or another shape of the same name).

    Raises:
        ModelError: the names differ, or the module shapes differ from ``layout``.
    """
    if pool.base_model != model_name:
        raise ModelError(
            f"pool {pool.directory}: built for base model {pool.base_model!r}, but the model is {model_name!r}; "
            f"build a pool for {model_name!r} with `pers-search pool build` or pass the matching --pool"
        )
    if layout is not None:
        mine = {(m[1], m[2], m[3]) for m in layout.modules if m[1].rsplit(".", 1)[-1] in pool.targets}
        if mine != {(m[1], m[2], m[3]) for m in pool.modules}:
            raise ModelError(
                f"pool {pool.directory}: its {len(pool.modules)} modules ({', '.join(pool.targets)}) do not match "
                f"the shapes of model {model_name!r}; rebuild the pool for this model"
            )


def find_pool(setup: TrialSetup, pool_dir: str | os.PathLike | None = None) -> Pool | None:
    """The pool a trial of ``setup`` uses, or None when there is none.

    With ``pool_dir``: the pool in that directory (None if it holds none). Without: the newest
    pool under :func:`pools_root` built for the setup's base model and data.

    Raises:
        ModelError: ``pool_dir`` holds a pool built for another base model.
    """
    if pool_dir is not None:
        if not (Path(pool_dir) / INDEX_FILE).exists():
            return None
        pool = load_pool(pool_dir)
        check_base_model(pool, setup.model.name)
        return pool
    root, data = pools_root(), data_fingerprint(setup)
    found = []
    for index_path in sorted(root.glob(f"*/{INDEX_FILE}")) if root.is_dir() else []:
        try:
            pool = load_pool(index_path.parent)
        except DataError:
            continue
        if pool.base_model == setup.model.name and pool.index.get("data") == data:
            found.append(pool)
    return max(found, key=lambda p: (p.index.get("created", ""), p.directory.stat().st_mtime), default=None)


def require_pool(setup: TrialSetup, pool_dir: str | os.PathLike | None = None, space: str = "<space.yaml>",
                 top_k: int | None = None) -> Pool:
    """:func:`find_pool`, raising :class:`PoolMissing` (with the build command) when none exists."""
    pool = find_pool(setup, pool_dir)
    if pool is None:
        where = str(pool_dir) if pool_dir is not None else str(pools_root())
        need = f"perpcs.top_k={top_k}" if top_k is not None else "this trial"
        command = BUILD_HINT.format(space=space) + (f" --pool {pool_dir}" if pool_dir is not None else "")
        raise PoolMissing(
            f"{need} needs a Per-Pcs pool for model {setup.model.name!r} and data {setup.data.source!r}, "
            f"but there is none in {where}; build one with `{command}` or set perpcs.top_k=0"
        )
    return pool


def build_pool(session, settings: PoolSettings, pool_dir: str | os.PathLike | None = None,
               force: bool = False, log: Callable[[str], None] | None = None) -> Pool:
    """Select sharers, train their LoRAs and gates, and store the pool.

    Args:
        session: The :class:`runners.session.Session` of the setup: model, data (which users,
            which cohort) and training settings.
        settings: The pool settings.
        pool_dir: Where to write; None is ``pools_root() / pool_key(setup, settings)``.
        force: Rebuild even when the directory already holds a pool (its own files are replaced;
            a directory holding any other file is refused all the same).
        log: Receives one progress line per step (None: silent).

    Returns:
        The pool as read back from disk (an existing one with the same settings is reused).

    Raises:
        ConfigError: bad settings, too few users outside the cohort, ``pool_dir`` holding files
            no pool build wrote, or a pool built with other settings (pass ``force``).
        ModelError: ``pool_dir`` holds a pool of another base model.
        TrialFailed: a sharer's training diverged or ran out of memory.
    """
    setup = session.setup
    settings.check()
    say = log or (lambda _msg: None)
    directory = Path(pool_dir) if pool_dir is not None else pools_root() / pool_key(setup, settings)
    existing = _reusable(directory, setup, settings, force)
    if existing is not None:
        say(f"pool {directory} is already built with these settings; pass --force to rebuild")
        return existing
    cohort = {s.user.user_id for s in session.splits}
    candidates = [u for u in session.dataset.users if u.user_id not in cohort]
    say(f"choosing {settings.sharers} sharers ({settings.strategy}) among {len(candidates)} users outside the cohort")
    sharers = select_sharers(candidates, session.task, settings.sharers, settings.strategy, settings.seed)
    pieces, gates, records = {}, {}, []
    for i, sharer in enumerate(sharers):
        say(f"sharer {i + 1}/{len(sharers)}: {sharer.user.user_id} ({len(sharer.user.history)} history items)")
        record, own_pieces, own_gates = _build_sharer(session, sharer, settings)
        say(f"  LoRA: {record['train_steps']} steps in {record['train_seconds']:.1f} s (loss {record['train_loss']}); "
            f"gates: {record['gate_steps']} steps in {record['gate_seconds']:.1f} s (loss {record['gate_loss']}); "
            f"shares {len(record['shared_modules'])} of {len(session.layout.modules)} pieces")
        for m in record["shared_modules"]:
            path = session.layout.modules[m][1]
            pieces[(i, path)], gates[(i, path)] = own_pieces[path], own_gates[path]
        records.append(record)
    layout = session.layout
    index = {"key": directory.name, "base_model": setup.model.name, "n_layers": layout.n_layers,
             "targets": list(layout.targets), "rank": settings.rank, "modules": [list(m) for m in layout.modules],
             "sharers": records, "data": data_fingerprint(setup), "cohort": sorted(cohort),
             "settings": dataclasses.asdict(settings), "training": dataclasses.asdict(_sharer_spec(setup, settings))}
    pool = write_pool(directory, index, pieces, gates)
    say(f"pool written to {directory} ({pool.size_bytes:,} bytes)")
    return pool


def _reusable(directory: Path, setup: TrialSetup, settings: PoolSettings, force: bool) -> Pool | None:
    """The pool already in ``directory`` when it has these settings (None: build one).

    Raises:
        ConfigError: ``directory`` holds files no pool build wrote (with or without ``force``),
            or a pool of other settings and no ``force``.
    """
    if not check_pool_dir(directory) or force:
        return None
    pool = load_pool(directory)
    check_base_model(pool, setup.model.name)
    same = (pool.index.get("settings") == dataclasses.asdict(settings)
            and pool.index.get("data") == data_fingerprint(setup))
    if not same:
        raise ConfigError(f"pool build: {directory} already holds a pool built with other settings or data; "
                          "pass --force to overwrite it or choose another --pool")
    return pool


def _sharer_spec(setup: TrialSetup, settings: PoolSettings):
    spec = setup.training
    return spec if settings.sharer_steps is None else dataclasses.replace(spec, max_steps=settings.sharer_steps)


def _build_sharer(session, sharer, settings: PoolSettings) -> tuple[dict, dict, dict]:
    """Train one sharer's LoRA and gates; returns its index record, pieces and gates."""
    loaded, layout, user = session.loaded, session.layout, sharer.user
    spec = _sharer_spec(session.setup, settings)
    seed = spec.seed + zlib.crc32(user.user_id.encode())
    pad = loaded.tokenizer.pad_token_id
    examples = history_examples(loaded.tokenizer, session.task, user.history, spec, seed)
    memory = MemoryConfig(tuple(range(layout.n_layers)), count=1, rank=settings.rank,
                          alpha_ratio=spec.lora_alpha_ratio, dropout=spec.lora_dropout)
    started = time.perf_counter()
    peft_model = attach_memory(loaded.model, layout, memory, seed)
    try:
        phases = train_on_history(peft_model, examples, spec, pad, loaded.device, seed)
        pieces = lora_pieces(peft_model)
    finally:
        detach_memory(peft_model)
    train_seconds = time.perf_counter() - started
    everything = examples.all()
    gspec = gate_spec(spec, settings.gate_steps, settings.gate_lr, len(everything))
    gates, gstats = train_gates(loaded.model, pieces, everything, gspec, pad, loaded.device, seed + 2)
    record = {"user_id": user.user_id, "history_items": len(user.history), "cluster": sharer.cluster,
              "shared_modules": shared_modules(user.user_id, len(layout.modules), settings.share_ratio, settings.seed),
              "train_seconds": round(train_seconds, 3), "train_steps": sum(p.steps for p in phases),
              "train_loss": phases[-1].final_loss if phases else None,
              "gate_seconds": round(gstats.seconds, 3), "gate_steps": gstats.steps, "gate_loss": gstats.final_loss}
    return record, pieces, gates


def lora_pieces(peft_model) -> dict[str, tuple["torch.Tensor", "torch.Tensor"]]:
    """``(A, scale * B)`` of every LoRA layer of the sharer's adapter, by module path (fp32, CPU)."""
    from peft.tuners.lora import LoraLayer

    pieces = {}
    for path, module in peft_model.base_model.model.named_modules():
        if isinstance(module, LoraLayer) and _SHARER_ADAPTER in module.lora_A:
            a = module.lora_A[_SHARER_ADAPTER].weight.detach().float().cpu().clone()
            b = (module.lora_B[_SHARER_ADAPTER].weight.detach().float() * module.scaling[_SHARER_ADAPTER]).cpu()
            pieces[path] = (a, b)
    return pieces
