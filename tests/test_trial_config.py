"""The typed trial configuration: one parser of the flat form, one of human layer lists."""

from __future__ import annotations

import pytest

from runners.errors import ConfigError
from runners.spec import FLAT_KEYS, TrialConfig, TrialSetup, layers_from_mask, parse_layer_indices


def test_flat_form_round_trip():
    flat = {"lora.layers": [1, 0, 1, 1], "lora.count": 2, "lora.rank": 4, "rag.k": 3, "rag.retriever": "dense",
            "perpcs.top_k": 0}
    config = TrialConfig.from_flat(flat, n_layers=4)
    assert config == TrialConfig(layers=(0, 2, 3), count=2, rank=4, rag_k=3, retriever="dense")
    assert config.merged_rank == 8 and config.has_memory and not config.uses_pool
    back = config.to_flat(4)
    assert {k: back[k] for k in flat} == flat
    assert TrialConfig.from_flat(back, 4) == config


def test_missing_keys_mean_off():
    config = TrialConfig.from_flat({})
    assert config == TrialConfig() and not config.has_memory and config.rag_k == 0
    assert config.describe() == "base model"


def test_mask_parser_has_no_guessing():
    assert layers_from_mask([0, 1, 1, 0], 4) == (1, 2)
    assert layers_from_mask("all", 3) == (0, 1, 2)
    assert layers_from_mask("none") == ()
    with pytest.raises(ConfigError, match="a mask of 3 flags does not fit a model with 30 layers"):
        layers_from_mask([1, 0, 1], 30)
    with pytest.raises(ConfigError, match="is not a layer mask"):
        layers_from_mask([3], 4)  # indices are not a mask: parse_layer_indices reads those
    with pytest.raises(ConfigError, match="is not a layer mask"):
        layers_from_mask("0,1", 4)


def test_human_layer_lists():
    assert parse_layer_indices("0,1, 5") == (0, 1, 5)
    assert parse_layer_indices([3, 1, 3]) == (1, 3)
    assert parse_layer_indices(2) == (2,)
    assert parse_layer_indices("ALL") == "all" and parse_layer_indices("all", 3) == (0, 1, 2)
    assert parse_layer_indices("none", 3) == ()
    with pytest.raises(ConfigError, match=r"layer indices \[7\] are outside 0..3"):
        parse_layer_indices("0,7", 4)
    with pytest.raises(ConfigError, match="comma-separated layer indices"):
        parse_layer_indices("0,x")


@pytest.mark.parametrize("flat,message", [
    ({"lora.count": 2, "lora.layers": [1, 1]}, "lora.count=2 needs lora.rank >= 1"),
    ({"lora.rank": -1}, "lora.rank=-1: must be >= 0"),
    ({"perpcs.top_k": 2, "perpcs.retrieve": 2}, "two ways to use the pool"),
    ({"lora.mask": [1]}, r"unknown key\(s\) \['lora.mask'\]"),
    ({"rag.k": 2.5}, "rag.k: 2.5 is not a whole number"),
])
def test_bad_configurations_name_the_key(flat, message):
    with pytest.raises(ConfigError, match=message):
        TrialConfig.from_flat(flat, 2)


def test_layers_checked_against_the_model():
    with pytest.raises(ConfigError, match=r"layer index \[5\] out of range; the model has 4 layers"):
        TrialConfig(layers=(0, 5), count=1, rank=2).check_layers(4)


def test_the_key_strings_live_in_one_place():
    """``config.get("lora...")`` and friends appear nowhere in the code but in runners/spec.py."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    pattern = re.compile("|".join(re.escape(f'"{key}"') for key in FLAT_KEYS.values()))
    offenders = [str(path.relative_to(root)) for package in ("runners", "search")
                 for path in (root / package).rglob("*.py")
                 if path.name != "spec.py" and pattern.search(path.read_text(encoding="utf-8"))]
    assert offenders == []


def test_setup_validates_sections():
    with pytest.raises(ConfigError, match=r"training.epochs: Input should be greater than or equal to 0"):
        TrialSetup.from_dicts(training={"epochs": -1})
    with pytest.raises(ConfigError, match=r"data.colour: unknown key; known keys are \['source', 'format'"):
        TrialSetup.from_dicts(data={"colour": "red"})
    setup = TrialSetup.from_dicts({"name": "tiny", "targets": ["q_proj"]}, {"format": "jsonl", "users": None})
    assert setup.model.targets == ("q_proj",) and setup.data.users is None


def test_top_layers_are_the_upper_ones_whatever_the_model():
    assert parse_layer_indices("top:3", 5) == (2, 3, 4)
    assert parse_layer_indices("TOP:8", 4) == (0, 1, 2, 3)  # fewer layers than asked: all of them
    assert parse_layer_indices("top:8") == "top:8"  # unbound: kept as the word
    with pytest.raises(ConfigError, match="top:8"):
        parse_layer_indices("top:0", 5)
