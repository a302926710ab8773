"""Pick expressions, the front table, and the serving bundle (PEFT round trip on the tiny model)."""

from __future__ import annotations

import json

import pytest
import yaml

from search.export import (
    ExportError,
    bundle_prompt,
    export_bundle,
    pad_adapter,
    parse_pick,
    pick_trial,
    prepare_out,
    unfinished_bundle,
    vllm_command,
    vllm_rank,
)
from search.results.report import front_rows, rows_to_csv
from search.space import load_space, parse_space
from search.study.study import Study

TOY = """
name: toy
objectives: {quality: max, cost: min}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
optimizer: {name: random, init_trials: 1, trials: 5}
"""


@pytest.fixture()
def toy(tmp_path):
    """Front {0, 1, 2}; trial 3 is dominated by 1; trial 4 failed; the knee is trial 1 (hand-checked:
    scaled distances to utopia 1.0, 0.41, 1.0)."""
    study = Study.create("toy", tmp_path, parse_space(TOY))
    for x, quality, cost in ((0.1, 1.0, 1.0), (0.2, 2.0, 3.0), (0.3, 3.0, 6.0), (0.4, 1.5, 4.0)):
        t = study.add_trial({"x": x})
        study.complete_trial(t.number, {"quality": quality, "cost": cost})
    t = study.add_trial({"x": 0.5})
    study.fail_trial(t.number, "TrialFailed: NaN loss")
    study.set_test_values(1, {"quality": 1.8, "cost": 3.0})
    return study


@pytest.mark.parametrize("text, number", [
    ("knee", 1), ("max:quality", 2), ("min:cost", 0), ("min:cost where quality>=2", 1),
    ("max:quality where cost<=3.5", 1), ("max:quality where cost <= 6 and quality < 3", 1),
    ("min:cost where quality>=1.5 and cost>=3.5", 2), ("max:test_quality", 1), ("trial:3", 3),
    ("knee where quality > 1.5", 1),
])
def test_pick_expressions(toy, text, number):
    assert pick_trial(toy, text).number == number


@pytest.mark.parametrize("text, message", [
    ("maximum:quality", "cannot read 'maximum:quality'; use knee, max:METRIC"),
    ("max:", "cannot read 'max:'"),
    ("min:cost where quality>>2", "condition 'quality>>2' is not 'METRIC OP NUMBER'"),
    ("trial:1 where quality>1", "trial:N names one trial and takes no where clause"),
])
def test_bad_pick_expressions(text, message):
    with pytest.raises(ExportError, match=message.replace("(", r"\(")):
        parse_pick(text)


def test_pick_that_matches_nothing_says_why_and_shows_the_front(toy):
    with pytest.raises(ExportError) as info:
        pick_trial(toy, "min:cost where quality>=100")
    text = str(info.value)
    assert "no front trial satisfies quality>=100" in text
    assert "  trial 0: quality=1, cost=1\n  trial 1 (knee): quality=2, cost=3\n  trial 2: quality=3, cost=6" in text
    with pytest.raises(ExportError, match="has no metric 'nope'; use one of: cost, quality, test_cost, test_quality"):
        pick_trial(toy, "max:nope")
    with pytest.raises(ExportError, match=r"has trials 0..4; pick an existing one"):
        pick_trial(toy, "trial:9")
    with pytest.raises(ExportError, match=r"trial 4 is failed \(TrialFailed: NaN loss\); pick a completed trial"):
        pick_trial(toy, "trial:4")


def test_front_rows_and_csv(toy):
    rows = front_rows(toy)
    assert [(r["trial"], r["knee"], r["quality"], r["cost"], r["test_quality"]) for r in rows] == [
        (0, False, 1.0, 1.0, None), (1, True, 2.0, 3.0, 1.8), (2, False, 3.0, 6.0, None)]
    lines = rows_to_csv(rows).splitlines()
    assert lines[0] == "trial,knee,quality,cost,test_quality,test_cost,x,mlflow_run_id"
    assert lines[2] == "1,true,2.0,3.0,1.8,3.0,0.2,"  # booleans as true/false, not Python's True


def test_vllm_ranks_and_command():
    assert [vllm_rank(r) for r in (1, 8, 9, 24, 256, 257)] == [8, 8, 16, 32, 256, None]
    assert vllm_command("/m", {"u1": "/b/u1", "u 2": "/b/u2"}, 16) == (
        "vllm serve /m --enable-lora --max-lora-rank 16 --max-loras 2 --lora-modules u1=/b/u1 'u 2=/b/u2'")
    assert vllm_command("/m", {}, None) == "vllm serve /m"
    six = {f"u{i}": f"./vllm/u{i}" for i in range(6)}
    assert vllm_command("./base", six, 8, served_name="tiny").startswith(
        "vllm serve ./base --served-model-name tiny --enable-lora --max-lora-rank 8 --max-loras 4 --max-cpu-loras 6 "
        "--lora-modules u0=./vllm/u0 u1=./vllm/u1 ")


def test_out_dir_with_files_no_export_wrote_is_refused_even_with_force(toy, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    for force in (False, True):
        with pytest.raises(ExportError, match=f"--out {out}: holds files no export wrote \\(keep.txt\\); .* choose a "
                                              "new or empty directory$"):
            export_bundle(toy, "knee", out, force=force)
    assert (out / "keep.txt").read_text() == "x"


def test_a_trial_on_the_cohort_adapter_is_refused_before_anything_is_written(tmp_path):
    study = Study.create("on-cohort", tmp_path, parse_space(TOY))
    t = study.add_trial({"x": 0.1, "lora.base": "cohort"})
    study.complete_trial(t.number, {"quality": 1.0, "cost": 1.0})
    with pytest.raises(ExportError, match=r"trial 0 runs on the cohort adapter \(lora.base=cohort\).*"
                                          r"pick a trial with lora.base=none"):
        export_bundle(study, "knee", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_unfinished_bundle_is_named_and_force_clears_its_leftovers(toy, tmp_path):
    """A stopped export: its file list names a staging directory (and, from the move on, the bundle's
    paths); --force removes exactly those, and refuses when anything else is there."""
    out = tmp_path / "bundle"
    (out / ".staging-abc" / "adapters" / "u0").mkdir(parents=True)  # a kill while the adapters were written
    (out / ".staging-abc" / ".serving.yaml.x.tmp").write_text("half")
    (out / "adapters" / "u1").mkdir(parents=True)  # a kill while the bundle was moved into place
    (out / "adapters" / "u1" / "adapter_model.safetensors").write_text("w")
    (out / ".pers-search-bundle.json").write_text(json.dumps({
        "format": "pers-search-bundle-files/1", "complete": False, "staging": ".staging-abc",
        "files": ["adapters/u1/adapter_model.safetensors", "serving.yaml"], "dirs": ["adapters", "adapters/u1"]}))
    assert unfinished_bundle(out)
    with pytest.raises(ExportError, match="holds an unfinished export .* no serving.yaml.* pass --force"):
        prepare_out(out, force=False)
    (out / "notes.txt").write_text("mine")
    (out / "adapters" / "mine.txt").write_text("mine too")
    with pytest.raises(ExportError, match=r"does not list \(notes.txt, adapters/mine.txt\); .* move them out"):
        prepare_out(out, force=True)
    (out / "notes.txt").unlink()
    (out / "adapters" / "mine.txt").unlink()
    prepare_out(out, force=True)
    assert sorted(p.name for p in out.iterdir()) == [".pers-search-bundle.json"], "the stopped export's paths go"


# --------------------------------------------------------------------------- the real round trip
CONFIG = {"lora.layers": [1, 0, 1, 1], "lora.count": 2, "lora.rank": 2, "rag.k": 2, "rag.retriever": "bm25",
          "perpcs.top_k": 0}


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A two-trial tiny-model study: trial 0 re-run at export, trial 1 with kept adapters."""
    from search.study.setup import trial_setup
    from search.execution.trial_objective import TrialObjective

    root = tmp_path_factory.mktemp("studies")
    space = load_space("tiny.yaml").bind(4)
    study = Study.create("tiny-export", root, space)
    setup = trial_setup(space)
    for i, adapters in enumerate((None, root / "tiny-export" / "adapters")):
        config = {**CONFIG, "lora.count": 2 - i, "rag.k": 2 - 2 * i}
        trial = study.add_trial(config)
        result = TrialObjective(setup, adapters)(config)
        study.complete_trial(trial.number, dict(result.values), result.user_attrs)
    return study


def _generate_with(adapter_dir, base_dir, study, trial):
    """Load the base from the bundle, apply the adapter with plain PEFT, regenerate the validation queries."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.generation import generate
    from runners.session import session_for
    from runners.spec import TrialConfig
    from runners.trial import _prompts
    from search.study.setup import trial_setup

    session = session_for(trial_setup(study.space))
    spec = session.setup.training
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    out = {}
    for split in session.splits:
        uid = split.user.user_id
        base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
        model = PeftModel.from_pretrained(base, str(adapter_dir / uid)).eval()
        prompts = _prompts(session, split, split.val, TrialConfig.from_flat(trial.config)).prompts
        out[uid] = generate(model, tokenizer, prompts, "cpu", spec.max_new_tokens, spec.gen_batch_size)
    return out


@pytest.mark.parametrize("number", [0, 1])
def test_export_round_trip_reproduces_the_trial(tiny_study, tmp_path, number):
    from runners.memory import ADAPTER_FILE

    bundle = export_bundle(tiny_study, f"trial:{number}", tmp_path / "b")
    out, trial = bundle.out, tiny_study.trials[number]
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    users = sorted(trial.user_attrs["predictions"])
    assert sorted(manifest["adapters"]) == users and len(users) == 2
    merged = trial.config["lora.count"] * trial.config["lora.rank"]
    assert manifest["memory"] == {"layers": [0, 2, 3], "count": trial.config["lora.count"],
                                  "rank": 2, "merged_rank": merged, "targets": ["gate_proj", "up_proj", "down_proj"]}
    assert manifest["config"]["lora.layers"] == [0, 2, 3] and manifest["config"]["lora.n_layers"] == 3
    if trial.config["rag.k"]:
        assert (manifest["retrieval"]["k"], manifest["retrieval"]["retriever"]) == (trial.config["rag.k"], "bm25")
    else:  # no retrieval: no entry, and the idle retriever is not in the configuration either
        assert "retrieval" not in manifest and "rag.retriever" not in manifest["config"]
    assert manifest["metrics"]["validation"] == trial.values
    assert manifest["base_model"] == {"name": "tiny", "path": "./base", "in_bundle": True, "dtype": "float32",
                                      "served_model_name": "tiny"}
    assert manifest["vllm"]["max_lora_rank"] == 8 and manifest["vllm"]["max_loras"] == 2
    command = (out / "vllm.sh").read_text().splitlines()[-1]
    assert command.startswith("exec vllm serve ./base --served-model-name tiny --enable-lora --max-lora-rank 8 "
                              "--max-loras 2 --lora-modules ")
    for uid in users:
        assert f"{uid}=./vllm/{uid}" in command
        # the storage the trial reported is the size of the adapter file export wrote
        size = (out / "adapters" / uid / ADAPTER_FILE).stat().st_size
        assert size == trial.user_attrs["users"][uid]["storage_bytes"] == trial.values["storage_bytes"]
        config = json.loads((out / "adapters" / uid / "adapter_config.json").read_text())
        assert (config["r"], config["lora_alpha"], config["layers_to_transform"]) == (merged, merged, [0, 2, 3])
    assert json.loads((out / "trial.json").read_text())["number"] == number

    regenerated = _generate_with(out / "adapters", out / "base", tiny_study, trial)
    assert regenerated == trial.user_attrs["predictions"]
    padded = _generate_with(out / "vllm", out / "base", tiny_study, trial)
    assert padded == trial.user_attrs["predictions"]


def test_padding_is_exact(tiny_study, tmp_path):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    out = export_bundle(tiny_study, "trial:1", tmp_path / "b").out
    uid = sorted(tiny_study.trials[1].user_attrs["predictions"])[0]
    exact, padded = out / "adapters" / uid, out / "vllm" / uid
    a, b = load_file(str(exact / "adapter_model.safetensors")), load_file(str(padded / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for name in a:
        r = 2  # lora.count=1 * lora.rank=2
        if name.endswith("lora_A.weight"):
            assert b[name].shape == (8, a[name].shape[1])
            assert torch.equal(b[name][:r], a[name]) and not b[name][r:].any()
        else:
            assert b[name].shape == (a[name].shape[0], 8)
            assert torch.equal(b[name][:, :r], a[name]) and not b[name][:, r:].any()
            a_name = name.replace("lora_B", "lora_A")
            assert torch.equal(b[name].double() @ b[a_name].double(), a[name].double() @ a[a_name].double())
    assert json.loads((padded / "adapter_config.json").read_text())["lora_alpha"] == 8.0
    x = torch.randint(3, 500, (2, 10))
    logits = []
    for adapter in (exact, padded):
        base = AutoModelForCausalLM.from_pretrained(str(out / "base")).eval()
        with torch.no_grad():
            logits.append(PeftModel.from_pretrained(base, str(adapter)).eval()(x).logits)
    assert torch.allclose(logits[0], logits[1], atol=1e-6, rtol=0)
    with pytest.raises(ExportError, match="target rank 1 < adapter rank 2"):
        pad_adapter(exact, tmp_path / "p", 1)


def test_force_replaces_an_earlier_bundle(tiny_study, tmp_path):
    out = tmp_path / "b"
    export_bundle(tiny_study, "trial:1", out)
    with pytest.raises(ExportError, match="holds an earlier bundle; pass --force to replace it"):
        export_bundle(tiny_study, "trial:1", out)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"holds files its earlier bundle does not list \(notes.txt\)"):
        export_bundle(tiny_study, "trial:0", out, force=True)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    bundle = export_bundle(tiny_study, "trial:0", out, force=True)
    assert yaml.safe_load((out / "serving.yaml").read_text())["trial"] == bundle.trial.number == 0
    listed = json.loads((out / ".pers-search-bundle.json").read_text())
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert listed["complete"] and sorted([*listed["files"], ".pers-search-bundle.json"]) == on_disk, \
        "the list names every file there, and nothing of trial 1's bundle is left"


def test_register_links_the_trial_run(tiny_study, tmp_path):
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    bundle = export_bundle(tiny_study, "trial:1", tmp_path / "b", register="tiny-serving", tracking_uri=store)
    assert bundle.registered == ("tiny-serving", "1")
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version("tiny-serving", "1")
    run_id = Study.load("tiny-export", tiny_study.directory.parent).trials[1].user_attrs["mlflow_run_id"]
    assert version.run_id == run_id and version.source.endswith("/serving")
    assert version.tags["trial"] == "1" and version.tags["pick"] == "trial:1"
    listed = {f.path for f in client.list_artifacts(run_id, "serving")}
    assert {"serving/serving.yaml", "serving/vllm.sh", "serving/request.json", "serving/adapters", "serving/vllm",
            "serving/base"} <= listed
    manifest = yaml.safe_load((tmp_path / "b" / "serving.yaml").read_text())
    assert manifest["mlflow"] == {"run_id": run_id, "registered_model": "tiny-serving", "version": "1"}


# --------------------------------------------------------------------------- a bundle that works elsewhere (issue 17)
def _text_files(root):
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".sh", ".jsonl")]


def test_bundle_copied_elsewhere_loads_with_auto_peft_and_reproduces_the_trial(tiny_study, tmp_path, monkeypatch):
    """Exported under umask 077, copied to another directory: files are 0644, no path points back,
    AutoPeftModelForCausalLM and PeftModel load it there, and with the prompts the bundle rebuilds
    (retrieval included) the generations are the trial's."""
    import os
    import shutil
    import stat

    import torch
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.generation import generate

    trial = tiny_study.trials[0]  # LoRA memory with bm25 retrieval, k=2
    old = os.umask(0o077)
    try:
        out = export_bundle(tiny_study, "trial:0", tmp_path / "made" / "bundle").out
    finally:
        os.umask(old)
    for path in out.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o755 if path.is_dir() or path.name == "vllm.sh" else 0o644), (path, oct(mode))
    for path in _text_files(out):
        assert str(tmp_path) not in path.read_text(encoding="utf-8"), f"{path} names the directory it was made in"

    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, moved)
    shutil.rmtree(tmp_path / "made")
    monkeypatch.chdir(moved)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    manifest = yaml.safe_load((moved / "serving.yaml").read_text())
    spec = manifest["prompt"]
    tokenizer = AutoTokenizer.from_pretrained("base")
    for uid in sorted(trial.user_attrs["predictions"]):
        config = json.loads((moved / "adapters" / uid / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == "./base"
        auto = AutoPeftModelForCausalLM.from_pretrained(str(moved / "adapters" / uid)).eval()
        plain = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("./base"), f"adapters/{uid}").eval()
        queries = [q for q in _val_queries(tiny_study, uid)]
        prompts = [bundle_prompt(moved, uid, q) for q in queries]
        for model in (auto, plain):
            with torch.no_grad():
                got = generate(model, tokenizer, prompts, "cpu", spec["max_new_tokens"], 4)
            assert list(got) == list(trial.user_attrs["predictions"][uid])


def _val_queries(study, uid):
    from runners.session import session_for
    from search.study.setup import trial_setup

    session = session_for(trial_setup(study.space))
    return [q.input for s in session.splits if s.user.user_id == uid for q in s.val]


def test_bundle_prompt_is_the_trials_prompt_and_serving_yaml_spells_it_out(tiny_study, tmp_path, capsys):
    from runners.session import session_for
    from runners.spec import TrialConfig
    from runners.trial import _prompts
    from search.cli import main
    from search.study.setup import trial_setup

    trial = tiny_study.trials[0]
    out = export_bundle(tiny_study, "trial:0", tmp_path / "b").out
    session = session_for(trial_setup(tiny_study.space))
    for split in session.splits:
        uid = split.user.user_id
        built = _prompts(session, split, split.val, TrialConfig.from_flat(trial.config)).prompts
        assert [bundle_prompt(out, uid, q.input) for q in split.val] == list(built)
        profile = (out / "users" / uid / "profile.jsonl").read_text().splitlines()
        assert len(profile) == len(split.train)

    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    retrieval, prompt = manifest["retrieval"], manifest["prompt"]
    assert (retrieval["k"], retrieval["retriever"]) == (2, "bm25")
    assert retrieval["profiles"] == {s.user.user_id: f"users/{s.user.user_id}/profile.jsonl" for s in session.splits}
    assert prompt["template"]["prompt"] == "Here is what this user wrote before:\n{items}\n\n{query}"
    assert prompt["chat_format"] == "{prompt}\n" and prompt["max_prompt_tokens"] == 384

    request = json.loads((out / "request.json").read_text())
    user, query = manifest["request"]["user"], manifest["request"]["query"]
    assert request == {"model": user, "prompt": bundle_prompt(out, user, query), "max_tokens": 8, "temperature": 0.0}

    assert main(["prompt", str(out), "--user", user, "--query", query]) == 0
    assert capsys.readouterr().out == request["prompt"]
    assert main(["prompt", str(out), "--user", user, "--query", query, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == request
    assert main(["prompt", str(out), "--user", "nobody", "--query", query]) == 2
    assert "no user 'nobody'; the bundle serves" in capsys.readouterr().err


def test_base_model_option_is_checked_against_the_study_model(tiny_study, tmp_path):
    import shutil

    first = export_bundle(tiny_study, "trial:1", tmp_path / "first").out
    shutil.copytree(first / "base", tmp_path / "models" / "tiny")
    out = export_bundle(tiny_study, "trial:1", tmp_path / "b", base_model=str(tmp_path / "models" / "tiny")).out
    assert not (out / "base").exists()
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    where = str((tmp_path / "models" / "tiny").resolve())
    assert manifest["base_model"]["path"] == where and manifest["base_model"]["in_bundle"] is False
    assert f"exec vllm serve {where} " in (out / "vllm.sh").read_text()
    for config in out.glob("*/*/adapter_config.json"):
        assert json.loads(config.read_text())["base_model_name_or_path"] == where

    other = tmp_path / "models" / "other"
    shutil.copytree(tmp_path / "models" / "tiny", other)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "hidden_size": 128}))
    with pytest.raises(ExportError, match=r"config.json has hidden_size=128 but the study's model 'tiny' has "
                                          r"hidden_size=64; give the directory of the model the study ran on"):
        export_bundle(tiny_study, "trial:1", tmp_path / "c", base_model=str(other))
    with pytest.raises(ExportError, match=r"--base-model .*nowhere: .*config.json is missing"):
        export_bundle(tiny_study, "trial:1", tmp_path / "c", base_model=str(tmp_path / "nowhere"))
    assert not (tmp_path / "c").exists(), "a bad --base-model writes nothing"


# --------------------------------------------------------------------------- the CLI (search.cli wiring)
def test_cli_pareto_and_export_errors(toy, tmp_path, capsys):
    from search.cli import main

    study_dir = str(toy.directory.parent)
    assert main(["pareto", "toy", "--study-dir", study_dir, "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("trial,knee,quality,cost") and [line.split(",")[0] for line in lines[1:]] == ["0", "1", "2"]
    assert main(["pareto", "toy", "--study-dir", study_dir, "--json"]) == 0
    assert [r["trial"] for r in json.loads(capsys.readouterr().out)["front"]] == [0, 1, 2]

    assert main(["export", "nope", "--study-dir", study_dir, "--out", str(tmp_path / "o")]) == 2
    assert "study 'nope': no " in capsys.readouterr().err
    assert main(["export", "toy", "--study-dir", study_dir, "--pick", "trial:7", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--pick 'trial:7': study 'toy' has trials 0..4" in err and "trial 1 (knee): quality=2, cost=3" in err
    assert not (tmp_path / "o").exists(), "nothing is written for a bad pick"
