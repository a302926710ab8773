"""Configuration <-> unit-cube encoding and canonical keys."""

import math

import pytest

from search.encoding import Encoder, canonical, config_key
from search.space import load_space, parse_space

SPACE = """
name: enc
objectives: {quality: max}
parameters:
  layers: {type: layer_mask}
  count: {type: int, low: 0, high: 4, default: 1}
  lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 1.0e-3}
  rank: {type: choice, values: [16, 4, 8], default: 8, when: "count > 0"}
  retriever: {type: choice, values: [bm25, dense, recency]}
  k: {type: fixed, value: 2}
"""


@pytest.fixture()
def encoder() -> Encoder:
    return Encoder(parse_space(SPACE).bind(3))


def test_dimensions_and_hand_checked_vector(encoder):
    assert [(d.param, d.kind) for d in encoder.dims] == [
        ("layers", "binary"), ("layers", "binary"), ("layers", "binary"), ("count", "int"), ("lr", "float"),
        ("rank", "ordinal"), ("retriever", "categorical"),
    ]
    config = {"layers": [1, 0, 1], "count": 2, "lr": 1.0e-3, "rank": 16, "retriever": "recency", "k": 2}
    x = encoder.encode(config)
    # count 2 of 0..4 -> 0.5; lr 1e-3 is halfway in log10 between 1e-4 and 1e-2; rank 16 is the
    # largest of the sorted values 4, 8, 16 -> 1.0; recency is the third of three -> 1.0.
    assert x[:4] == [1.0, 0.0, 1.0, 0.5] and math.isclose(x[4], 0.5) and x[5:] == [1.0, 1.0]
    decoded = encoder.decode(x)
    assert math.isclose(decoded.pop("lr"), 1.0e-3) and decoded == {k: v for k, v in config.items() if k != "lr"}
    assert encoder.discrete_dims()[3] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert encoder.categorical_dims() == {6: [0.0, 0.5, 1.0]}


def test_round_trip_of_random_points_is_stable(encoder):
    import torch

    for u in torch.rand(50, encoder.d, generator=torch.Generator().manual_seed(0)).tolist():
        config = encoder.from_uniform(u)
        assert encoder.decode(encoder.encode(config)) == config
        relaxed = encoder.decode(u)  # nearest-value rounding of a relaxed point
        assert encoder.decode(encoder.encode(relaxed)) == relaxed


def test_inactive_parameters_encode_identically(encoder):
    a = {"layers": [0, 0, 1], "count": 0, "lr": 1e-3, "rank": 4, "retriever": "bm25"}
    b = {**a, "rank": 16}
    assert encoder.encode(a) == encoder.encode(b)
    assert config_key(encoder.space, a) == config_key(encoder.space, b)
    assert canonical(encoder.space, b)["rank"] == 8  # the default
    assert config_key(encoder.space, {**a, "count": 1}) != config_key(encoder.space, {**b, "count": 1})


def test_milp_space_has_one_binary_per_layer():
    encoder = Encoder(load_space("milp").bind(30))
    assert encoder.d == 30 + 5  # 30 flags, count, rank, k, retriever, base (perpcs.top_k and lora.lr_scale fixed)
    pinned = Encoder(load_space("milp").bind(30).with_overrides(["lora.layers=all", "lora.rank=8", "lora.base=none"]))
    assert pinned.d == 3 and pinned.decode([1.0, 0.0, 0.0])["lora.layers"] == [1] * 30  # count, k, retriever
