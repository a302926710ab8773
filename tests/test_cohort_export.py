"""A per-user study's bundle through the one bundle writer: per-user manifest, vLLM rank buckets,
adapters loaded on demand, the serving script, the summary, --register, serving.yaml written once."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from search.export import ExportError, buckets, export_bundle, export_cohort, serving_plan
from search.export.manifest import ServedAdapter
from search.export.vllm import CPU_LORA_BYTES, LISTED_LORAS, vllm_script
from search.execution.per_user import load_cohort, open_cohort
from search.study.cohort_file import user_study_name
from search.space import load_space
from search.study.study import Study

SETTINGS = ["data.users=10", "data.max_val_queries=1", "training.max_steps=1", "training.max_new_tokens=2"]
MASK = [1, 0, 1, 1]
# (lora.count, lora.rank, rag.k) per user, in the demo's user order: merged ranks 2..24 fall in the
# vLLM buckets 8 (5 users), 16 (3), 32 (1); the last user has no memory (retrieval only).
PLAN = [(1, 2, 1), (1, 4, 0), (1, 8, 2), (2, 4, 0), (2, 2, 1), (2, 8, 0), (3, 4, 1), (2, 8, 2), (3, 8, 0), (0, 2, 2)]
BUCKET = {2: 8, 4: 8, 8: 8, 12: 16, 16: 16, 24: 32}


def _config(count: int, rank: int, k: int) -> dict:
    return {"lora.layers": MASK, "lora.count": count, "lora.rank": rank, "rag.k": k, "rag.retriever": "bm25",
            "perpcs.top_k": 0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A per-user study of 10 demo users, one trained trial each (one step), adapters kept."""
    from runners.session import session_for
    from search.study.setup import trial_setup, user_setup
    from search.execution.trial_objective import TrialObjective

    root = tmp_path_factory.mktemp("studies")
    space = load_space("tiny.yaml").with_overrides(SETTINGS).bind(4)
    setup = trial_setup(space)
    users = [s.user.user_id for s in session_for(setup).splits]
    assert len(users) == len(PLAN)
    open_cohort(space, "pu", root, users)
    for user, (count, rank, k) in zip(users, PLAN):
        study = Study.create(user_study_name("pu", user), root, space)
        objective = TrialObjective(user_setup(setup, user), root / user_study_name("pu", user) / "adapters")
        trial = study.add_trial(_config(count, rank, k))
        result = objective(trial.config)
        study.complete_trial(trial.number, dict(result.values), result.user_attrs)
    return load_cohort("pu", root)


@pytest.fixture(scope="module")
def bundle(cohort, tmp_path_factory):
    return export_cohort(cohort, "knee", tmp_path_factory.mktemp("out") / "bundle")


def test_the_manifest_names_each_users_trial_adapter_bucket_retrieval_and_storage(cohort, bundle):
    out = bundle.out
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    assert manifest == json.loads(json.dumps(bundle.manifest, default=str)), "what export returns is what it wrote"
    assert manifest["scope"] == "per_user" and manifest["users"] == sorted(cohort.users)
    for user, (count, rank, k) in zip(cohort.users, PLAN):
        mine = manifest["per_user"][user]
        assert mine["trial"] == 0 and (mine["retrieval"]["k"] == k if k else "retrieval" not in mine)
        assert mine["config"]["lora.count"] == count
        if count == 0:  # no memory: no entry, no adapter, and the idle rank is not in the configuration
            assert user not in manifest["adapters"] and "memory" not in mine and "lora.rank" not in mine["config"]
            continue
        assert mine["memory"]["merged_rank"] == count * rank
        entry = manifest["adapters"][user]
        assert (entry["rank"], entry["bucket"]) == (count * rank, BUCKET[count * rank])
        stored = (out / entry["path"] / "adapter_model.safetensors").stat().st_size
        assert entry["storage_bytes"] == stored == cohort.studies[user].trials[0].values["storage_bytes"]
        assert entry["vllm_path"] == entry["path"], "loaded on demand: served as it is, no padded copy"
    assert not (out / "vllm").exists()
    assert json.loads((out / "trial.json").read_text()).keys() == set(cohort.users)


def test_adapters_are_bucketed_and_loaded_on_demand(bundle):
    """Nine adapters (more than the 8 vllm.sh lists): vLLM's filesystem resolver loads them, one
    server at the largest bucket's rank; each adapter passes the resolver's own check (a LORA
    adapter whose base_model_name_or_path is the served model's path, under its lora_name)."""
    manifest, out = bundle.manifest, bundle.out
    vllm = manifest["vllm"]
    assert [(b["max_lora_rank"], b["users"], b["port"]) for b in vllm["buckets"]] == [(8, 5, 8000), (16, 3, 8001),
                                                                                     (32, 1, 8002)]
    assert vllm["max_lora_rank"] == 32 and vllm["max_loras"] == 4 and vllm["loading"].startswith("on demand")
    assert bundle.command == vllm["command"] == (
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=true VLLM_PLUGINS=lora_filesystem_resolver "
        "VLLM_LORA_RESOLVER_CACHE_DIR=./adapters vllm serve ./base --served-model-name tiny --enable-lora "
        "--max-lora-rank 32 --max-loras 4 --max-cpu-loras 9")
    assert "--lora-modules" not in (out / "vllm.sh").read_text()
    for user, entry in manifest["adapters"].items():
        config = json.loads((out / "adapters" / entry["lora_name"] / "adapter_config.json").read_text())
        assert config["peft_type"] == "LORA" and config["base_model_name_or_path"] == "./base"
        assert config["r"] == entry["rank"] <= entry["bucket"]
    request = json.loads((out / "request.json").read_text())
    assert request["model"] == manifest["adapters"][manifest["request"]["user"]]["lora_name"]


def test_the_summary_counts_users_storage_and_buckets(bundle, capsys):
    summary = json.loads((bundle.out / "summary.json").read_text())
    assert summary == bundle.summary
    sizes = [a["storage_bytes"] for a in bundle.manifest["adapters"].values()]
    assert (summary["users"], summary["adapters"]) == (10, 9)
    assert summary["storage_bytes"]["total"] == sum(sizes)
    per_user = summary["storage_bytes"]["per_user"]
    assert (per_user["min"], per_user["max"]) == (0, max(sizes)) and per_user["mean"] == sum(sizes) / 10
    assert [(b["max_lora_rank"], b["users"]) for b in summary["buckets"]] == [(8, 5), (16, 3), (32, 1)]
    assert (summary["largest_rank"], summary["max_lora_rank"], summary["loading"]) == (24, 32, "on demand")
    profiles = sum(p.stat().st_size for p in (bundle.out / "users").rglob("profile.jsonl"))
    assert summary["profile_bytes"] == profiles > 0


def _fake_vllm(tmp_path: Path) -> dict:
    """A ``vllm`` on PATH that writes its arguments and the LoRA variables of its environment as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "vllm"
    fake.write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                    "keys = ('VLLM_ALLOW_RUNTIME_LORA_UPDATING', 'VLLM_PLUGINS', 'VLLM_LORA_RESOLVER_CACHE_DIR')\n"
                    "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
                    "'env': {k: os.environ.get(k) for k in keys}}))\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "VLLM_PLUGINS"}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}"}


def _serve(script: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, cwd="/", timeout=60)


def test_the_script_starts_one_server_or_one_per_bucket(bundle, tmp_path):
    """vllm.sh runs from its own directory, sets the resolver's variables, and starts vLLM at the largest
    rank, or with --bucket R one bucket's server at rank R on its port; extra arguments pass through."""
    env = _fake_vllm(tmp_path)
    script, out = bundle.out / "vllm.sh", str(bundle.out.resolve())
    ran = json.loads(_serve(script, env).stdout)
    assert ran["argv"] == ["serve", "./base", "--served-model-name", "tiny", "--enable-lora", "--max-lora-rank", "32",
                           "--max-loras", "4", "--max-cpu-loras", "9"]
    assert ran["cwd"] == out
    assert ran["env"] == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "true", "VLLM_PLUGINS": None,
                          "VLLM_LORA_RESOLVER_CACHE_DIR": f"{out}/adapters"}, "an unset VLLM_PLUGINS loads every plugin"
    ran = json.loads(_serve(script, env, "--bucket", "16", "--max-model-len", "512").stdout)
    assert ran["argv"][5:] == ["--max-lora-rank", "16", "--max-loras", "3", "--max-cpu-loras", "3", "--port", "8001",
                               "--max-model-len", "512"]
    for given, wanted in (("other", "other,lora_filesystem_resolver"), ("a,lora_filesystem_resolver",
                                                                        "a,lora_filesystem_resolver")):
        ran = json.loads(_serve(script, {**env, "VLLM_PLUGINS": given}).stdout)
        assert ran["env"]["VLLM_PLUGINS"] == wanted
    refused = _serve(script, env, "--bucket", "64")
    assert refused.returncode == 2 and "--bucket 64: the buckets of this bundle are 8, 16, 32" in refused.stderr


def test_a_few_adapters_are_listed_in_a_simple_script(cohort, tmp_path):
    """Up to 8 adapters (here one user's study of the per-user study, exported alone: narrowed to its
    user, as the runner did): vllm.sh lists them, padded under vllm/ where needed."""
    study = cohort.studies[cohort.users[3]]  # lora.count=2, rank 4: merged rank 8, already a vLLM rank
    bundle = export_bundle(study, "knee", tmp_path / "one")
    vllm = bundle.manifest["vllm"]
    assert vllm["loading"].startswith("at start") and [b["users"] for b in vllm["buckets"]] == [1]
    name = cohort.users[3]
    assert bundle.command == (f"vllm serve ./base --served-model-name tiny --enable-lora --max-lora-rank 8 "
                              f"--max-loras 1 --lora-modules {name}=./adapters/{name}")
    script = (bundle.out / "vllm.sh").read_text()
    assert f'exec {bundle.command} "$@"' in script and "--bucket" not in script
    assert bundle.summary["loading"] == "at start" and bundle.summary["users"] == 1


def test_plans_for_a_thousand_users():
    """The plan and script of 1,000 adapters: buckets counted, nothing listed, CPU memory capped."""
    class Fake:
        def __init__(self, name: str, rank: int, size: int):
            self.lora_name, self.rank, self.storage_bytes = name, rank, size
            self.vllm_path = Path("adapters") / name

    small = [Fake(f"u{i}", (2, 4, 12, 24, 300)[i % 5], 1000) for i in range(1000)]
    plan = serving_plan(small, "./base", "m", slot_bytes_per_rank=100, base_bytes=10**6)
    assert [(b.max_lora_rank, len(b.names)) for b in plan.buckets] == [(8, 400), (16, 200), (32, 200)]
    assert plan.on_demand and not plan.listed and len(plan.too_big) == 200
    assert plan.command().endswith("--max-lora-rank 32 --max-loras 4 --max-cpu-loras 800")
    script = vllm_script(plan)
    assert len(script.splitlines()) < 80 and "rank > 256: 200 users vLLM cannot serve" in script
    assert plan.entry()["note"].startswith("rank above 256 for 200 users")
    big = [Fake(f"u{i}", 8, CPU_LORA_BYTES // 10) for i in range(50)]
    assert buckets(big)[0].max_cpu_loras == 10, "only as many adapters as fit in CPU_LORA_BYTES stay in memory"
    few = [Fake(f"u{i}", 8, 1) for i in range(LISTED_LORAS)]
    assert not serving_plan(few, "./base", "m", 1, 1).on_demand


def test_register_a_cohort_bundle(cohort, tmp_path):
    """One model version holding the whole bundle, under the cohort run's serving/ (found again by a
    second export), tagged with the scope and the users; the logged serving.yaml names the version."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    out = tmp_path / "bundle"
    bundle = export_cohort(cohort, "knee", out, register="cohort-serving", tracking_uri=store)
    assert bundle.registered == ("cohort-serving", "1")
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("cohort-serving", "1")
    run = client.get_run(version.run_id)
    assert run.data.tags["pers_search.role"] == "cohort" and version.source.endswith("/serving")
    assert version.tags == {"study": "pu", "scope": "per_user", "users": "10", "pick": "knee", "base_model": "tiny"}
    assert run.data.tags["registered_model"] == "cohort-serving/1"
    listed = {f.path for f in client.list_artifacts(version.run_id, "serving")}
    assert {"serving/serving.yaml", "serving/summary.json", "serving/vllm.sh", "serving/adapters",
            "serving/base", "serving/users"} <= listed
    logged = Path(client.download_artifacts(version.run_id, "serving/serving.yaml", str(tmp_path / "dl")))
    assert logged.read_text() == (out / "serving.yaml").read_text()
    manifest = yaml.safe_load(logged.read_text())
    assert manifest["mlflow"] == {"run_id": version.run_id, "registered_model": "cohort-serving", "version": "1",
                                  "trials": "per user: per_user.<user>.mlflow"}
    assert not (cohort.directory / "mlflow.json").exists(), "export never writes in the study's directory"
    again = export_cohort(cohort, "knee", out, force=True, register="cohort-serving", tracking_uri=store)
    assert again.registered == ("cohort-serving", "2")
    assert client.get_model_version("cohort-serving", "2").run_id == version.run_id, "the same cohort run"


def _count_manifest_writes(monkeypatch) -> list[str]:
    """Every write of a file named serving.yaml: atomic replaces onto it and direct writes."""
    import search.study.study

    writes: list[str] = []
    replace, write_text = os.replace, Path.write_text

    def counting_replace(src, dst, *args, **kwargs):
        if Path(dst).name == "serving.yaml" and Path(src).name.startswith(".serving.yaml."):
            writes.append(str(dst))
        return replace(src, dst, *args, **kwargs)

    def counting_write_text(self, *args, **kwargs):
        if self.name == "serving.yaml":
            writes.append(str(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(search.study.study.os, "replace", counting_replace)
    monkeypatch.setattr(Path, "write_text", counting_write_text)
    return writes


@pytest.mark.parametrize("kind", ["study", "cohort"])
def test_serving_yaml_is_written_once_even_when_registered(cohort, tmp_path, monkeypatch, kind):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    writes = _count_manifest_writes(monkeypatch)
    if kind == "study":
        bundle = export_bundle(cohort.studies[cohort.users[0]], "knee", tmp_path / "b", register="one",
                               tracking_uri=store)
    else:
        bundle = export_cohort(cohort, "knee", tmp_path / "b", register="all", tracking_uri=store)
    assert bundle.registered is not None
    assert len(writes) == 1 and Path(writes[0]).parent.name.startswith(".staging-"), writes
    assert yaml.safe_load((tmp_path / "b" / "serving.yaml").read_text())["mlflow"]["version"] == "1"


def test_a_failed_registration_withdraws_the_version_and_leaves_an_unfinished_bundle(cohort, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    import search.export.bundle
    from search.export import unfinished_bundle
    from search.tracking.store import TrackingError

    def fail(*args, **kwargs):
        raise TrackingError("--register all: logging the bundle failed (disk full)")

    store = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setattr(search.export.bundle, "log_bundle", fail)
    with pytest.raises(TrackingError, match="disk full"):
        export_cohort(cohort, "knee", tmp_path / "b", register="all", tracking_uri=store)
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    assert [v.version for v in client.search_model_versions("name='all'")] == []
    assert unfinished_bundle(tmp_path / "b") and not (tmp_path / "b" / "serving.yaml").exists()


def test_cli_export_prints_the_summary_and_registers_a_cohort(cohort, tmp_path, capsys):
    from search.cli import main

    store = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["export", "pu", "--study-dir", str(cohort.directory.parent), "--out", str(tmp_path / "b")]
    assert main([*argv, "--register", "pu-serving", "--tracking-uri", store]) == 0
    printed = " ".join("".join(capsys.readouterr()).split())  # the status console writes to stderr, wrapped
    assert "10 users, 9 with an adapter; storage" in printed
    assert "vLLM buckets rank <= 8: 5, rank <= 16: 3, rank <= 32: 1; largest rank 24 (--max-lora-rank 32); " \
           "adapters loaded on demand" in printed
    assert "registered as MLflow model pu-serving version 1" in printed
    assert main([*argv, "--force", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["summary"]["users"] == 10 and shown["trials"] == {u: 0 for u in cohort.users}
    with pytest.raises(ExportError, match="one front per user"):
        export_cohort(cohort, "trial:0", tmp_path / "c")
