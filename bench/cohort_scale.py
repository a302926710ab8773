"""Benchmark: peak memory and wall time of a per-user study as the cohort grows (issue 34, target 1).

Each cohort size runs ``pers-search run --space SPACE --per-user --users N --trials 1 --no-mlflow
--no-test`` in a subprocess of its own: one trial per user, by default of one configuration for
every user (its own memory, ``lora.count=2`` of rank 8 on the upper 8 layers, trained one step:
``training.max_steps=1``, ``training.min_steps=0``; ``rag.k=2`` items by the ``dense``
retriever; memory on the base model, ``lora.base=none``). The configuration is pinned because
each user's optimiser starts from a quasi-random point of its own (its seed is the user's place in the cohort), and most of milp.yaml's first
points train no memory at all: the sizes would compare the configurations drawn, not what the
cohort adds. ``--set`` replaces the defaults (``--set training.max_steps=1`` alone runs the
optimisers' own points).

The table gives, per size, the child's peak resident memory (``VmHWM`` of ``/proc/self/status``,
written by the child as it exits; its ``ru_maxrss`` would not do, since Linux carries the parent's
high-water mark at the ``exec`` into the child's), its wall time, and the ratio of its peak to the
smallest cohort's, measured in the same run. With one base model per process
(``runners.session``) the peak stays flat in the number of users; with a model per user it grows
by the model's size with every user.

The builtin demo data has 24 users; for larger cohorts every size of the run reads one generated
JSONL file instead (the demo users repeated under new ids, :func:`write_cohort`), so that all sizes
search the same kind of users. The embedded model's dequantized cache is made before the first
measured size (the first load converts the GGUF, about 40 s and more memory, once per machine).
Users differ in how much memory their trial needs at its peak (longer histories and answers, more
validation queries), so the smallest cohort's peak is one user's, not the cohort's floor.
``--alone`` also runs every user of the largest cohort alone, each in a process of its own, and
adds the ratio of each size's peak to the largest of those single-user peaks: what keeping the
users in one process adds over the most demanding of them.
``--same-user`` makes every user a copy of the first demo user (each copy's history items marked
with its number, so that no two share a retrieval index): the sizes then differ in the number of
users alone, and the ratio is what the cohort adds. ``--phases`` also reads, at each of the
trial's phase boundaries (``runners.trial`` calls ``release_free_heap`` after a memory's training
and at a user's end), the peak resident memory since the last boundary and the resident size
after the heap is trimmed, and prints them per phase: the first user's training, the later users'
trainings, the evaluations, the size between users. The peak counter is reset at each boundary
(``/proc/self/clear_refs``); the size's peak is then the largest phase's. ``--code DIR`` runs the
children on another checkout's code (``PYTHONPATH=DIR``), e.g. the code before a change, for a
before/after pair of tables from this one script. The children start again on the allocator that
the console script runs training commands on (``runners.allocator``: mimalloc); ``--allocator
system`` measures glibc's malloc instead, ``--allocator PATH`` another library. ``MALLOC_*``
variables of the environment reach the children and are printed. Run from the repository root::

    OMP_NUM_THREADS=1 python bench/cohort_scale.py                         # 1, 5 and 20 users, milp.yaml
    OMP_NUM_THREADS=1 python bench/cohort_scale.py --alone                 # and each of the 20 users alone
    OMP_NUM_THREADS=1 python bench/cohort_scale.py --same-user --users 1 20   # 20 copies of one user against 1
    OMP_NUM_THREADS=1 python bench/cohort_scale.py --same-user --users 1 20 --phases  # and each phase's peak
    OMP_NUM_THREADS=1 python bench/cohort_scale.py --same-user --users 1 20 --allocator system  # on glibc's malloc
    OMP_NUM_THREADS=1 python bench/cohort_scale.py --code ../main          # the same on another checkout
    python bench/cohort_scale.py --space tiny.yaml --users 1 3 --set training.max_steps=1
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runners.allocator import VARIABLE as ALLOCATOR_VARIABLE, chosen_library  # noqa: E402
from runners.data.load import DEFAULT_DEMO_USERS, load_dataset  # noqa: E402
from search.space import load_space  # noqa: E402
from search.study.cohort_file import read_cohort_file  # noqa: E402

DEFAULT_USERS = (1, 5, 20)
DEFAULT_SETS = ("training.max_steps=1", "training.min_steps=0", "lora.layers=top:8", "lora.count=2", "lora.rank=8",
                "rag.k=2", "rag.retriever=dense", "lora.base=none")
STUDY = "scale"
PEAK_VARIABLE = "COHORT_SCALE_PEAK"
# Every child first arranges to write its peak resident memory (kB) to the file $COHORT_SCALE_PEAK at exit.
REPORT_PEAK = (
    "import atexit, os\n"
    "def _report_peak():\n"
    "    with open('/proc/self/status') as status, open(os.environ['" + PEAK_VARIABLE + "'], 'w') as out:\n"
    "        out.write(next(line.split()[1] for line in status if line.startswith('VmHWM:')))\n"
    "atexit.register(_report_peak)\n"
)
PHASES_VARIABLE = "COHORT_SCALE_PHASES"
# With --phases, the child also appends, at every phase boundary of a trial, the phase's peak (MB since the last
# boundary, whose counter it then resets), the resident size after the trim (MB) and the phase (the caller's name).
REPORT_PHASES = (
    "import json, sys, runners.trial as _trial\n"
    "def _status_mb(key):\n"
    "    with open('/proc/self/status') as status:\n"
    "        return next(int(line.split()[1]) for line in status if line.startswith(key + ':')) / 1024\n"
    "def _sampled(release=_trial.release_free_heap):\n"
    "    peak, caller = _status_mb('VmHWM'), sys._getframe(1).f_code.co_name\n"
    "    released = release()\n"
    "    with open(os.environ['" + PHASES_VARIABLE + "'], 'a') as out:\n"
    "        out.write(json.dumps({'phase': caller, 'peak': peak, 'after': _status_mb('VmRSS')}) + '\\n')\n"
    "    with open('/proc/self/clear_refs', 'w') as counter:\n"
    "        counter.write('5')\n"
    "    return released\n"
    "_trial.release_free_heap = _sampled\n"
)
# The child: the CLI in a fresh interpreter, on the code PYTHONPATH names, started again on the allocator the
# console script runs training commands on (runners.allocator; code from before it has none and runs on malloc).
RUN_CLI = ("import sys\n"
           "try:\n"
           "    from search.cli import restart_with_allocator\n"
           "except ImportError:\n"
           "    pass\n"
           "else:\n"
           "    restart_with_allocator()\n"
           "from search.cli import main\n"
           "sys.exit(main(sys.argv[1:]))\n")
# The warm-up child: the space's model directory made (the embedded model's dequantized cache).
WARM_UP = ("import sys; from runners.models import resolve_model_dir; from search.space import load_space; "
           "resolve_model_dir(load_space(sys.argv[1]).with_overrides(sys.argv[2:]).model.name)")


@dataclass(frozen=True)
class Measured:
    """One cohort size's run: users, peak resident memory (MB), wall seconds."""

    users: int
    peak_mb: float
    seconds: float
    phases: tuple[dict, ...] = ()


def write_cohort(path: Path, users: int, same: bool = False) -> Path:
    """Write ``users`` users as generic JSONL: the demo users in turn, repeats under new ids (``<id>-r<k>``).

    Args:
        path: The file to write.
        users: How many users.
        same: every user is the first demo user (the k-th copy's history items end in `` #k``, so that
            no two users share a retrieval index or a cached embedding: only the text differs).

    Returns:
        ``path``.
    """
    demo = load_dataset("demo").users
    with path.open("w", encoding="utf-8") as handle:
        for index in range(users):
            if same:
                user, repeat = demo[0], index
            else:
                user, repeat = demo[index % len(demo)], index // len(demo)
            record = user_record(user, f"{user.user_id}-r{repeat}" if repeat else user.user_id)
            if same and repeat:
                for item in record["history"]:
                    for field in ("text", "input"):
                        if field in item:
                            item[field] += f" #{repeat}"
            handle.write(json.dumps(record) + "\n")
    return path


def user_record(user, user_id: str) -> dict:
    """One user as a generic JSONL record under ``user_id`` (query ids made unique by the user id)."""
    history = [{k: v for k, v in (("text", h.text), ("input", h.input), ("output", h.output), ("time", h.time))
                if v is not None} for h in user.history]
    queries = [{"id": f"{user_id}-{i}", "input": q.input, "output": q.output} for i, q in enumerate(user.queries)]
    return {"user_id": user_id, "profile": user.profile, "history": history, "queries": queries}


def cohort_argv(users: int, study_dir: Path, args: argparse.Namespace, data: Path | None,
                name: str | None = None) -> list[str]:
    """The ``pers-search`` arguments of one cohort size's per-user study (named ``scale-<users>`` unless ``name``)."""
    argv = ["run", name or f"{STUDY}-{users}", "--space", space_argument(args.space), "--per-user",
            "--users", str(users), "--trials", str(args.trials), "--study-dir", str(study_dir), "--no-mlflow", "--no-test"]
    for item in args.sets:
        argv += ["--set", item]
    return argv + (["--data", str(data)] if data is not None else [])


def space_argument(space: str) -> str:
    """A space file as an absolute path (the children run in the code's directory), a bundled name as it is."""
    return str(Path(space).resolve()) if Path(space).is_file() else space


def run_child(code: str, argv: Sequence[str], code_dir: Path, log: Path,
              phases: Path | None = None) -> tuple[float, float]:
    """Run ``python -c CODE ARGV...`` in ``code_dir`` (first on its path); return its peak RSS (MB) and wall seconds.

    With ``phases`` the child also writes each trial phase's peak there (:data:`REPORT_PHASES`); the
    peak returned is then only what followed the last phase, since each phase resets the counter.

    Raises:
        SystemExit: the child failed (the end of its output is shown).
    """
    peak = log.with_suffix(".peak")
    env = {**os.environ, "PYTHONPATH": str(code_dir), PEAK_VARIABLE: str(peak)}
    if phases is not None:
        env[PHASES_VARIABLE], code = str(phases), REPORT_PHASES + code
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        returncode = subprocess.run([sys.executable, "-c", REPORT_PEAK + code, *argv], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=code_dir).returncode
    seconds = time.perf_counter() - started
    if returncode != 0:
        tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:])
        raise SystemExit(f"cohort_scale: the child `{' '.join(argv)}` failed with exit code {returncode}; "
                         f"the end of its output:\n{tail}")
    return int(peak.read_text()) / 1024.0, seconds


def read_phases(path: Path) -> tuple[dict, ...]:
    """The phases a child wrote (none when no trial reached a boundary)."""
    if not path.exists():
        return ()
    return tuple(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def measure(users: int, args: argparse.Namespace, work: Path, data: Path | None) -> Measured:
    """One cohort size in a subprocess of its own."""
    argv = cohort_argv(users, work / f"studies-{users}", args, data)
    path = work / f"phases-{users}.jsonl" if args.phases else None
    peak, seconds = run_child(RUN_CLI, argv, Path(args.code).resolve(), work / f"run-{users}.log", path)
    phases = read_phases(path) if path is not None else ()
    return Measured(users, max([peak] + [phase["peak"] for phase in phases]), seconds, phases)


def measure_alone(users: int, args: argparse.Namespace, work: Path, data: Path | None) -> list[Measured]:
    """Every user of the ``users``-user cohort (as its study recorded them) alone, in a process of its own."""
    cohort = read_cohort_file(f"{STUDY}-{users}", work / f"studies-{users}").users
    records = {u.user_id: u for u in (load_dataset(str(data)) if data is not None else load_dataset("demo")).users}
    alone = []
    for index, user_id in enumerate(cohort):
        path = work / f"alone-{index}.jsonl"
        path.write_text(json.dumps(user_record(records[user_id], user_id)) + "\n", encoding="utf-8")
        argv = cohort_argv(1, work / f"studies-alone-{index}", args, path, name=f"{STUDY}-alone-{index}")
        peak, seconds = run_child(RUN_CLI, argv, Path(args.code).resolve(), work / f"alone-{index}.log")
        alone.append(Measured(1, peak, seconds))
        print(f"  {user_id} alone: peak RSS {peak:,.0f} MB, {seconds:.0f} s", flush=True)
    return alone


def table(rows: Sequence[Measured], alone: Sequence[Measured] = ()) -> str:
    """The markdown table; the ratios are to the smallest cohort of the run and to the largest user alone."""
    base = min(rows, key=lambda r: r.users)
    top = max((a.peak_mb for a in alone), default=None)
    head = f"| users | peak RSS MB | wall s | s per user | peak / {base.users} user{'s' if base.users > 1 else ''} |"
    lines = [head + (" peak / largest user alone |" if alone else ""),
             "|---|---|---|---|---|" + ("---|" if alone else "")]
    for r in sorted(rows, key=lambda r: r.users):
        lines.append(f"| {r.users} | {r.peak_mb:,.0f} | {r.seconds:.0f} | {r.seconds / r.users:.1f} | "
                     f"{r.peak_mb / base.peak_mb:.2f} |" + (f" {r.peak_mb / top:.2f} |" if alone else ""))
    if alone:
        peaks = sorted(a.peak_mb for a in alone)
        lines.append(f"\n{len(alone)} users alone: peak RSS {peaks[0]:,.0f} to {peaks[-1]:,.0f} MB "
                     f"(median {peaks[len(peaks) // 2]:,.0f} MB)")
    return "\n".join(lines)


def phase_summary(row: Measured) -> str:
    """One size's phases: the first training's peak, the later trainings', the evaluations', the size between users.

    A training phase ends in ``_personalized`` (``release_free_heap`` after the memory's training), an
    evaluation in ``_run_user`` (at the user's end, after the generation); the size between users is
    the resident size after the user's end's trim. MB; the later ones as median and range.
    """
    def spread(values: Sequence[float]) -> str:
        if not values:
            return "-"
        ordered = sorted(values)
        return f"{ordered[len(ordered) // 2]:,.0f} ({ordered[0]:,.0f}-{ordered[-1]:,.0f}, {len(ordered)})"

    trainings = [p["peak"] for p in row.phases if p["phase"] == "_personalized"]
    ends = [p for p in row.phases if p["phase"] == "_run_user"]
    return (f"{row.users} user{'s' if row.users > 1 else ''}, phase peaks MB: first training "
            f"{f'{trainings[0]:,.0f}' if trainings else '-'}, later trainings {spread(trainings[1:])}, "
            f"evaluations {spread([p['peak'] for p in ends])}; between users {spread([p['after'] for p in ends])}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, nargs="+", default=list(DEFAULT_USERS), help="cohort sizes (default 1 5 20)")
    p.add_argument("--space", default="milp.yaml", help="the search space (default milp.yaml: the embedded model)")
    p.add_argument("--set", dest="sets", action="append", default=None, metavar="KEY=VALUE",
                   help=f"space overrides (default: {' '.join(DEFAULT_SETS)})")
    p.add_argument("--trials", type=int, default=1, help="trials per user (default 1)")
    p.add_argument("--alone", action="store_true",
                   help="also run every user of the largest cohort alone, one process each")
    p.add_argument("--same-user", action="store_true",
                   help="every user is a copy of one demo user: what the cohort adds, without users that differ")
    p.add_argument("--phases", action="store_true",
                   help="also print each trial phase's peak (trainings, evaluations) and the size between users")
    p.add_argument("--code", default=str(ROOT), help="the checkout whose code the children run (default this one)")
    p.add_argument("--allocator", default=None, metavar="CHOICE",
                   help="the children's allocator, as PERS_SEARCH_ALLOCATOR takes it: mimalloc (the default, as the "
                        "console script runs), system (glibc's malloc) or a library's path")
    args = p.parse_args(argv)
    if args.sets is None:
        args.sets = list(DEFAULT_SETS)
    if min(args.users) < 1:
        p.error(f"--users {args.users}: every cohort size must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    load_space(args.space).with_overrides(args.sets)  # a bad space or override fails here, not in a child
    if args.allocator is not None:
        os.environ[ALLOCATOR_VARIABLE] = args.allocator  # the children inherit it
    library = chosen_library()  # a bad choice fails here, not in a child
    print(f"cohort_scale: {datetime.date.today()}, {platform.machine()} {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"{''.join(f'{k}={v}, ' for k, v in sorted(os.environ.items()) if k.startswith('MALLOC_'))}"
          f"allocator {library or 'system (malloc of the C library)'}, "
          f"code {Path(args.code).resolve()}, --set {' '.join(args.sets)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="cohort-scale-") as tmp:
        work = Path(tmp)
        many = args.same_user or max(args.users) > DEFAULT_DEMO_USERS
        data = write_cohort(work / "users.jsonl", max(args.users), args.same_user) if many else None
        run_child(WARM_UP, [space_argument(args.space), *args.sets], Path(args.code).resolve(), work / "warm-up.log")
        rows = []
        for users in args.users:
            rows.append(measure(users, args, work, data))
            print(f"{users} user{'s' if users > 1 else ''}: peak RSS {rows[-1].peak_mb:,.0f} MB, "
                  f"{rows[-1].seconds:.0f} s", flush=True)
        alone = measure_alone(max(args.users), args, work, data) if args.alone else []
    print(table(rows, alone))
    for row in rows if args.phases else ():
        print(phase_summary(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
