"""vLLM's view of a bundle: the ranks it serves, zero-padding to them, and how the bundle is served.

vLLM takes ``--max-lora-rank`` from :data:`VLLM_RANKS` and loads an adapter of any rank up to it
(it fills the rest of its LoRA slot with zeros). A bundle's adapters are grouped into buckets, one
per rank of :data:`VLLM_RANKS` that holds them (:class:`Bucket`), and :func:`serving_plan` chooses
how ``vllm.sh`` serves them:

- up to :data:`LISTED_LORAS` adapters (a study's bundle, a small cohort): listed in ``--lora-modules``
  and loaded at start, each zero-padded to its bucket's rank under ``vllm/`` (exact: the product
  ``B A`` is unchanged);
- more (a cohort of many users): loaded on demand. vLLM's filesystem LoRA resolver (``VLLM_PLUGINS``
  ``lora_filesystem_resolver`` with ``VLLM_LORA_RESOLVER_CACHE_DIR=adapters``, and
  ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``) loads ``adapters/<name>`` on the first request whose
  ``model`` is ``<name>``; nothing is padded or listed.

Either way ``vllm.sh`` runs one server at the largest bucket's rank: one copy of the base model,
whose LoRA slots (``--max-loras`` of them) are as wide as the largest rank. On demand,
``vllm.sh --bucket R`` starts a server for one bucket only, at ``--max-lora-rank R`` on a port of its own: each such server holds
its own copy of the base model, which pays when buckets get GPUs of their own or when the largest
rank's slots cost more than a copy of the base model (the script says both sizes).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from search.errors import ExportError

VLLM_RANKS = (8, 16, 32, 64, 128, 256)
# Adapters vLLM keeps on the GPU at once (--max-loras): one batch mixes requests of at most this
# many users. vLLM's default is 1, which serialises users; one slot per user does not scale.
MAX_GPU_LORAS = 4
# Up to this many adapters vllm.sh lists them (--lora-modules); beyond, they are loaded on demand.
LISTED_LORAS = 8
# CPU memory for adapters a server keeps loaded (--max-cpu-loras); the others are read again from disk.
CPU_LORA_BYTES = 4 * 10 ** 9
FIRST_PORT = 8000  # vLLM's default port: the first bucket's server with --bucket
RESOLVER_DIR = "./adapters"  # what the on-demand server loads adapters from
SCRIPT = "vllm.sh"


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


def max_loras(users: int) -> int:
    """``--max-loras`` for ``users`` adapters: all of them up to :data:`MAX_GPU_LORAS`."""
    return max(1, min(users, MAX_GPU_LORAS))


def vllm_command(base: str, adapters: Mapping[str, str], max_lora_rank: int | None,
                 served_name: str | None = None) -> str:
    """The ``vllm serve`` line for a base model and per-user adapters listed by path (empty dict: no LoRA).

    ``--max-loras`` is :func:`max_loras`; with more users than that, ``--max-cpu-loras`` keeps
    every adapter in CPU memory so that a user's turn on the GPU needs no disk read.
    """
    parts = _serve(base, served_name)
    if adapters:
        gpu = max_loras(len(adapters))
        parts += ["--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", str(gpu)]
        if len(adapters) > gpu:
            parts += ["--max-cpu-loras", str(len(adapters))]
        parts += ["--lora-modules", *(shlex.quote(f"{name}={path}") for name, path in adapters.items())]
    return " ".join(parts)


def _serve(base: str, served_name: str | None) -> list[str]:
    return ["vllm", "serve", shlex.quote(base)] + (["--served-model-name", shlex.quote(served_name)]
                                                    if served_name else [])


class Servable(Protocol):
    """What serving needs to know of one user's adapter (:class:`search.export.manifest.ServedAdapter`)."""

    @property
    def lora_name(self) -> str: ...  # the adapter's name for vLLM: a request's ``model``
    rank: int
    storage_bytes: int
    vllm_path: Path  # the adapter vLLM loads when listed (``vllm/<name>`` padded, or ``adapters/<name>``)


@dataclass(frozen=True)
class Bucket:
    """The adapters one ``--max-lora-rank`` serves: ranks above the previous rank of :data:`VLLM_RANKS`.

    Attributes:
        max_lora_rank: the bucket's rank (one of :data:`VLLM_RANKS`).
        names: the adapters' vLLM names.
        storage_bytes: their adapter files' bytes in all.
        port: the port of the bucket's own server (``vllm.sh --bucket RANK``).
    """

    max_lora_rank: int
    names: tuple[str, ...]
    storage_bytes: int
    port: int

    @property
    def max_loras(self) -> int:
        return max_loras(len(self.names))

    @property
    def max_cpu_loras(self) -> int:
        """Adapters kept in CPU memory: all of them when they fit in :data:`CPU_LORA_BYTES`, else as many
        as fit (and at least ``max_loras``, vLLM's floor)."""
        each = max(1, self.storage_bytes // max(1, len(self.names)))
        return max(self.max_loras, min(len(self.names), CPU_LORA_BYTES // each))


def buckets(adapters: Sequence[Servable]) -> tuple[Bucket, ...]:
    """The adapters by the smallest vLLM rank that holds them, smallest rank first (ranks above 256 in none)."""
    ranks = sorted({vllm_rank(a.rank) for a in adapters} - {None})
    return tuple(Bucket(rank, tuple(a.lora_name for a in adapters if vllm_rank(a.rank) == rank),
                        sum(a.storage_bytes for a in adapters if vllm_rank(a.rank) == rank), FIRST_PORT + index)
                 for index, rank in enumerate(ranks))


@dataclass(frozen=True)
class ServingPlan:
    """How ``vllm.sh`` serves a bundle (see the module docstring).

    Attributes:
        base: the base model's path as the server loads it (``./base`` or ``--base-model``).
        served_name: the base model's name in requests (``--served-model-name``).
        buckets: the adapters by rank (:func:`buckets`).
        listed: lora name -> path of each adapter listed in ``--lora-modules``; empty when on demand.
        too_big: the adapters above rank 256, which vLLM cannot serve.
        slot_bytes_per_rank: fp16 bytes of one LoRA slot of rank 1 over the adapters' target projections
            (vLLM's slots of ``--max-lora-rank`` cost that many times this, per ``--max-loras``).
        base_bytes: the base model's weights in bytes (what each server holds a copy of).
    """

    base: str
    served_name: str
    buckets: tuple[Bucket, ...]
    listed: Mapping[str, str]
    too_big: tuple[str, ...]
    slot_bytes_per_rank: int
    base_bytes: int

    @property
    def on_demand(self) -> bool:
        """Adapters are loaded on their first request (vLLM's filesystem LoRA resolver), not listed."""
        return bool(self.buckets) and not self.listed

    @property
    def adapters(self) -> int:
        return sum(len(b.names) for b in self.buckets)

    @property
    def max_lora_rank(self) -> int | None:
        """The rank of the one server for every adapter: the largest bucket's (None without adapters)."""
        return self.buckets[-1].max_lora_rank if self.buckets else None

    def command(self, bucket: Bucket | None = None) -> str:
        """The serve line, run from the bundle: every adapter at the largest rank, or one bucket's."""
        if not self.on_demand:
            return vllm_command(self.base, self.listed, self.max_lora_rank, served_name=self.served_name)
        rank, gpu, cpu = _sizes(self.buckets, bucket)
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in RESOLVER_ENV.items()), *_serve(self.base, self.served_name),
                         "--enable-lora", "--max-lora-rank", str(rank), "--max-loras", str(gpu),
                         *(["--max-cpu-loras", str(cpu)] if cpu > gpu else []),
                         *(["--port", str(bucket.port)] if bucket else [])])

    def entry(self) -> dict:
        """The ``vllm`` entry of ``serving.yaml``."""
        return {"command": self.command(), "script": SCRIPT, "loading": _LOADING[self.on_demand],
                "max_lora_rank": self.max_lora_rank,
                "max_loras": max_loras(self.adapters) if self.buckets else None,
                "buckets": [{"max_lora_rank": b.max_lora_rank, "users": len(b.names), "storage_bytes": b.storage_bytes,
                             "port": b.port, "script": f"./{SCRIPT} --bucket {b.max_lora_rank}",
                             **({"command": self.command(b)} if self.on_demand else {})} for b in self.buckets],
                "memory": {"base_model_bytes": self.base_bytes,
                           "lora_slot_bytes": self.slot_bytes(self.max_lora_rank) if self.buckets else 0,
                           "note": "each server holds one copy of the base model and --max-loras LoRA slots of "
                                   "--max-lora-rank (lora_slot_bytes: all of them, over the adapters' target "
                                   "projections; vLLM adds slots for its other LoRA-capable layers)"},
                "note": (f"rank above 256 for {len(self.too_big)} users ({', '.join(self.too_big[:3])}"
                         f"{' ...' if len(self.too_big) > 3 else ''}): vLLM cannot serve them; serve them with PEFT"
                         if self.too_big else None)}

    def slot_bytes(self, rank: int | None) -> int:
        """The LoRA slots of a server at ``rank``: ``--max-loras`` of them, fp16, over the target projections."""
        return (rank or 0) * self.slot_bytes_per_rank * (max_loras(self.adapters) if self.buckets else 0)


# The on-demand server's environment (https://docs.vllm.ai/en/latest/design/lora_resolver_plugins/).
RESOLVER_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true", "VLLM_PLUGINS": "lora_filesystem_resolver",
                "VLLM_LORA_RESOLVER_CACHE_DIR": RESOLVER_DIR}
_LOADING = {
    False: "at start: every adapter is listed in --lora-modules (vllm/<name>: adapters/<name> zero-padded to its "
           "bucket's rank when it is not one of 8, 16, ..., 256)",
    True: "on demand: a request whose model is a user's lora_name loads adapters/<name> (vLLM's filesystem LoRA "
          "resolver: VLLM_PLUGINS lora_filesystem_resolver, VLLM_LORA_RESOLVER_CACHE_DIR=adapters, "
          "VLLM_ALLOW_RUNTIME_LORA_UPDATING=true); without the resolver, POST /v1/load_lora_adapter "
          '{"lora_name": NAME, "lora_path": "<bundle>/adapters/NAME"} loads one',
}


def _sizes(all_buckets: Sequence[Bucket], bucket: Bucket | None) -> tuple[int, int, int]:
    """``--max-lora-rank``, ``--max-loras`` and ``--max-cpu-loras`` of one bucket's server or of the one for all."""
    if bucket is not None:
        return bucket.max_lora_rank, bucket.max_loras, bucket.max_cpu_loras
    every = Bucket(all_buckets[-1].max_lora_rank, tuple(n for b in all_buckets for n in b.names),
                   sum(b.storage_bytes for b in all_buckets), FIRST_PORT)
    return every.max_lora_rank, every.max_loras, every.max_cpu_loras


def serving_plan(adapters: Sequence[Servable], base: str, served_name: str, slot_bytes_per_rank: int,
                 base_bytes: int) -> ServingPlan:
    """How to serve ``adapters`` (see the module docstring): listed up to :data:`LISTED_LORAS`, else on demand.

    Args:
        adapters: every user's adapter in the bundle (paths relative to it in ``vllm_path``).
        base: the base model's path as the server loads it.
        served_name: the base model's name in requests.
        slot_bytes_per_rank: fp16 bytes of a LoRA slot of rank 1 over the target projections.
        base_bytes: the base model's weights in bytes.
    """
    servable = [a for a in adapters if vllm_rank(a.rank) is not None]
    listed = {a.lora_name: f"./{_relative(a.vllm_path)}" for a in servable} if len(servable) <= LISTED_LORAS else {}
    return ServingPlan(base, served_name, buckets(servable), listed,
                       tuple(a.lora_name for a in adapters if vllm_rank(a.rank) is None), slot_bytes_per_rank,
                       base_bytes)


def _relative(path: Path) -> str:
    """``adapters/<name>``: an adapter directory relative to the bundle (two levels up)."""
    return path.relative_to(path.parents[1]).as_posix()


def _users(n: int) -> str:
    return f"{n} user{'s' if n != 1 else ''}"


def size_text(n: float) -> str:
    """Bytes for people: ``1.2 MB``."""
    return next(f"{n / d:.1f} {u}" for d, u in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB"), (1, "B")) if n >= d or d == 1)


def loads_on_demand(adapters: Sequence[Servable]) -> bool:
    """True when :func:`serving_plan` will load ``adapters`` on demand (more than :data:`LISTED_LORAS` servable)."""
    return sum(1 for a in adapters if vllm_rank(a.rank) is not None) > LISTED_LORAS


def vllm_script(plan: ServingPlan) -> str:
    """``vllm.sh``: the serve command, run from the bundle's directory, with what its sizes mean."""
    lines = ["#!/bin/sh",
             "# Serve the exported model with vLLM's OpenAI-compatible server (http://localhost:8000/v1).",
             "# Paths are relative to this bundle: the script runs from its own directory. Extra arguments",
             "# are passed on to vllm serve (e.g. --port 8001).",
             "#"]
    if plan.on_demand:
        return "\n".join(lines + _on_demand_lines(plan)) + "\n"
    if plan.buckets:
        lines += _listed_comments(plan)
    lines += [_TRY_IT, 'cd "$(dirname "$0")" || exit 1', f'exec {plan.command()} "$@"']
    return "\n".join(lines) + "\n"


_TRY_IT = ("# Try it: curl -s http://localhost:8000/v1/completions -H 'Content-Type: application/json' "
           "-d @request.json")


def _listed_comments(plan: ServingPlan) -> list[str]:
    users, rank = plan.adapters, plan.max_lora_rank
    gpu = max_loras(users)
    slot = plan.slot_bytes(rank) // gpu
    lines = [f"# --max-lora-rank {rank}: the smallest rank vLLM takes that holds the adapters "
             "(vllm/ holds them zero-padded to it)."]
    if len(plan.buckets) > 1:
        lines += ["#   Their ranks by bucket: " + ", ".join(f"<= {b.max_lora_rank}: {len(b.names)}" for b in plan.buckets)
                  + "; one server at the largest (vLLM takes any rank up to it)."]
    lines += [f"# --max-loras {gpu}: adapters held on the GPU at once, about {size_text(slot)} each here; one batch",
              f"#   mixes the requests of at most {gpu} users. vLLM's default (1) would serve one user at a time.",
              "#   Raise it for more concurrent users if GPU memory allows; lower it on a small GPU."]
    if users > gpu:
        lines += [f"# --max-cpu-loras {users}: every user's adapter stays in CPU memory, so a user whose",
                  "#   adapter is not on the GPU is swapped in without reading the disk."]
    return lines + ["# Each user's adapter is served as a model named after the user: send a request with",
                    "#   \"model\": \"<name>\", the user's adapters.<user>.lora_name in serving.yaml (the user id",
                    "#   itself for plain ids; request.json is one; its prompt comes from",
                    "#   pers-search prompt . --user U --query Q)"]


def _on_demand_lines(plan: ServingPlan) -> list[str]:
    rank, gpu, cpu = _sizes(plan.buckets, None)
    lines = [f"# {_users(plan.adapters)}' adapters, each loaded on its user's first request, not at start: vLLM's",
             "#   filesystem LoRA resolver finds adapters/<name> for a request whose \"model\" is <name>",
             "#   (serving.yaml adapters.<user>.lora_name; the user id itself for plain ids). vLLM takes an",
             "#   adapter of any rank up to --max-lora-rank, so adapters/ is served as it is. Without the",
             "#   resolver plugin, load one by hand (the server keeps it):",
             "#   curl -s http://localhost:8000/v1/load_lora_adapter -H 'Content-Type: application/json' \\",
             "#     -d '{\"lora_name\": \"<name>\", \"lora_path\": \"'\"$PWD\"'/adapters/<name>\"}'",
             "#",
             "# Buckets: vLLM's --max-lora-rank is one of " + ", ".join(map(str, VLLM_RANKS)) + ". The adapters, by the",
             "#   smallest that holds them (serving.yaml adapters.<user>.bucket):"]
    lines += [f"#   rank <= {b.max_lora_rank:>3}: {_users(len(b.names)):>11}, {size_text(b.storage_bytes):>9}; "
              f"own server: ./{SCRIPT} --bucket {b.max_lora_rank} (port {b.port})" for b in plan.buckets]
    if plan.too_big:
        lines += [f"#   rank > 256: {_users(len(plan.too_big))} vLLM cannot serve (serve them with PEFT)"]
    lines += [f"# One server at the largest rank (the default, --max-lora-rank {rank}): one copy of the base model",
              f"#   ({size_text(plan.base_bytes)}); its --max-loras {gpu} LoRA slots are all {rank} wide: "
              f"{size_text(plan.slot_bytes(rank))} for these",
              "#   targets (vLLM adds slots for its other LoRA-capable layers).",
              "# One server per bucket (--bucket R, on the port above; route each user to its bucket's port): each",
              f"#   holds its own copy of the base model ({size_text(plan.base_bytes)}) and slots of its own rank. "
              "Worth it when",
              "#   buckets get GPUs of their own, or when the largest rank's slots cost more than a base model copy.",
              f"# --max-loras {gpu}: adapters on the GPU at once (one batch mixes at most that many users).",
              f"# --max-cpu-loras {cpu}: adapters kept in CPU memory (up to {size_text(CPU_LORA_BYTES)}); "
              "the others are read",
              "#   from adapters/ again when their user comes back.",
              _TRY_IT,
              'cd "$(dirname "$0")" || exit 1',
              f"rank={rank} loras={gpu} cpu={cpu}",
              'if [ "$1" = "--bucket" ]; then',
              '  case "$2" in']
    for b in plan.buckets:
        lines += [f"    {b.max_lora_rank}) rank={b.max_lora_rank} loras={b.max_loras} cpu={b.max_cpu_loras} "
                  f"port={b.port} ;;"]
    lines += ['    *) echo "vllm.sh: --bucket $2: the buckets of this bundle are '
              + ", ".join(str(b.max_lora_rank) for b in plan.buckets) + '" >&2; exit 2 ;;',
              "  esac",
              "  shift 2",
              '  set -- --port "$port" "$@"',
              "fi",
              "export VLLM_ALLOW_RUNTIME_LORA_UPDATING=true",
              'export VLLM_LORA_RESOLVER_CACHE_DIR="$PWD/adapters"',
              "# Unset, vLLM loads every plugin it has, the resolver among them; set, the list must name it.",
              'if [ -n "${VLLM_PLUGINS+set}" ]; then',
              '  case ",$VLLM_PLUGINS," in',
              "    *,lora_filesystem_resolver,*) ;;",
              '    *) export VLLM_PLUGINS="${VLLM_PLUGINS:+$VLLM_PLUGINS,}lora_filesystem_resolver" ;;',
              "  esac",
              "fi",
              f"exec {' '.join(_serve(plan.base, plan.served_name))} --enable-lora --max-lora-rank \"$rank\" "
              '--max-loras "$loras" --max-cpu-loras "$cpu" "$@"']
    return lines
