"""Per-Pcs: gate math, scoring and selection, assembly, storage, export, the pool CLI, bad input."""

from __future__ import annotations

import argparse
import json
import math
import struct
import warnings
from pathlib import Path

import pytest
import torch

from runners.errors import ConfigError, ModelError
from runners.perpcs.assembly import (
    Assembly, TopKClippedWarning, apply_assembly, assemble, export_assembly_adapter,
    piece_scores, select_pieces,
)
from runners.perpcs.gates import GatedModel, gated_delta
from runners.perpcs.pool import PoolMissing, find_pool, require_pool, shared_modules, write_pool

# ----------------------------------------------------------------------------------- fixtures


def fresh_tiny():
    from runners.models import load_model
    from runners.spec import ModelSpec

    return load_model(ModelSpec(name="tiny", dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def tiny():
    return fresh_tiny()


@pytest.fixture(scope="module")
def layout(tiny):
    from runners.memory import layout_of

    return layout_of(tiny.model, ("gate_proj", "up_proj", "down_proj"))


def make_pool(directory, layout, n_sharers=3, rank=2, shared=None, base_model="tiny", seed=0):
    """A pool of random pieces and gates on the tiny model's layout (no training)."""
    gen = torch.Generator().manual_seed(seed)
    pieces, gates, records = {}, {}, []
    for i in range(n_sharers):
        mine = list(range(len(layout.modules))) if shared is None else shared[i]
        for m in mine:
            _, path, d_in, d_out = layout.modules[m]
            pieces[(i, path)] = (torch.randn(rank, d_in, generator=gen) * 0.5,
                                 torch.randn(d_out, rank, generator=gen) * 0.5)
            gates[(i, path)] = torch.randn(d_in, generator=gen)
        records.append({"user_id": f"sharer-{i}", "history_items": 10 + i, "cluster": i, "shared_modules": mine})
    index = {"key": f"test-{seed}-{n_sharers}", "base_model": base_model, "n_layers": layout.n_layers,
             "targets": list(layout.targets), "rank": rank, "modules": [list(m) for m in layout.modules],
             "sharers": records, "data": {"source": "demo"}, "settings": {"strategy": "random", "share_ratio": 1.0}}
    return write_pool(directory, index, pieces, gates)


@pytest.fixture(scope="module")
def pool(tmp_path_factory, layout):
    return make_pool(tmp_path_factory.mktemp("pool") / "p", layout)


def history(tiny, n=3):
    from runners.batching import pair_example, text_example

    tok = tiny.tokenizer
    out = [pair_example(tok, "What do you do on weekends?\n", "I love hiking and baking bread.", 64)]
    out += [text_example(tok, "My dog loves long walks in the park on Saturday mornings.", 64)]
    out += [pair_example(tok, "Coffee or tea?\n", "Honestly, nothing beats a good book and tea.", 64)]
    return out[:n]


# ----------------------------------------------------------------------------------- gate math


def test_gated_delta_on_hand_made_tensors():
    a = torch.tensor([[1.0, -1.0]])          # r=1, d_in=2
    b = torch.tensor([[3.0], [1.0]])         # d_out=2
    g = torch.tensor([0.5, -1.0])
    x = torch.tensor([[2.0, 1.0], [1.0, 1.0], [4.0, 0.0]])
    out = gated_delta(x, a, b, g)
    # token 0: A x = 1, g.x = 0 -> sigmoid 0.5 -> (1.5, 0.5); token 1: A x = 0 -> 0
    # token 2: A x = 4, g.x = 2 -> sigmoid(2) = 0.880797 -> (10.5696, 3.5232)
    assert torch.allclose(out[0], torch.tensor([1.5, 0.5]))
    assert torch.allclose(out[1], torch.zeros(2))
    assert torch.allclose(out[2], torch.tensor([12.0, 4.0]) * 0.8807971, atol=1e-5)


def test_gated_model_trains_only_gates_and_computes_the_gated_output():
    linear = torch.nn.Linear(2, 2, bias=False)
    linear.weight.data = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    linear.weight.requires_grad_(False)
    model = torch.nn.Sequential(linear)
    a, b = torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0], [1.0]])
    x = torch.tensor([[2.0, 1.0]])
    with GatedModel(model, {"0": (a, b)}, "cpu") as gated:
        out = gated(input=x)
        # W x = (2, 2); gate is zero -> sigmoid 0.5 -> + (1.5, 0.5)
        assert torch.allclose(out, torch.tensor([[3.5, 2.5]]))
        out.sum().backward()
        gate = gated.gates["0"]
        # d/dg of sum(BAx * sigmoid(g.x)) at g=0: sum(BAx) * 0.25 * x = 4 * 0.25 * (2, 1)
        assert torch.allclose(gate.grad, torch.tensor([2.0, 1.0]))
        assert list(gated.parameters()) == [gate]
    assert torch.equal(model(x), torch.tensor([[2.0, 2.0]]))  # hooks removed


# ------------------------------------------------------------------------- scoring and selection


def test_scores_topk_and_weights_on_hand_made_tensors():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])          # 3 tokens
    mask = torch.tensor([[True, True, False]])                         # the last token is not scored
    gates = torch.tensor([[1.0, 0.0], [1.0, 3.0], [1.0, 1.0], [-1.0, 0.0], [0.0, 0.0]])
    scores = piece_scores(x, gates, mask)
    expected = [1.0, 4 / math.sqrt(10), math.sqrt(2), -1.0, 0.0]       # summed cosines; zero gate -> 0
    assert torch.allclose(scores[0], torch.tensor(expected), atol=1e-6)
    idx, w = select_pieces(scores, top_k=2, d_in=2)
    assert idx.tolist() == [[2, 1]]
    # softmax((1.41421, 1.26491) / sqrt(2)) = softmax(1.0, 0.89443): 0.52637, 0.47363
    assert w[0].tolist() == pytest.approx([0.52637, 0.47363], abs=1e-5)


# ---------------------------------------------------------------------------------- assembly


def test_assembled_delta_is_the_weighted_sum_of_pieces(tmp_path, layout, pool):
    model = fresh_tiny().model
    n = len(layout.modules)
    indices = torch.tensor([[2, 0]] * n)
    weights = torch.tensor([[0.75, 0.25]] * n)
    indices[5] = torch.tensor([1, -1])
    weights[5] = torch.tensor([1.0, 0.0])
    assembly = Assembly(pool.key, 2, indices, weights)
    peft_model = apply_assembly(model, pool, assembly)
    for m, (_, path, d_in, _) in enumerate(layout.modules):
        module = peft_model.base_model.model.get_submodule(path)
        delta = module.lora_B["perpcs"].weight @ module.lora_A["perpcs"].weight * module.scaling["perpcs"]
        want = sum(w * pool.piece(s, path)[1] @ pool.piece(s, path)[0] for s, w in assembly.chosen(m))
        assert torch.allclose(delta, want, atol=1e-5), path
        x = torch.randn(3, d_in)
        assert torch.allclose(module(x), module.base_layer(x) + x @ want.T, atol=1e-4)
    assert not any(p.requires_grad for p in peft_model.parameters())


def test_assembly_is_layer_wise_and_matches_the_scores(layout, pool):
    tiny = fresh_tiny()
    examples = history(tiny, 1)
    seen: dict[str, torch.Tensor] = {}
    first, last = layout.modules[0][1], layout.modules[-1][1]

    def capture(name):
        return lambda module, args, out: seen.__setitem__(name, args[0].detach().clone())

    handles = [tiny.model.get_submodule(p).register_forward_hook(capture(p)) for p in (first, last)]
    assembly = assemble(pool, tiny, layout, examples, top_k=2)
    during = dict(seen)
    for h in handles:
        h.remove()
    assert assembly.n_examples == 1 and assembly.seconds > 0
    assert torch.allclose(assembly.weights.sum(dim=1), torch.ones(len(layout.modules)), atol=2e-3)
    # the first module's choice is the top-2 of the cosine scores of its input
    mask = torch.tensor([[lab != -100 for lab in examples[0].labels]])
    scores = piece_scores(during[first], pool.module_pieces(0).gates, mask)
    idx, w = select_pieces(scores, 2, layout.modules[0][2])
    assert assembly.chosen(0) == [(int(i), pytest.approx(float(v), abs=1e-3)) for i, v in zip(idx[0], w[0])]
    # layer-wise: with one example, the last module saw the model carrying the assembled pieces
    peft_model = apply_assembly(tiny.model, pool, assembly)
    handle = peft_model.base_model.model.get_submodule(last).register_forward_hook(capture("after"))
    with torch.no_grad():
        peft_model(input_ids=torch.tensor([examples[0].input_ids]))
    handle.remove()
    base_model = peft_model.unload()
    handle = base_model.get_submodule(last).register_forward_hook(capture("base"))
    with torch.no_grad():
        base_model(input_ids=torch.tensor([examples[0].input_ids]))
    handle.remove()
    near = (seen["after"] - during[last]).abs().max()   # only the fp16 rounding of the stored weights
    far = (seen["base"] - during[last]).abs().max()     # the plain base model
    assert near < 0.05 * far, (near, far)


def test_assembly_stores_only_indices_and_weights(tmp_path, tiny, layout, pool):
    assembly = assemble(pool, tiny, layout, history(tiny), top_k=2)
    path = tmp_path / "user.safetensors"
    written = assembly.save(path)
    n_modules, width = assembly.indices.shape
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_len])
    assert set(header) == {"__metadata__", "indices", "weights"}
    assert header["indices"]["dtype"] == "I16" and header["weights"]["dtype"] == "F16"
    assert written == path.stat().st_size == 8 + header_len + n_modules * width * (2 + 2)
    assert 1 <= width <= pool.n_sharers and n_modules == len(layout.modules) == 12
    back = Assembly.load(path)
    assert torch.equal(back.indices, assembly.indices) and torch.equal(back.weights, assembly.weights)
    assert back.pool_key == pool.key and back.top_k == 2
    # the materialised adapter is far bigger than what Per-Pcs stores
    adapter = export_assembly_adapter(pool, assembly, tmp_path / "adapter")
    assert adapter.stat().st_size > 10 * written


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")
def test_export_loads_with_peft_and_reproduces_the_logits(tmp_path, tiny, layout, pool):
    from peft import PeftModel

    assembly = assemble(pool, tiny, layout, history(tiny), top_k=2)
    out = tmp_path / "adapter"
    export_assembly_adapter(pool, assembly, out)
    assert (out / "adapter_config.json").exists()
    ids = torch.tensor([list(history(tiny)[0].input_ids)])
    served = apply_assembly(fresh_tiny().model, pool, assembly)
    loaded = PeftModel.from_pretrained(fresh_tiny().model, str(out))
    base = fresh_tiny().model
    with torch.no_grad():
        want, got, plain = served(input_ids=ids).logits, loaded(input_ids=ids).logits, base(input_ids=ids).logits
    assert torch.allclose(got, want, atol=2e-3)
    assert (want - plain).abs().max() > 1e-2  # the adapter does change the model


def test_assembly_combines_with_a_users_own_lora(tiny, layout, pool):
    from runners.memory import MemoryConfig, attach_memory, detach_memory

    model = fresh_tiny().model
    memory = MemoryConfig(layers=(0, 1), count=1, rank=2)
    peft_model = attach_memory(model, layout, memory, seed=0)
    assembly = assemble(pool, tiny, layout, history(tiny), top_k=1)
    combined = apply_assembly(peft_model, pool, assembly)
    assert set(combined.base_model.active_adapters) == {"m0", "perpcs"}
    trainable = {n for n, p in combined.named_parameters() if p.requires_grad}
    assert trainable and all(".m0." in n for n in trainable)
    detach_memory(combined)


def test_share_ratio_limits_choices_to_shared_pieces(tmp_path, tiny, layout):
    shared = [[0, 1, 2], [0], [3]]
    small = make_pool(tmp_path / "p", layout, shared=shared, seed=1)
    assembly = assemble(small, tiny, layout, history(tiny), top_k=2)
    for m in range(len(layout.modules)):
        chosen = {s for s, _ in assembly.chosen(m)}
        assert chosen <= {i for i, mods in enumerate(shared) if m in mods}
    assert {s for s, _ in assembly.chosen(0)} == {0, 1}        # both sharers of module 0, k=2
    assert assembly.chosen(5) == []                            # nobody shares module 5
    got = shared_modules("demo-03-x", 12, 0.5, seed=0)
    assert len(got) == 6 and got == shared_modules("demo-03-x", 12, 0.5, seed=0)
    assert got != shared_modules("demo-04-y", 12, 0.5, seed=0)
    assert shared_modules("u", 12, 1.0, 0) == list(range(12)) and len(shared_modules("u", 12, 0.01, 0)) == 1


# ------------------------------------------------------------------------------------ sharers


def test_kmeans_picks_the_most_active_user_of_each_cluster():
    import numpy as np

    from runners.data.types import HistoryItem, User
    from runners.perpcs.sharers import cluster_users, most_active_per_cluster, select_sharers

    emb = np.array([[0, 0], [0.1, 0], [0, 0.1], [5, 5], [5.1, 5], [5, 5.1]], dtype=np.float32)
    users = [User(f"u{i}", tuple(HistoryItem(text=f"t{j}") for j in range(n)), ())
             for i, n in enumerate([3, 7, 7, 2, 1, 9])]
    labels = cluster_users(emb, 2)
    assert labels[0] == labels[1] == labels[2] != labels[3] == labels[4] == labels[5]
    chosen = most_active_per_cluster(users, labels)
    assert sorted(chosen) == [1, 5]               # u1 wins the tie with u2 (first one), u5 the other cluster
    most = select_sharers(users, "demo", 2, "most-active")
    assert [s.user.user_id for s in most] == ["u1", "u5"] or [s.user.user_id for s in most] == ["u5", "u1"]


def test_kmeans_on_minilm_embeddings_separates_topics():
    from runners.data.types import HistoryItem, User
    from runners.perpcs.sharers import select_sharers

    pets = ["My dog loves long walks.", "The cat sleeps on my bed.", "Our puppy chews shoes."]
    money = ["Stock markets fell sharply today.", "Bond yields rose again.", "The central bank cut rates."]
    users = [User("pets-a", tuple(HistoryItem(text=t) for t in pets), ()),
             User("money-a", tuple(HistoryItem(text=t) for t in money[:2]), ()),
             User("pets-b", tuple(HistoryItem(text=t) for t in pets[:2]), ()),
             User("money-b", tuple(HistoryItem(text=t) for t in money), ())]
    chosen = select_sharers(users, "demo", 2, "kmeans", seed=0)
    assert sorted(s.user.user_id for s in chosen) == ["money-b", "pets-a"]
    assert len({s.cluster for s in chosen}) == 2


# --------------------------------------------------------------------------------------- CLI


def pool_cli(*argv):
    from search.commands.pool import add_parsers

    parser = argparse.ArgumentParser(prog="pers-search")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return args.handler(args)


def test_pool_build_and_show_through_the_cli_then_assemble(tmp_path, capsys):
    from runners.history import history_examples
    from runners.session import session_for
    from search.study.setup import trial_setup
    from search.space import load_space

    where = tmp_path / "pool"
    code = pool_cli("pool", "build", "--space", "spaces/tiny.yaml", "--sharers", "3", "--strategy", "most-active",
                    "--share-ratio", "0.5", "--gate-steps", "2", "--steps", "1", "--pool", str(where), "--json")
    assert code == 0
    built = json.loads(capsys.readouterr().out)
    assert built["n_sharers"] == 3 and built["rank"] == 4 and built["n_layers"] == 4   # rank: tiny.yaml default
    assert built["pieces"] == 3 * 6 and built["size_bytes"] == sum(f.stat().st_size for f in where.iterdir())
    assert pool_cli("pool", "show", "--space", "spaces/tiny.yaml", "--pool", str(where), "--json") == 0
    assert json.loads(capsys.readouterr().out)["key"] == built["key"]
    assert pool_cli("pool", "show", "--space", "spaces/tiny.yaml", "--pool", str(where)) == 0
    assert "demo-" in capsys.readouterr().out

    setup = trial_setup(load_space("spaces/tiny.yaml"))
    session = session_for(setup)
    cohort = [s.user.user_id for s in session.splits]
    pool = find_pool(setup, where)
    assert pool is not None and not set(pool.sharer_ids) & set(cohort)
    user = session.splits[0]
    examples = history_examples(session.loaded.tokenizer, session.task, user.train, setup.training, 0).all()
    assembly = assemble(pool, session.loaded, session.layout, examples, top_k=2, user_id=user.user.user_id)
    assert assembly.n_examples == len(examples)
    assert all(1 <= len(assembly.chosen(m)) <= 3 for m in range(12) if pool.shared_by(m))
    # a second build with the same settings reuses the pool
    mtime = (where / "pieces.safetensors").stat().st_mtime_ns
    assert pool_cli("pool", "build", "--space", "spaces/tiny.yaml", "--sharers", "3", "--strategy", "most-active",
                    "--share-ratio", "0.5", "--gate-steps", "2", "--steps", "1", "--pool", str(where), "--json") == 0
    assert (where / "pieces.safetensors").stat().st_mtime_ns == mtime
    with pytest.raises(ConfigError, match="is a sharer"):
        assemble(pool, session.loaded, session.layout, examples, 1, user_id=pool.sharer_ids[0])


# --------------------------------------------------------------------------------- bad input


def test_missing_pool_says_how_to_build_one(tmp_path, tiny_setup, monkeypatch):
    monkeypatch.setenv("PERS_SEARCH_HOME", str(tmp_path / "home"))
    with pytest.raises(PoolMissing) as err:
        require_pool(tiny_setup, tmp_path / "nothing", space="tiny.yaml", top_k=3)
    message = str(err.value)
    assert "perpcs.top_k=3 needs a Per-Pcs pool for model 'tiny'" in message
    assert f"build one with `pers-search pool build --space tiny.yaml --sharers 8 --pool {tmp_path / 'nothing'}`" in message
    assert find_pool(tiny_setup) is None                                   # empty $PERS_SEARCH_HOME
    with pytest.raises(PoolMissing, match="needs a Per-Pcs pool"):
        pool_cli("pool", "show", "--space", "spaces/tiny.yaml", "--pool", str(tmp_path / "x"))


def test_top_k_above_the_sharer_count_is_clipped_with_a_warning(tiny, layout, pool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assembly = assemble(pool, tiny, layout, history(tiny, 1), top_k=7)
    clipped = [w for w in caught if issubclass(w.category, TopKClippedWarning)]
    assert len(clipped) == 1 and Path(clipped[0].filename).name == "test_perpcs.py"
    assert "perpcs.top_k=7 is larger than the 3 sharers" in str(clipped[0].message)
    assert assembly.top_k == 3


def test_pool_of_another_base_model_is_refused(tmp_path, tiny, layout, tiny_setup):
    other = make_pool(tmp_path / "other", layout, base_model="smollm2-135m-instruct")
    with pytest.raises(ModelError, match="built for base model 'smollm2-135m-instruct', but the model is 'tiny'"):
        assemble(other, tiny, layout, history(tiny, 1), top_k=1)
    with pytest.raises(ModelError, match="'smollm2-135m-instruct'.*'tiny'"):
        find_pool(tiny_setup, tmp_path / "other")


def test_bad_pool_settings_are_refused():
    from runners.perpcs.pool import PoolSettings

    with pytest.raises(ConfigError, match=r"--share-ratio 0.0 is outside \(0, 1\]"):
        PoolSettings(share_ratio=0.0).check()
    with pytest.raises(ConfigError, match="--rank 0 must be >= 1"):
        PoolSettings(rank=0).check()
