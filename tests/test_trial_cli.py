"""End-to-end trials through the CLI on the tiny model, and bad input at the CLI boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_trial_prints_metrics_json(capsys):
    code, out, _ = run_cli(capsys, "trial", "--space", "spaces/tiny.yaml", "--set", "lora.rank=8",
                           "--set", "lora.count=2", "--set", "lora.layers=0,1", "--json")
    assert code == 0
    result = json.loads(out)
    metrics = result["metrics"]
    for key in ("rouge1", "rougeL", "persona_f1", "loss", "storage_bytes", "train_seconds", "generate_seconds"):
        assert key in metrics, key
    assert result["config"]["layers"] == [0, 1] and result["config"]["count"] == 2
    # tiny: 2 layers x (3 targets x (64+128)) x n*r = 2*576*16 params; fp16 plus the safetensors header
    assert metrics["trainable_params"] == 2 * 576 * 16
    assert metrics["storage_bytes"] > 2 * metrics["trainable_params"]
    assert metrics["n_users"] == 2 and len(result["users"]) == 2


def test_trial_without_memory_stores_nothing(capsys):
    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "lora.count=0", "--json")
    assert code == 0
    assert json.loads(out)["metrics"]["storage_bytes"] == 0


def test_trial_keeps_loadable_adapters(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "lora.layers=all",
                           "--keep-adapters", "--adapters-dir", str(tmp_path), "--json")
    assert code == 0
    result = json.loads(out)
    for user in result["users"]:
        adapter = Path(user["adapter_path"])
        assert (adapter / "adapter_config.json").exists()
        assert (adapter / "adapter_model.safetensors").stat().st_size == user["metrics"]["storage_bytes"]


def test_trial_on_jsonl_data(capsys, tmp_path):
    users = []
    for u in range(2):
        history = [{"text": f"user {u} loves sailing and tea number {i}"} for i in range(6)]
        history += [{"input": f"what do you like {i}?", "output": f"sailing and tea {u}"} for i in range(4)]
        queries = [{"input": f"what is your hobby {q}?", "output": "sailing"} for q in range(2)]
        users.append({"user_id": f"u{u}", "history": history, "queries": queries})
    path = tmp_path / "users.jsonl"
    path.write_text("\n".join(json.dumps(u) for u in users))
    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--data", str(path), "--users", "1", "--json")
    assert code == 0
    assert [u["user_id"] for u in json.loads(out)["users"]] in (["u0"], ["u1"])


@pytest.mark.parametrize("args,expected", [
    (["--set", "model.name=no-such-model"], "model.name: 'no-such-model' is not a known model"),
    (["--data", "/nonexistent/users.jsonl"], "/nonexistent/users.jsonl"),
    (["--set", "lora.layers=0,9"], "outside 0..3"),
])
def test_bad_input_is_one_clear_line(capsys, args, expected):
    code, out, err = run_cli(capsys, "trial", "--space", "tiny.yaml", *args)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_console_script_runs_from_a_subprocess(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "search.cli", "trial", "--space", "tiny.yaml", "--set", "lora.count=1", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["n_users"] == 2


def test_baselines_table_on_tiny(capsys):
    code, out, _ = run_cli(capsys, "baselines", "--space", "tiny.yaml", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) == {"non-personalized", "random-history", "rag-bm25", "rag-recency", "peft-oppu", "peft+rag-bm25",
                         "cohort-adapter"}
    assert rows["non-personalized"]["metrics"]["storage_bytes"] == 0
    assert all(0.0 <= row["metrics"]["copy_rate"] <= 1.0 and "copy_rate_se" in row["metrics"] for row in rows.values())
    cohort = rows["cohort-adapter"]
    assert cohort["config"]["base"] == "cohort" and cohort["metrics"]["storage_bytes"] == 0  # shared, not per user
    assert cohort["metrics"]["loss"] != rows["non-personalized"]["metrics"]["loss"]  # the adapter changed the model
    assert rows["rag-bm25"]["metrics"]["retrieval_index_bytes"] > 0
    assert rows["peft-oppu"]["config"]["layers"] == [0, 1, 2, 3]
    assert rows["peft-oppu"]["metrics"]["storage_bytes"] > 0
    assert rows["peft+rag-bm25"]["config"]["rag_k"] == 4


def test_trial_with_perpcs_assembly(capsys, tiny_pool):
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "perpcs.top_k=1",
                           "--set", "lora.count=0", "--pool", str(tiny_pool), "--json")
    assert code == 0, out
    m = json.loads(out)["metrics"]
    assert m["assembly_seconds"] > 0 and m["perpcs_top_k"] == 1
    assert 0 < m["storage_bytes"] < 5000, "an assembled user stores piece indices and weights only"
    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "perpcs.top_k=1",
                           "--set", "lora.count=1", "--pool", str(tiny_pool), "--json")
    both = json.loads(out)["metrics"]
    assert both["storage_bytes"] > m["storage_bytes"] and both["train_steps"] > 0


def test_trial_with_perpcs_and_no_pool_says_how_to_build(capsys, tmp_path):
    code, _, err = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "perpcs.top_k=2",
                           "--pool", str(tmp_path / "none"))
    assert code == 2
    assert "pers-search pool build" in err and "Traceback" not in err


def test_every_reported_metric_is_declared(capsys):
    from runners.trial import reported_metrics

    code, out, _ = run_cli(capsys, "trial", "--space", "tiny.yaml", "--set", "rag.k=2", "--json")
    assert set(json.loads(out)["metrics"]) <= set(reported_metrics("demo"))


def test_objective_the_runner_does_not_report_fails_before_any_trial(capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", "--space", "tiny.yaml", "--set", "objectives.bleu=max",
                           "--study-dir", str(tmp_path), "--no-mlflow")
    assert code == 2
    assert "bleu" in err and "rougeL" in err
    assert not list(tmp_path.glob("*/study.json")) or all(
        not json.loads(p.read_text())["trials"] for p in tmp_path.glob("*/study.json"))


def test_baselines_with_a_pool_add_per_pcs_and_peft_retrieval(capsys, tiny_pool):
    capsys.readouterr()
    code, out, _ = run_cli(capsys, "baselines", "--space", "tiny.yaml", "--pool", str(tiny_pool), "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"per-pcs", "peft-retrieval", "peft-oppu"} <= set(rows)
    oppu, pcs, ret = rows["peft-oppu"]["metrics"], rows["per-pcs"]["metrics"], rows["peft-retrieval"]["metrics"]
    assert 0 < pcs["storage_bytes"] < oppu["storage_bytes"]
    assert 0 < ret["storage_bytes"] < oppu["storage_bytes"]
    assert pcs["seconds_per_user"] > 0 and oppu["seconds_per_user"] > 0


def test_closest_sharers_by_cosine():
    from runners.perpcs.peft_retrieval import closest_sharers

    sharers = [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]]
    assert closest_sharers([1.0, 0.1], sharers, 2) == [0, 2]
    assert closest_sharers([0.0, 2.0], sharers, 3) == [1, 2, 0]


def test_retrieved_pefts_are_averaged_equally(tiny_pool):
    from runners.data.demo import demo_dataset
    from runners.perpcs.peft_retrieval import retrieve_pefts
    from runners.perpcs.pool import load_pool

    pool = load_pool(tiny_pool)
    users = demo_dataset().users
    target = next(u for u in users if u.user_id not in pool.sharer_ids)
    assembly = retrieve_pefts(pool, users, "demo", target, target.history, 2)
    assert assembly.indices.shape == (len(pool.modules), 2)
    for module in range(len(pool.modules)):
        chosen = assembly.chosen(module)
        assert sorted(i for i, _ in chosen) == sorted(int(i) for i in assembly.indices[0])
        assert [w for _, w in chosen] == [0.5, 0.5]


def test_the_projects_warnings_are_one_line(tmp_path):
    """A warning of ours (retrieval asked for more items than a user has) prints as one line, no source line."""
    import json
    import subprocess
    import sys

    data = tmp_path / "short.jsonl"
    data.write_text(json.dumps({"user_id": "u", "profile": "p", "history": [{"input": "a", "output": "b"}],
                                "queries": [{"id": "q", "input": "x", "output": "y"}]}) + "\n")
    done = subprocess.run([sys.executable, "-m", "search.cli", "trial", "--space", "tiny.yaml", "--data", str(data),
                           "--users", "1", "--set", "rag.k=3", "--set", "lora.count=0"], capture_output=True, text=True,
                          cwd=tmp_path, env={**__import__("os").environ, "PYTHONPATH": str(Path(__file__).parents[1])},
                          timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "rag.k=3 exceeds" in line]
    assert lines and all(line.startswith("pers-search: warning: retriever") for line in lines), done.stderr
    assert "retrieved = [" not in done.stderr  # Python's format printed the source line under it
