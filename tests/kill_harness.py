"""Kill a tiny-model study with SIGKILL at seeded random moments, resuming it after each kill.

Used by ``tests/test_kill_resume.py``: ``python tests/kill_harness.py WORKDIR SEED ROUNDS``.

The harness imports everything and loads the tiny model once, then forks one child per round
(so a round costs its trials, not Python's imports). The child arms one kill point, then runs
``pers-search run`` (first round) or ``resume``; the kill point SIGKILLs the child at the n-th
time it reaches its moment:

- ``train``: inside a user's fine-tuning (``runners.trial.train_on_history``);
- ``generate``: inside generation (``runners.trial.generate``);
- ``study_write``: while writing ``study.json`` (half the text in the temp file, no rename);
- ``mlflow_log``: inside an MLflow ``log_batch`` (a trial run created, not yet closed).

After each round the parent checks the study file and writes every observation to
``WORKDIR/kills.json``; after the last round it resumes once without a kill point and reads
MLflow's runs into the same file, for the test to judge.

Then the finished study is exported with a kill at each of the export's moments
(``EXPORT_KINDS``: re-training the adapters of the trial with the most memory, moving them into the bundle,
writing ``serving.yaml``); after each kill the same export is tried again without ``--force``
(it must refuse and say the bundle is unfinished), and at the end with ``--force``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
from pathlib import Path

KINDS = ("train", "generate", "study_write", "mlflow_log")
EXPORT_KINDS = ("export_train", "export_move", "export_manifest")
STUDY = "k"
OVERRIDES = ["--set", "training.max_steps=1", "--set", "training.max_new_tokens=4", "--set", "data.max_val_queries=1"]
CHILD_TIMEOUT_S = 150


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _counting(original, nth: int, when=lambda *a, **k: True):
    """``original`` wrapped: the n-th call that satisfies ``when`` kills the process instead."""
    calls = [0]

    def wrapper(*args, **kwargs):
        if when(*args, **kwargs):
            calls[0] += 1
            if calls[0] == nth:
                _kill_self()
        return original(*args, **kwargs)
    return wrapper


def _half_write(path, text) -> None:
    """What a kill in the middle of writing ``study.json`` leaves: half a temp file, no rename."""
    fd, _ = tempfile.mkstemp(dir=Path(path).parent, prefix=f".{Path(path).name}.", suffix=".tmp")
    os.write(fd, text[: len(text) // 2].encode())
    _kill_self()


def arm(kind: str, nth: int) -> None:
    """Install the kill point ``kind`` at its ``nth`` occurrence (in the forked child only)."""
    import runners.trial
    import search.study.study
    from mlflow.tracking import MlflowClient

    if kind == "train":
        runners.trial.train_on_history = _counting(runners.trial.train_on_history, nth)
    elif kind == "generate":
        runners.trial.generate = _counting(runners.trial.generate, nth)
    elif kind == "study_write":
        original = search.study.study.atomic_write
        calls = [0]

        def write(path, text):
            if Path(path).name == "study.json":
                calls[0] += 1
                if calls[0] == nth:
                    _half_write(path, text)
            return original(path, text)
        search.study.study.atomic_write = write
    elif kind == "mlflow_log":
        MlflowClient.log_batch = _counting(MlflowClient.log_batch, nth)
    elif kind == "export_train":
        import search.export.bundle
        search.export.bundle.run_trial = _counting(search.export.bundle.run_trial, nth)
    elif kind == "export_move":
        import shutil
        shutil.move = _counting(shutil.move, nth)
    elif kind == "export_manifest":
        import search.export.manifest
        search.export.manifest.atomic_write = lambda path, text: _half_write(path, text)


def preload(work: Path) -> None:
    """Import and load in the parent what every child needs, so forks start warm."""
    import torch

    torch.set_num_threads(1)  # no OpenMP thread team in the parent: forking stays safe
    import matplotlib  # noqa: F401 - warm imports for the children
    import mlflow.tracking  # noqa: F401
    import search.tracking.plots  # noqa: F401
    from search.cli import build_parser
    from search.commands.common import space_from_args
    from search.study.setup import bind_to_model
    from runners.session import session_for

    args = build_parser().parse_args(_run_argv(work, 4))
    _, setup = bind_to_model(space_from_args(args))
    session = session_for(setup)
    session.loaded, session.splits  # noqa: B018 - load the model and the data now


def _run_argv(work: Path, trials: int) -> list[str]:
    return ["run", STUDY, "--space", "tiny.yaml", "--optimizer", "sobol", "--trials", str(trials),
            "--study-dir", str(work / "studies"), "--no-test", *OVERRIDES]


def _resume_argv(work: Path, trials: int) -> list[str]:
    return ["resume", STUDY, "--trials", str(trials), "--study-dir", str(work / "studies"), "--no-test"]


def _export_argv(work: Path, pick: str, force: bool = False) -> list[str]:
    return ["export", STUDY, "--pick", pick, "--out", str(work / "bundle"), "--study-dir", str(work / "studies"),
            *(["--force"] if force else [])]


def read_bundle(out: Path) -> dict:
    """What an export left: its top-level entries (hidden ones too) and whether the manifest parses."""
    import yaml

    if not out.exists():
        return {"exists": False}
    manifest = out / "serving.yaml"
    try:
        parsed = bool(yaml.safe_load(manifest.read_text(encoding="utf-8"))) if manifest.exists() else None
    except yaml.YAMLError as err:
        parsed = f"corrupt: {err}"
    return {"exists": True, "entries": sorted(p.name for p in out.iterdir()), "manifest": parsed}


def export_rounds(work: Path, study_file: Path) -> tuple[list[dict], str]:
    """Kill the export at each of its moments; after each kill, try it again without ``--force``."""
    trials = json.loads(study_file.read_text(encoding="utf-8"))["trials"]
    done = [t for t in trials if t["state"] == "completed"]
    pick = f"trial:{max(done, key=lambda t: t['values']['storage_bytes'])['number']}"  # off the front, maybe
    rounds = []
    for kind in EXPORT_KINDS:
        study_before = read_study(study_file)
        ended = fork_run(_export_argv(work, pick, force=bool(rounds)), kind, 1, work / f"export-{kind}.log")
        left = read_bundle(work / "bundle")
        again_log = work / f"export-{kind}-again.log"
        again = fork_run(_export_argv(work, pick), None, 0, again_log)
        rounds.append({"kind": kind, "ended": ended, "left": left, "again": again,
                       "again_said": again_log.read_text(errors="replace")[-600:],
                       "study_unchanged": read_study(study_file) == study_before})
    return rounds, pick


def fork_run(argv: list[str], kind: str | None, nth: int, log: Path) -> dict:
    """Run the CLI in a forked child with one kill point; how it ended."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = 99
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            signal.alarm(CHILD_TIMEOUT_S)
            if kind:
                arm(kind, nth)
            from search.cli import main
            code = main(argv)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit": os.WEXITSTATUS(status)}


def read_study(path: Path) -> dict:
    """The study file as the parent sees it after a round: parsed, or why not."""
    if not path.exists():
        return {"exists": False}
    try:
        trials = json.loads(path.read_text(encoding="utf-8"))["trials"]
    except (ValueError, KeyError) as err:
        return {"exists": True, "corrupt": str(err)}
    done = [t for t in trials if t["state"] in ("completed", "failed")]
    return {"exists": True, "numbers": [t["number"] for t in trials],
            "temp_files": sorted(p.name for p in path.parent.glob(".*.tmp")),
            "finished": {str(t["number"]): [t["values"], t["finished_at"]] for t in done}}


def mlflow_runs(work: Path) -> list[dict]:
    """Every run of the study's experiment (deleted ones too): role, trial, status, lifecycle."""
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(STUDY)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=10000)
    return [{"role": r.data.tags.get("pers_search.role"), "trial": r.data.tags.get("pers_search.trial"),
             "status": r.info.status, "stage": r.info.lifecycle_stage,
             "parent": r.data.tags.get("mlflow.parentRunId")} for r in runs]


def main() -> None:
    work, seed, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlruns/mlflow.db"
    (work / "mlruns").mkdir(parents=True, exist_ok=True)
    preload(work)
    rng = random.Random(seed)
    study_file = work / "studies" / STUDY / "study.json"
    trials, observed = 4, []
    for number in range(rounds):
        kind, nth = KINDS[number % len(KINDS)] if number < len(KINDS) else rng.choice(KINDS), rng.randint(1, 2)
        before = read_study(study_file)
        if len(before.get("finished", {})) >= trials - 1:
            trials += 2  # keep work ahead of the kills
        argv = _resume_argv(work, trials) if before.get("exists") else _run_argv(work, trials)
        ended = fork_run(argv, kind, nth, work / f"round-{number:02d}.log")
        observed.append({"round": number, "kind": kind, "nth": nth, "argv": argv[0], "ended": ended,
                         "before": before, "after": read_study(study_file)})
    final = fork_run(_resume_argv(work, trials), None, 0, work / "final.log")
    result = {"rounds": observed, "final": {"ended": final, "study": read_study(study_file), "trials": trials},
              "mlflow": mlflow_runs(work)}
    result["exports"], pick = export_rounds(work, study_file)
    forced = fork_run(_export_argv(work, pick, force=True), None, 0, work / "export-forced.log")
    result["export_forced"] = {"ended": forced, "bundle": read_bundle(work / "bundle")}
    (work / "kills.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
