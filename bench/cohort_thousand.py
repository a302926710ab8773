"""Benchmark: a per-user study of a thousand users on the tiny model, end to end (issue 34, target 5).

Writes a generic JSONL cohort of ``--users`` users (the demo users in turn, repeats under new ids),
then runs, in a child process, the command a user would::

    pers-search run thousand --space tiny.yaml --data users.jsonl --users N --per-user --warm-start \\
        --early-stop --workers 2 --trials T --tracking-uri sqlite:///.../mlflow.db

and prints:

- the wall time, and the time per user;
- the resident memory of the driver and of the worker processes, sampled every second, at the
  moments 10, 100 and 1,000 users are done (``--marks``): now and the peak so far (flat in the
  number of users is the goal: one base model per process, the studies on disk);
- MLflow's runs of the study's experiment by role: one ``study`` (parent) run per user, one
  ``cohort`` run, the ``trial`` runs (one per finished trial);
- ``status`` of the cohort: seconds, lines and bytes of its output (the summary and the first page),
  of ``status --user U`` and of ``status --json``;
- the size of the study directory and of the MLflow store.

Run from the repository root (about 2 h at 1,000 users x 3 trials on this 2-core CPU; estimate
first with ``--users 20``)::

    OMP_NUM_THREADS=1 python bench/cohort_thousand.py                      # 1,000 users x 3 trials
    OMP_NUM_THREADS=1 python bench/cohort_thousand.py --users 20 --trials 2  # a smoke run, minutes
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.cohort_scale import write_cohort  # noqa: E402  (the demo users in turn, repeats under new ids)

STUDY = "thousand"
DONE_LINE = re.compile(r" done \[(\d+)/(\d+) users\]")
SAMPLE_SECONDS = 1.0


# --------------------------------------------------------------------------- memory
def _status_kb(pid: int, key: str) -> int:
    """``VmRSS``/``VmHWM`` of a process in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            return next((int(line.split()[1]) for line in status if line.startswith(key + ":")), 0)
    except OSError:
        return 0


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (the worker processes of the driver, and multiprocessing's tracker)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@dataclass
class Memory:
    """The driver's and the workers' resident memory (MB): now and the peak seen so far."""

    driver_mb: float = 0.0
    driver_peak_mb: float = 0.0
    workers: int = 0
    worker_mb: float = 0.0  # the largest worker now
    worker_peak_mb: float = 0.0  # the largest worker's peak so far (VmHWM)
    total_mb: float = 0.0  # driver and workers now
    total_peak_mb: float = 0.0  # the largest sum seen by the sampler

    def sample(self, pid: int) -> None:
        workers = [p for p in _children(pid) if _status_kb(p, "VmRSS") > 50 * 1024]  # not the tiny tracker
        self.driver_mb = _status_kb(pid, "VmRSS") / 1024
        self.driver_peak_mb = max(self.driver_peak_mb, _status_kb(pid, "VmHWM") / 1024)
        now = [_status_kb(p, "VmRSS") / 1024 for p in workers]
        self.workers = len(workers)
        self.worker_mb = max(now, default=0.0)
        self.worker_peak_mb = max([self.worker_peak_mb] + [_status_kb(p, "VmHWM") / 1024 for p in workers])
        self.total_mb = self.driver_mb + sum(now)
        self.total_peak_mb = max(self.total_peak_mb, self.total_mb)


@dataclass
class Mark:
    """Memory when ``users`` users were done, ``seconds`` into the run."""

    users: int
    seconds: float
    memory: Memory


@dataclass
class Watch:
    """What the bench saw of the running child: users done, memory marks, the log."""

    marks: list[int]
    started: float = field(default_factory=time.perf_counter)
    memory: Memory = field(default_factory=Memory)
    done: int = 0
    seen: list[Mark] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def line(self, text: str) -> None:
        found = DONE_LINE.search(text)
        if found:
            with self.lock:
                self.done = int(found.group(1))
                if self.done in self.marks:
                    self.seen.append(Mark(self.done, time.perf_counter() - self.started,
                                          Memory(**asdict(self.memory))))


def _sample(proc: subprocess.Popen, watch: Watch) -> None:
    while proc.poll() is None:
        with watch.lock:
            watch.memory.sample(proc.pid)
        time.sleep(SAMPLE_SECONDS)


def _read(stream, log: Path, watch: Watch) -> None:
    with log.open("w", encoding="utf-8") as out:
        for text in stream:
            out.write(text)
            watch.line(text)


# --------------------------------------------------------------------------- the run
def run_argv(args: argparse.Namespace, work: Path, data: Path) -> list[str]:
    """The ``pers-search run`` of the study."""
    argv = ["run", STUDY, "--space", "tiny.yaml", "--data", str(data), "--users", str(args.users), "--per-user",
            "--warm-start", "--early-stop", "--workers", str(args.workers), "--trials", str(args.trials),
            "--study-dir", str(work / "studies"), "--tracking-uri", tracking_uri(work)]
    for item in args.sets:
        argv += ["--set", item]
    return argv


def tracking_uri(work: Path) -> str:
    return f"sqlite:///{work / 'mlruns' / 'mlflow.db'}"


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_study(args: argparse.Namespace, work: Path, data: Path) -> tuple[int, float, Watch]:
    """Run the study in a child process, sampling its memory; return its exit code, wall seconds and what was seen."""
    watch = Watch(sorted(set(args.marks + [args.users])))
    argv = [sys.executable, "-m", "search.cli", *run_argv(args, work, data)]
    with (work / "run.out").open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(argv, cwd=work, env=child_env(), stdout=out, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=_read, args=(proc.stderr, work / "run.log", watch), daemon=True)
        sampler = threading.Thread(target=_sample, args=(proc, watch), daemon=True)
        reader.start()
        sampler.start()
        code = proc.wait()
        reader.join(timeout=30)
        sampler.join(timeout=30)
    return code, time.perf_counter() - watch.started, watch


# --------------------------------------------------------------------------- after the run
def mlflow_counts(work: Path) -> dict[str, int]:
    """Runs of the study's experiment by role (``study``: one parent per user; ``cohort``; ``trial``) and status."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(work))
    experiment = client.get_experiment_by_name(STUDY)
    counts: dict[str, int] = {}
    token = None
    while True:
        page = client.search_runs([experiment.experiment_id], max_results=5000, page_token=token)
        for run in page:
            role = run.data.tags.get("pers_search.role", "?")
            counts[role] = counts.get(role, 0) + 1
            counts[f"{role} {run.info.status}"] = counts.get(f"{role} {run.info.status}", 0) + 1
        token = page.token
        if not token:
            return counts


def status_cost(work: Path, *extra: str) -> dict[str, float]:
    """``pers-search status`` of the study with ``extra`` options: seconds, lines and bytes of its output."""
    argv = [sys.executable, "-m", "search.cli", "status", STUDY, "--study-dir", str(work / "studies"), *extra]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=work, env=child_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"status {' '.join(extra)} failed: {done.stderr[-2000:]}")
    return {"seconds": seconds, "lines": done.stdout.count("\n"), "bytes": len(done.stdout.encode()),
            "first_lines": done.stdout.splitlines()[:5]}


def study_counts(work: Path) -> dict[str, int]:
    """Users with a study, and their trials by state, read from the study files."""
    counts: dict[str, int] = {"users": 0}
    for path in (work / "studies" / STUDY / "users").glob("*/study.json"):
        counts["users"] += 1
        for trial in json.loads(path.read_text(encoding="utf-8"))["trials"]:
            counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    return counts


def du_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2 ** 20 if path.exists() else 0.0


def report(args: argparse.Namespace, code: int, seconds: float, watch: Watch, work: Path) -> dict:
    """Everything measured, as one JSON-ready record (also printed as lines)."""
    users = study_counts(work)
    record = {"date": time.strftime("%Y-%m-%d"), "machine": f"{os.cpu_count()} CPUs", "argv": run_argv(args, work,
              work / "users.jsonl"), "exit": code, "wall_s": seconds, "s_per_user": seconds / args.users,
              "marks": [asdict(m) for m in watch.seen], "peak": asdict(watch.memory), "studies": users,
              "study_dir_mb": du_mb(work / "studies"), "mlruns_mb": du_mb(work / "mlruns")}
    if code == 0:
        record["mlflow"] = mlflow_counts(work)
        first = json.loads((work / "studies" / STUDY / "cohort.json").read_text(encoding="utf-8"))["users"][0]
        record["status"] = {"summary": status_cost(work), "user": status_cost(work, "--user", first),
                            "json": status_cost(work, "--json")}
    return record


def print_report(record: dict) -> None:
    print(f"{record['date']}, {record['machine']}: exit {record['exit']}, wall {record['wall_s']:.0f} s "
          f"({record['s_per_user']:.2f} s a user)")
    print("| users done | at s | driver MB | driver peak MB | workers | largest worker MB | worker peak MB | "
          "driver+workers MB |")
    print("|---|---|---|---|---|---|---|---|")
    for mark in record["marks"]:
        m = mark["memory"]
        print(f"| {mark['users']} | {mark['seconds']:.0f} | {m['driver_mb']:.0f} | {m['driver_peak_mb']:.0f} | "
              f"{m['workers']} | {m['worker_mb']:.0f} | {m['worker_peak_mb']:.0f} | {m['total_mb']:.0f} |")
    peak = record["peak"]
    print(f"whole run: driver peak {peak['driver_peak_mb']:.0f} MB, worker peak {peak['worker_peak_mb']:.0f} MB, "
          f"driver+workers peak {peak['total_peak_mb']:.0f} MB")
    print(f"studies: {record['studies']}; study dir {record['study_dir_mb']:.1f} MB, MLflow store "
          f"{record['mlruns_mb']:.1f} MB")
    if "mlflow" in record:
        roles = record["mlflow"]
        print(f"MLflow runs: {roles.get('study', 0)} study (parent) runs, {roles.get('cohort', 0)} cohort run, "
              f"{roles.get('trial', 0)} trial runs; by status: "
              + ", ".join(f"{k}={v}" for k, v in sorted(roles.items()) if " " in k))
        for what, cost in record["status"].items():
            print(f"status ({what}): {cost['seconds']:.1f} s, {cost['lines']} lines, {cost['bytes']:,} bytes")
        print("status starts:\n  " + "\n  ".join(record["status"]["summary"]["first_lines"]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=3, help="trials per user (default 3)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--marks", type=int, nargs="*", default=[10, 100, 1000],
                        help="users done at which memory is printed (default 10 100 1000)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="more space overrides for the run")
    parser.add_argument("--work", help="working directory (default: a new temporary one, removed unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--out", help="also write the record as JSON to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="cohort-thousand-"))
    work.mkdir(parents=True, exist_ok=True)
    data = write_cohort(work / "users.jsonl", args.users)
    print(f"working in {work}; pers-search {' '.join(run_argv(args, work, data))}", flush=True)
    code, seconds, watch = run_study(args, work, data)
    record = report(args, code, seconds, watch, work)
    print_report(record)
    if args.out:
        Path(args.out).write_text(json.dumps(record, indent=1), encoding="utf-8")
    if code != 0:
        print(f"the run failed (exit {code}); its log: {work / 'run.log'}", flush=True)
    if not args.work and not args.keep and code == 0:
        shutil.rmtree(work, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
