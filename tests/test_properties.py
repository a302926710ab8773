"""Property-based tests (hypothesis): the space encoding round trip and the layer-mask parser.

- Encoding: on random spaces (layer masks, ints and floats on linear or log scales, numeric and
  string choices, fixed values, conditional parameters), every valid configuration encodes into
  ``[0, 1]^d`` and decodes to its canonical form; equivalent configurations (differing only in
  inactive parameters) share one vector and one key; canonicalising is idempotent.
- Layer masks: ``parse_layer_indices`` and ``layers_from_mask`` agree with sets of indices written
  every way people write them, and reject anything else with a ``ConfigError`` only.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runners.errors import ConfigError
from runners.spec import layers_from_mask, parse_layer_indices
from search.encoding import Encoder, canonical, config_key
from search.space import ChoiceParam, FloatParam, IntParam, LayerMaskParam, Space

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- random spaces
@st.composite
def int_params(draw) -> dict:
    log = draw(st.booleans())
    low = draw(st.integers(1 if log else -50, 60))
    high = draw(st.integers(low, low + draw(st.sampled_from([0, 1, 7, 300, 5000]))))
    return {"type": "int", "low": low, "high": high, "log": log}


@st.composite
def float_params(draw) -> dict:
    log = draw(st.booleans())
    low = draw(st.floats(1e-4 if log else -10.0, 10.0))
    high = draw(st.floats(low, low * 1000 if log else low + 100))
    return {"type": "float", "low": low, "high": high, "log": log}


def choice_params() -> st.SearchStrategy[dict]:
    numbers = st.lists(st.integers(-5, 64), min_size=1, max_size=5, unique=True)
    words = st.lists(st.sampled_from(["bm25", "dense", "recency", "random", "x"]), min_size=1, max_size=5, unique=True)
    return st.one_of(numbers, words).map(lambda values: {"type": "choice", "values": values})


@st.composite
def spaces(draw) -> Space:
    params: dict[str, dict] = {"lora.count": {"type": "int", "low": 0, "high": draw(st.integers(0, 4))}}
    params["lora.layers"] = {"type": "layer_mask", "when": "lora.count > 0"}
    for i in range(draw(st.integers(0, 4))):
        param = draw(st.one_of(int_params(), float_params(), choice_params(),
                               st.just({"type": "fixed", "value": i})))
        if draw(st.booleans()) and param["type"] != "fixed":
            param["when"] = draw(st.sampled_from(["lora.count > 0", "lora.count == 0", "lora.count >= 2"]))
        params[f"p{i}"] = param
    raw = {"name": "prop", "objectives": {"rougeL": "max", "storage_bytes": "min"}, "parameters": params}
    return Space.from_record(raw, "property").bind(draw(st.integers(1, 8)))


def _value(draw, param):
    if isinstance(param, LayerMaskParam):
        return draw(st.lists(st.integers(0, 1), min_size=param.size, max_size=param.size))
    if isinstance(param, IntParam):
        return draw(st.integers(param.low, param.high))
    if isinstance(param, FloatParam):
        return draw(st.floats(param.low, param.high))
    if isinstance(param, ChoiceParam):
        return draw(st.sampled_from(param.values))
    return param.value


@st.composite
def space_and_config(draw) -> tuple[Space, dict]:
    space = draw(spaces())
    return space, {name: _value(draw, param) for name, param in space.parameters.items()}


def _same(a: dict, b: dict) -> bool:
    """Equal configurations, floats up to rounding (log scales go through exp/log)."""
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9):
                return False
        elif x != y:
            return False
    return True


@SETTINGS
@given(space_and_config())
def test_encode_then_decode_gives_the_canonical_config(case):
    space, config = case
    encoder = Encoder(space)
    x = encoder.encode(config)
    assert len(x) == encoder.d
    assert all(0.0 <= v <= 1.0 for v in x)
    assert _same(encoder.decode(x), canonical(space, config))


@SETTINGS
@given(space_and_config())
def test_canonical_is_idempotent_and_keys_survive_the_round_trip(case):
    space, config = case
    once = canonical(space, config)
    assert canonical(space, once) == once
    encoder = Encoder(space)
    again = encoder.decode(encoder.encode(config))
    assert encoder.encode(again) == pytest.approx(encoder.encode(config), abs=1e-12)
    if not any(isinstance(v, float) for v in once.values()):
        assert config_key(space, again) == config_key(space, config)


@SETTINGS
@given(space_and_config(), st.data())
def test_inactive_parameters_do_not_change_the_encoding(case, data):
    space, config = case
    inactive = [n for n in space.parameters if not space.is_active(n, canonical(space, config))]
    assume(inactive)
    other = dict(config)
    for name in inactive:
        other[name] = _value(data.draw, space.parameters[name])
    encoder = Encoder(space)
    assert encoder.encode(other) == encoder.encode(config)
    assert config_key(space, other) == config_key(space, config)


@SETTINGS
@given(spaces(), st.data())
def test_every_point_of_the_cube_decodes_to_a_valid_config(space, data):
    encoder = Encoder(space)
    x = data.draw(st.lists(st.floats(0.0, 1.0), min_size=encoder.d, max_size=encoder.d))
    config = encoder.decode(x)
    for name, param in space.parameters.items():
        value = config[name]
        if isinstance(param, (IntParam, FloatParam)):
            assert param.low <= value <= param.high or math.isclose(value, param.low) or math.isclose(value, param.high)
        elif isinstance(param, ChoiceParam):
            assert value in param.values
        elif isinstance(param, LayerMaskParam):
            assert len(value) == param.size and set(value) <= {0, 1}
    assert _same(encoder.decode(encoder.encode(config)), config)


# --------------------------------------------------------------------------- layer masks
@st.composite
def layer_sets(draw) -> tuple[int, frozenset[int]]:
    n = draw(st.integers(1, 40))
    return n, frozenset(draw(st.sets(st.integers(0, n - 1), max_size=n)))


@SETTINGS
@given(layer_sets(), st.sampled_from([",", ", ", " ,", " , "]), st.booleans())
def test_indices_parse_the_same_however_written(case, sep, as_text):
    n, chosen = case
    expected = tuple(sorted(chosen))
    written = sep.join(str(i) for i in sorted(chosen, reverse=True)) if as_text else list(chosen) + list(chosen)
    assume(written != "")  # the empty text is covered by the 'none' word
    assert parse_layer_indices(written, n) == expected
    assert parse_layer_indices(written) == expected


@SETTINGS
@given(layer_sets())
def test_mask_and_indices_agree(case):
    n, chosen = case
    mask = [1 if i in chosen else 0 for i in range(n)]
    layers = layers_from_mask(mask, n)
    assert layers == tuple(sorted(chosen))
    assert parse_layer_indices(list(layers), n) == layers
    assert layers_from_mask("all", n) == parse_layer_indices("all", n) == tuple(range(n))
    assert layers_from_mask("none", n) == parse_layer_indices("none", n) == ()


@SETTINGS
@given(layer_sets(), st.integers(1, 1000))
def test_an_index_past_the_model_is_refused(case, past):
    n, chosen = case
    with pytest.raises(ConfigError, match="outside 0.."):
        parse_layer_indices(sorted(chosen) + [n - 1 + past], n)
    with pytest.raises(ConfigError):
        parse_layer_indices([-past], n)


@SETTINGS
@given(st.integers(1, 30), st.integers(0, 30))
def test_a_mask_of_the_wrong_length_is_refused(n, length):
    assume(length != n)
    with pytest.raises(ConfigError, match=f"give {n} flags"):
        layers_from_mask([1] * length, n)


@SETTINGS
@given(st.one_of(st.text(max_size=12), st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=False),
                 st.lists(st.one_of(st.integers(-3, 50), st.floats(-3, 50), st.text(max_size=3)), max_size=6)),
       st.integers(1, 40))
def test_anything_else_is_a_config_error_or_valid_layers(value, n):
    try:
        parsed = parse_layer_indices(value, n)
    except ConfigError:
        return
    assert all(0 <= i < n for i in parsed) and list(parsed) == sorted(set(parsed))


@SETTINGS
@given(st.one_of(st.text(max_size=8), st.lists(st.one_of(st.integers(-2, 3), st.booleans(), st.floats(-1, 2)),
                                                max_size=6)), st.integers(1, 6))
def test_a_malformed_mask_is_a_config_error(value, n):
    try:
        layers = layers_from_mask(value, n)
    except ConfigError:
        return
    assert all(0 <= i < n for i in layers)


def test_an_infinite_index_is_a_config_error():
    """Found by the fuzz above: ``int(inf)`` raised OverflowError."""
    with pytest.raises(ConfigError):
        parse_layer_indices([float("inf")], 4)
    with pytest.raises(ConfigError):
        parse_layer_indices("1_0", 12)  # int() reads it as 10
