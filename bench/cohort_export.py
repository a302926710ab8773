"""Benchmark: ``export`` of a per-user study of many users, on the tiny model (issue 34, target 4).

For each ``--users N`` a per-user study of N users is made, then ``pers-search export STUDY --pick
knee --out DIR`` runs in a child process of its own, and the table gives its wall time, CPU time
(user and system: on a shared machine the wall time counts the others' load too) and peak resident
memory (``VmHWM`` of ``/proc/self/status``, written by the child as it exits: a child's
``ru_maxrss`` would carry the parent's high-water mark at the ``exec``), with what the bundle holds:
users, adapters, vLLM rank buckets, storage, the bundle's size and ``serving.yaml``'s.

The users are the builtin demo users repeated under new ids (``<id>-r<k>``) in a generated JSONL
file. How each user's study is made (not measured):

- ``--build api`` (default): with the Python API, one trial per user of a configuration drawn for
  that user (``lora.count`` 0-3, ``lora.rank`` 2/4/8 on a random layer mask, ``rag.k`` 0-2 by
  ``bm25``: merged ranks 2-24, so the vLLM buckets 8, 16 and 32, and some users without memory),
  whose adapter is a real PEFT adapter written by the runner's own functions
  (:func:`runners.memory.attach_memory`, :func:`runners.memory.export_merged_adapter`) on the one
  loaded tiny model, untrained, with made-up metric values: export copies adapters and checks
  their sizes, what they learned does not matter to it. Seconds per 100 users.
- ``--build run``: ``pers-search run --per-user --trials 1 --set training.max_steps=1
  --keep-adapters`` on the generated data (each user's optimiser draws its configuration), which
  trains and evaluates every user: as a real study, and much slower.

Run from the repository root::

    OMP_NUM_THREADS=1 python bench/cohort_export.py --users 100 1000
    OMP_NUM_THREADS=1 python bench/cohort_export.py --users 1000 --build run
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.data.load import load_dataset  # noqa: E402

STUDY = "cohort"
SETTINGS = ("training.max_steps=1", "training.min_steps=0", "data.max_val_queries=1", "training.max_new_tokens=4")
PEAK_VARIABLE = "COHORT_EXPORT_PEAK"
# The child: the CLI in a fresh interpreter that writes its peak resident memory (kB) to $COHORT_EXPORT_PEAK at exit.
CHILD = ("import atexit, os, sys\n"
         "def _report_peak():\n"
         "    with open('/proc/self/status') as status, open(os.environ['" + PEAK_VARIABLE + "'], 'w') as out:\n"
         "        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n"
         "atexit.register(_report_peak)\n"
         "from search.cli import main\n"
         "sys.exit(main(sys.argv[1:]))\n")


@dataclass(frozen=True)
class Measured:
    """One export: the cohort's size, the child's peak resident memory (MB) and wall seconds, the bundle."""

    users: int
    build_seconds: float
    peak_mb: float
    seconds: float
    cpu_seconds: float
    summary: dict
    bundle_mb: float
    manifest_mb: float


def write_users(path: Path, users: int) -> Path:
    """``users`` users as generic JSONL: the demo users in turn, repeats under new ids (``<id>-r<k>``)."""
    demo = load_dataset("demo").users
    with path.open("w", encoding="utf-8") as handle:
        for index in range(users):
            user, repeat = demo[index % len(demo)], index // len(demo)
            user_id = f"{user.user_id}-r{repeat}" if repeat else user.user_id
            history = [{k: v for k, v in (("text", h.text), ("input", h.input), ("output", h.output),
                                          ("time", h.time)) if v is not None} for h in user.history]
            queries = [{"id": f"{user_id}-{i}", "input": q.input, "output": q.output}
                       for i, q in enumerate(user.queries)]
            handle.write(json.dumps({"user_id": user_id, "profile": user.profile, "history": history,
                                     "queries": queries}) + "\n")
    return path


def space_settings(data: Path, users: int) -> list[str]:
    return [*SETTINGS, f"data.source={data}", f"data.users={users}"]


def build_with_api(study_dir: Path, data: Path, users: int, seed: int = 0) -> None:
    """The per-user study, one trial per user, made with the Python API (see the module docstring)."""
    from runners.memory import MemoryConfig, attach_memory, detach_memory, export_merged_adapter, storage_bytes
    from runners.session import session_for
    from runners.spec import TrialConfig
    from search.execution.per_user import open_cohort
    from search.study.cohort_file import user_study_name
    from search.study.setup import trial_setup
    from search.space import load_space
    from search.study.study import Study
    from runners.files import user_file_name

    space = load_space("tiny.yaml").with_overrides(space_settings(data, users)).bind(4)
    session = session_for(trial_setup(space))
    ids = [s.user.user_id for s in session.splits]
    open_cohort(space, STUDY, study_dir, ids)
    rng = random.Random(seed)
    for user in ids:
        config = {"lora.layers": [rng.randint(0, 1) for _ in range(3)] + [1], "lora.count": rng.randint(0, 3),
                  "lora.rank": rng.choice([2, 4, 8]), "rag.k": rng.randint(0, 2), "rag.retriever": "bm25",
                  "perpcs.top_k": 0}
        memory = MemoryConfig.of(TrialConfig.from_flat(config, 4), session.setup.training)
        kept = study_dir / user_study_name(STUDY, user) / "adapters" / "trial-0"
        size = 0
        if memory.enabled:
            model = attach_memory(session.loaded.model, session.layout, memory, seed=0)
            try:
                export_merged_adapter(model, session.layout, memory, kept / user_file_name(user))
            finally:
                detach_memory(model)
            size = storage_bytes(session.layout, memory)
        study = Study.create(user_study_name(STUDY, user), study_dir, space)
        trial = study.add_trial(config)
        values = {"rougeL": rng.random(), "persona_f1": rng.random(), "storage_bytes": float(size)}
        study.complete_trial(trial.number, values, {"adapter_dir": str(kept) if memory.enabled else None,
                                                    "users": {user: {"storage_bytes": size}}})


def build_with_run(study_dir: Path, data: Path, users: int, log: Path) -> None:
    """The per-user study made by ``pers-search run --per-user`` (one trained trial per user)."""
    argv = ["run", STUDY, "--space", "tiny.yaml", "--per-user", "--trials", "1", "--init-trials", "1",
            "--optimizer", "sobol", "--study-dir", str(study_dir), "--no-mlflow", "--no-test", "--keep-adapters"]
    for item in space_settings(data, users):
        argv += ["--set", item]
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-c", "import sys; from search.cli import main; sys.exit(main(sys.argv[1:]))",
                        *argv], cwd=ROOT, env=_child_env(), stdout=handle, stderr=subprocess.STDOUT, check=True)


def _child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}


def export(study_dir: Path, out: Path, work: Path) -> tuple[float, float, float]:
    """Run the export in a child; its peak RSS (MB), wall seconds and CPU seconds (user + system: on a
    shared machine the wall time also counts the others' load)."""
    peak = work / "peak.kb"
    log = work / "export.log"
    argv = ["export", STUDY, "--study-dir", str(study_dir), "--pick", "knee", "--out", str(out), "--json"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as handle:
        done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=ROOT,
                              env={**_child_env(), PEAK_VARIABLE: str(peak)}, stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"cohort_export: export failed (exit {done.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return int(peak.read_text()) / 1024, seconds, cpu


def measure(users: int, build: str, work: Path) -> Measured:
    data = write_users(work / "users.jsonl", users)
    study_dir = work / "studies"
    started = time.perf_counter()
    if build == "api":
        build_with_api(study_dir, data, users)
    else:
        build_with_run(study_dir, data, users, work / "run.log")
    built = time.perf_counter() - started
    out = work / "bundle"
    peak, seconds, cpu = export(study_dir, out, work)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    summary = json.loads((out / "summary.json").read_text())
    return Measured(users, built, peak, seconds, cpu, summary, size / 1e6,
                    (out / "serving.yaml").stat().st_size / 1e6)


def table(rows: list[Measured]) -> str:
    lines = ["| users | adapters | buckets (rank: users) | storage, total / per user | bundle | serving.yaml "
             "| export wall / CPU | export peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.summary
        buckets = ", ".join(f"{b['max_lora_rank']}: {b['users']}" for b in s["buckets"])
        storage = s["storage_bytes"]
        lines.append(f"| {r.users} | {s['adapters']} | {buckets} | {storage['total'] / 1e6:.1f} MB / "
                     f"{storage['per_user']['mean'] / 1e3:.1f} KB | {r.bundle_mb:.1f} MB | {r.manifest_mb:.2f} MB "
                     f"| {r.seconds:.0f} s / {r.cpu_seconds:.0f} s | {r.peak_mb:.0f} MB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100, 1000], help="cohort sizes (default 100 1000)")
    parser.add_argument("--build", choices=("api", "run"), default="api", help="how the study is made (see above)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary directory)")
    args = parser.parse_args(argv)
    rows = []
    for users in args.users:
        with tempfile.TemporaryDirectory(prefix="cohort-export-") as tmp:
            work = Path(args.keep) / str(users) if args.keep else Path(tmp)
            work.mkdir(parents=True, exist_ok=True)
            row = measure(users, args.build, work)
            print(f"{users} users: study built ({args.build}) in {row.build_seconds:.0f} s, exported in "
                  f"{row.seconds:.1f} s ({row.cpu_seconds:.1f} s CPU), peak {row.peak_mb:.0f} MB", flush=True)
            rows.append(row)
    print(f"\n{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, study built with --build {args.build}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
