"""One base model per process, whatever the number of users (issue 34): sessions share the model, the data
and the caches; a trial leaves nothing behind on them; per-user runs load the model and read the data once."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from parallel_objectives import ReportsLoads
from runners import session as sessions
from runners.data.load import load_dataset
from runners.session import SharedCache, cache_info, clear_caches, session_for
from runners.spec import TrialConfig, TrialSetup
from search.study.setup import user_setup

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = {"train_seconds", "generate_seconds", "train_tokens_per_second", "assembly_seconds"}


class Box:
    """A value a cache can refer to weakly."""


def write_users(path: Path, users: int) -> Path:
    """The first ``users`` demo users as a generic JSONL file."""
    with path.open("w", encoding="utf-8") as handle:
        for user in load_dataset("demo").users[:users]:
            history = [{k: v for k, v in (("text", h.text), ("input", h.input), ("output", h.output)) if v is not None}
                       for h in user.history]
            queries = [{"input": q.input, "output": q.output} for q in user.queries]
            handle.write(json.dumps({"user_id": user.user_id, "profile": user.profile, "history": history,
                                     "queries": queries}) + "\n")
    return path


def test_a_shared_cache_builds_once_holds_a_few_and_finds_again_what_is_still_in_use():
    cache = SharedCache(keep=2)
    kept = cache.get("a", Box)
    assert cache.get("a", Box) is kept and (cache.builds, cache.hits) == (1, 1)
    cache.get("b", Box), cache.get("c", Box)  # "a" is no longer among the two the cache holds ...
    assert cache.get("a", Box) is kept and cache.builds == 3, "... but still in use here: found, not built twice"
    del kept
    cache.get("d", Box), cache.get("e", Box)
    gc.collect()
    assert len(cache) == 2, "a value neither held nor used is gone"
    cache.get("a", Box)
    assert cache.builds == 6
    assert cache.get("n", lambda: 5) == 5 and cache.get("n", lambda: 6) == 5, "values without weak references too"


def test_per_user_sessions_share_the_model_the_data_and_the_caches(tiny_setup):
    cohort = session_for(tiny_setup)
    first, second = (s.user.user_id for s in cohort.splits)
    a, b = session_for(user_setup(tiny_setup, first)), session_for(user_setup(tiny_setup, second))
    assert a is not b and session_for(user_setup(tiny_setup, first)) is a
    assert a.loaded is b.loaded is cohort.loaded and a.layout is b.layout is cohort.layout
    assert a.dataset is b.dataset is cohort.dataset and a.index_cache is b.index_cache is cohort.index_cache
    assert [s.user.user_id for s in a.splits] == [first] and [s.user.user_id for s in b.splits] == [second]
    assert a.splits[0].user is next(u for u in a.dataset.users if u.user_id == first), "a view on the shared users"
    assert a.splits[0].val == cohort.splits[0].val, "a user's split does not depend on the cohort"
    assert a.persona_content(a.splits[0].user) is cohort.persona_content(cohort.splits[0].user)

    reseeded = dataclasses.replace(tiny_setup, data=dataclasses.replace(tiny_setup.data, split_seed=7))
    assert session_for(reseeded).dataset is a.dataset and session_for(reseeded).loaded is a.loaded
    narrower = dataclasses.replace(tiny_setup, model=dataclasses.replace(tiny_setup.model, targets=("up_proj",)))
    assert session_for(narrower).loaded is not a.loaded, "other model settings: a model of their own"
    assert session_for(narrower).layout.targets == ("up_proj",) and a.layout.targets == tiny_setup.model.targets


def test_a_thousand_per_user_sessions_keep_one_model_and_a_bounded_state(tiny_setup):
    cohort = session_for(tiny_setup)
    loads, users = cache_info()["models"]["builds"], [u.user_id for u in cohort.dataset.users]
    for seed in range(1000 // len(users) + 1):
        reseeded = dataclasses.replace(tiny_setup, data=dataclasses.replace(tiny_setup.data, split_seed=seed))
        for user in users:
            session = session_for(user_setup(reseeded, user))
            assert session.loaded is cohort.loaded and len(session.splits) == 1
            session.persona_content(session.splits[0].user)
    del session
    gc.collect()
    info = cache_info()
    assert info["models"]["builds"] == loads, "no model loaded for any of them"
    assert info["sessions"]["alive"] <= sessions.KEEP_SESSIONS + 1  # + the cohort's, held here
    assert info["contents"]["alive"] <= sessions.KEEP_CONTENTS
    assert info["datasets"]["alive"] <= sessions.KEEP_DATASETS


def test_a_data_file_is_read_again_only_when_it_changes(tmp_path):
    path = write_users(tmp_path / "users.jsonl", 3)
    setup = TrialSetup.from_dicts({"name": "tiny"}, {"source": str(path), "users": 2})
    first = session_for(setup).dataset
    assert session_for(dataclasses.replace(setup, data=dataclasses.replace(setup.data, users=3))).dataset is first
    write_users(path, 4)
    changed = session_for(dataclasses.replace(setup, data=dataclasses.replace(setup.data, users=4))).dataset
    assert changed is not first and len(changed.users) == 4 and len(first.users) == 3


# A trial of one user in a process of its own: the reference for trials run one after another here.
FRESH_TRIAL = """
import json, sys
import torch
from runners.spec import TrialConfig, TrialSetup
from runners.trial import run_trial

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
user = run_trial(TrialConfig(**args["config"]), TrialSetup.from_dicts(**args["setup"])).users[0]
print(json.dumps({"metrics": user.metrics, "predictions": list(user.predictions)}))
"""


def _outcome(result) -> dict:
    user = result.users[0]
    return {"metrics": {k: v for k, v in user.metrics.items() if k not in TIMINGS},
            "predictions": list(user.predictions)}


def _fresh_process(setup: TrialSetup, config: TrialConfig, threads: int) -> subprocess.Popen:
    sections = {"model": dataclasses.asdict(setup.model), "data": dataclasses.asdict(setup.data),
                "training": dataclasses.asdict(setup.training), "pool_dir": setup.pool_dir}
    args = json.dumps({"setup": sections, "config": dataclasses.asdict(config), "threads": threads})
    return subprocess.Popen([sys.executable, "-c", FRESH_TRIAL, args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


def test_users_trials_in_one_process_give_what_each_gives_in_a_fresh_process(tiny_setup, tiny_pool):
    """Own memory, retrieval and shared Per-Pcs pieces on the one shared model: nothing stays behind.

    Here user A, then user B, then A again; B alone in a fresh process (A's reference is its own first run).
    """
    import torch

    from runners.trial import run_trial

    setup = dataclasses.replace(tiny_setup, pool_dir=str(tiny_pool))
    config = TrialConfig(layers=(1, 3), count=2, rank=4, rag_k=2, retriever="bm25", perpcs_top_k=1)
    a, b = (user_setup(setup, s.user.user_id) for s in session_for(setup).splits)
    child = _fresh_process(b, config, torch.get_num_threads())
    first_a, then_b, again_a = (_outcome(run_trial(config, s)) for s in (a, b, a))
    out, _ = child.communicate(timeout=600)
    assert child.returncode == 0
    alone = json.loads(out)
    alone["metrics"] = {k: v for k, v in alone["metrics"].items() if k not in TIMINGS}
    assert then_b == alone, "user B after user A in this process differs from user B in a fresh process"
    assert again_a == first_a, "user A after user B differs from user A before"
    assert first_a != then_b and first_a["metrics"]["storage_bytes"] > 0 and first_a["metrics"]["perpcs_top_k"] == 1
    assert type(session_for(setup).loaded.model).__name__ == "LlamaForCausalLM", "no PEFT wrapper left on the model"


# Users trained one after another in a fresh process (bf16 on the CPU): its resident MB after each.
USER_AFTER_USER = """
import gc, json, os
from runners.session import session_for
from runners.spec import TrialConfig, TrialSetup
from runners.trial import run_trial
from search.study.setup import user_setup

setup = TrialSetup.from_dicts({"name": "tiny"}, {"source": "demo", "users": 10, "max_val_queries": 1},
                              {"max_steps": 1, "min_steps": 0, "max_new_tokens": 2, "autocast": "bfloat16"})
resident = []
for split in session_for(setup).splits:
    run_trial(TrialConfig(layers=(2, 3), count=2, rank=8), user_setup(setup, split.user.user_id))
    gc.collect()
    resident.append(next(int(l.split()[1]) // 1024 for l in open("/proc/self/status") if l.startswith("VmRSS")))
print(json.dumps({"resident": resident, "capacity": os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_training_user_after_user_keeps_the_kernel_caches_bounded():
    """bf16 kernels compiled per shape are cached; every user brings new shapes (the control: 1,024 entries)."""
    env = {k: v for k, v in os.environ.items() if k not in sessions.KERNEL_CACHE_VARIABLES}
    run = lambda extra: subprocess.Popen(  # noqa: E731
        [sys.executable, "-c", USER_AFTER_USER], stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra})
    bounded, control = run({}), run({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "1024", "LRU_CACHE_CAPACITY": "1024"})
    bounded, control = (json.loads(p.communicate(timeout=600)[0]) for p in (bounded, control))
    assert bounded["capacity"] == str(sessions.KERNEL_CACHE_ENTRIES) and control["capacity"] == "1024"
    grown = {name: r["resident"][-1] - r["resident"][3] for name, r in (("bounded", bounded), ("control", control))}
    assert grown["bounded"] < 60 and grown["control"] > 100, f"MB grown over users 4-10: {grown}"


def _counting(monkeypatch, data: Path) -> dict[str, int]:
    """Count real calls of ``load_model`` and real opens of the data file (the functions still run)."""
    import builtins

    import runners.models

    counts = {"loads": 0, "reads": 0}
    load, opener = runners.models.load_model, builtins.open

    def counted_load(spec):
        counts["loads"] += 1
        return load(spec)

    def counted_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file).resolve() == data.resolve():
            counts["reads"] += 1
        return opener(file, *args, **kwargs)

    monkeypatch.setattr(runners.models, "load_model", counted_load)
    monkeypatch.setattr(sessions, "load_model", counted_load)
    monkeypatch.setattr(builtins, "open", counted_open)
    monkeypatch.setattr(io, "open", counted_open)  # what Path.open calls
    return counts


def test_a_three_user_per_user_run_and_its_export_load_the_model_once_and_read_the_data_once(tmp_path, monkeypatch, capsys):
    from search.cli import main
    from search.execution.per_user import load_cohort

    data = write_users(tmp_path / "users.jsonl", 4)
    clear_caches()
    gc.collect()
    assert cache_info()["models"]["alive"] == 0, "a model of an earlier test is still in use: the count below is off"
    counts = _counting(monkeypatch, data)
    code = main(["run", "three", "--space", "tiny.yaml", "--per-user", "--users", "3", "--trials", "1",
                 "--data", str(data), "--study-dir", str(tmp_path / "studies"), "--no-mlflow"])
    assert code == 0, capsys.readouterr().err
    cohort = load_cohort("three", tmp_path / "studies")
    assert len(cohort.studies) == 3 and all(len(s.completed()) == 1 for s in cohort.studies.values())
    # one read to parse the users, one to hash the file for the studies' provenance (hashed once per
    # process: search.study.provenance.file_sha256), whatever the number of users
    assert counts == {"loads": 1, "reads": 2}
    assert main(["export", "three", "--pick", "knee", "--out", str(tmp_path / "bundle"),
                 "--study-dir", str(tmp_path / "studies")]) == 0
    assert sorted(yaml.safe_load((tmp_path / "bundle" / "serving.yaml").read_text())["per_user"]) == sorted(cohort.users)
    assert counts == {"loads": 1, "reads": 2}, "the cohort's export uses the same model and data"


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_worker_loads_the_model_once_for_the_trials_of_every_user(tmp_path, executor):
    from search.execution.executors import ProcessExecutor
    from search.execution.per_user import optimize_tasks
    from search.study.setup import bind_to_model
    from search.space import load_space
    from search.execution.trial_objective import TrialObjective

    # three users on two workers: the cohort scheduler runs two users side by side, so the third
    # user's trials go to a worker that already ran another user's
    space, setup = bind_to_model(load_space("tiny.yaml").with_overrides(["data.users=3", "training.max_steps=1"]))
    space = space.with_optimizer(name="sobol", trials=2, init_trials=2)
    users = [s.user.user_id for s in session_for(setup).splits]
    objectives = {u: ReportsLoads(TrialObjective(user_setup(setup, u))) for u in users}
    if executor == "ray":
        ray = pytest.importorskip("ray")
        from search.execution.executors import RayExecutor

        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}"}})
        make = lambda: RayExecutor(2)  # noqa: E731
    else:
        make = lambda: ProcessExecutor(2, threads=1)  # noqa: E731
    try:
        cohort = optimize_tasks(space, objectives, study_name="w", study_dir=tmp_path, executor=make)
    finally:
        if executor == "ray":
            ray.shutdown()
    trials = [(u, t) for u, s in cohort.studies.items() for t in s.trials]
    assert len(trials) == 6 and all(t.values for _, t in trials)
    by_worker: dict[str, set[str]] = {}
    for user, trial in trials:
        assert trial.user_attrs["model_loads"] == 1, f"worker {trial.user_attrs['worker']} loaded the model again"
        by_worker.setdefault(trial.user_attrs["worker"], set()).add(user)
    assert max(len(u) for u in by_worker.values()) >= 2, f"no worker ran trials of two users: {by_worker}"
    if executor == "process":
        assert len(by_worker) <= 2, "the workers live across users"
