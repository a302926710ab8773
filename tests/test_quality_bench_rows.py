"""``bench/quality.py --extra``: a study's configuration, as ``status --json`` prints it, becomes a row."""

import json

import pytest
from bench_scripts import load_bench

from runners.spec import TrialConfig


@pytest.fixture(scope="module")
def bench():
    return load_bench("quality")


def test_an_extra_row_takes_the_mask_that_status_prints(bench):
    mask = [0, 0, 1, 1, 0, 1]
    row = bench.parse_extra(f"t19|lora.layers={json.dumps(mask)}|lora.count=1|lora.rank=8|rag.k=1|"
                            "rag.retriever=random|lora.base=none|training.lr=0.003", len(mask))
    assert (row.name, row.trains, row.training) == ("t19", True, {"lr": 0.003})
    config = TrialConfig.from_flat(row.config, n_layers=len(mask))
    assert config.to_flat(len(mask))["lora.layers"] == mask
    assert (config.to_flat(len(mask))["rag.k"], config.to_flat(len(mask))["rag.retriever"]) == (1, "random")


def test_an_extra_row_takes_top_layers_and_retrieval_only(bench):
    row = bench.parse_extra("recency|lora.layers=top:2|lora.count=0|rag.k=1|rag.retriever=recency", 4)
    assert row.config["lora.layers"] == [0, 0, 1, 1] and not row.trains
