"""Exporting a trial with shared pieces: own memory + assembled pieces as one servable PEFT adapter."""

from __future__ import annotations

import json

import pytest
import yaml

from search.cli import main
from search.export import export_bundle
from search.space import load_space
from search.study.study import Study

CONFIG = {"lora.layers": [1, 0, 1, 1], "lora.rank": 2, "rag.k": 0, "rag.retriever": "bm25", "perpcs.top_k": 1}


@pytest.fixture(scope="module")
def perpcs_study(tmp_path_factory, tiny_pool):
    """Trial 0: Per-Pcs only; trial 1: Per-Pcs and a LoRA of the user's own (both with kept state)."""
    from search.study.setup import trial_setup
    from search.execution.trial_objective import TrialObjective

    root = tmp_path_factory.mktemp("studies")
    space = load_space("tiny.yaml").with_overrides(["perpcs.top_k=1"]).bind(4)
    study = Study.create("tiny-perpcs", root, space)
    objective = TrialObjective(trial_setup(space, str(tiny_pool)), root / "tiny-perpcs" / "adapters")
    for count in (0, 1):
        config = {**CONFIG, "lora.count": count}
        trial = study.add_trial(config)
        result = objective(config)
        study.complete_trial(trial.number, dict(result.values), result.user_attrs)
    return study


def _logits(model, tokenizer):
    import torch

    batch = tokenizer(["my dog likes the park", "what did I cook on sunday"], return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("number", [0, 1])
def test_export_materialises_own_memory_and_pieces_as_one_adapter(perpcs_study, tiny_pool, tmp_path, number):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from runners.memory import ADAPTER_FILE
    from runners.perpcs.assembly import ASSEMBLY_FILE, Assembly, apply_assembly
    from runners.perpcs.pool import load_pool

    trial = perpcs_study.trials[number]
    out = export_bundle(perpcs_study, f"trial:{number}", tmp_path / "b", pool_dir=str(tiny_pool)).out
    manifest = yaml.safe_load((out / "serving.yaml").read_text())
    pool = load_pool(tiny_pool)
    shared = manifest["shared_pieces"]
    assert shared["method"] == "per-pcs" and shared["top_k"] == 1 and shared["pool"]["key"] == pool.key
    users = sorted(trial.user_attrs["predictions"])
    assert sorted(manifest["adapters"]) == users
    own_rank = 2 * trial.config["lora.count"]
    base = AutoModelForCausalLM.from_pretrained(str(out / "base")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "base"))
    for uid in users:
        state = out / "state" / uid
        stored = (state / ASSEMBLY_FILE).stat().st_size + ((state / ADAPTER_FILE).stat().st_size if own_rank else 0)
        assert stored == trial.user_attrs["users"][uid]["storage_bytes"]  # the trial's storage is what state/ holds
        assembly = Assembly.load(state / ASSEMBLY_FILE)
        config = json.loads((out / "adapters" / uid / "adapter_config.json").read_text())
        rank = own_rank + pool.rank * assembly.indices.shape[1]
        assert (config["r"], config["lora_alpha"], config["layers_to_transform"]) == (rank, rank, [0, 1, 2, 3])
        assert manifest["adapters"][uid]["rank"] == rank

        # The trial's model (own adapter from the state, pieces applied as at evaluation) against
        # the one exported adapter loaded with plain PEFT: the same logits.
        import copy

        trial_model = copy.deepcopy(base)
        if own_rank:
            trial_model = PeftModel.from_pretrained(trial_model, str(state))
        trial_model = apply_assembly(trial_model, pool, assembly).eval()
        served = PeftModel.from_pretrained(copy.deepcopy(base), str(out / "adapters" / uid)).eval()
        expected, got = _logits(trial_model, tokenizer), _logits(served, tokenizer)
        assert not torch.allclose(_logits(base, tokenizer), expected, atol=1e-4), "the adapters must change the model"
        torch.testing.assert_close(got, expected, atol=2e-3, rtol=1e-3)


def test_export_cli_takes_the_pool(perpcs_study, tiny_pool, tmp_path, capsys):
    code = main(["export", perpcs_study.name, "--study-dir", str(perpcs_study.directory.parent),
                 "--pick", "trial:1", "--out", str(tmp_path / "bundle"), "--pool", str(tiny_pool)])
    assert code == 0
    assert "--enable-lora" in capsys.readouterr().out
    assert (tmp_path / "bundle" / "state").is_dir() and (tmp_path / "bundle" / "adapters").is_dir()
