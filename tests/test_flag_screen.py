"""Layer-flag screening: the sparse linear model keeps the flags that matter, the surrogates see the rest as one share."""

import random

import numpy as np
import pytest
import torch

from search.optimizers import AcquisitionOptions, Observation, make_optimizer
from search.optimizers.saas.flag_screen import SCREEN_FROM, horseshoe_effects, screen_flags, screened_inputs
from search.space import parse_space

SPACE = parse_space(
    """
name: flags
objectives: {quality: max, storage: min}
parameters:
  layers: {type: layer_mask, size: 8}
  count: {type: int, low: 1, high: 4, default: 1}
optimizer: {name: saas-nehvi, init_trials: 4, nuts: {warmup: 16, samples: 8, thinning: 2}}
""",
    "flags.yaml",
)
FAST = AcquisitionOptions(num_restarts=2, raw_samples=32, mc_samples=16, maxiter=8)
RELEVANT = (1, 6)


def quality(config: dict) -> float:
    layers = config["layers"]
    return 0.3 * (layers[1] + layers[6]) * config["count"] / 4 + 0.01 * sum(layers)


def storage(config: dict) -> float:
    return float(config["count"] * sum(config["layers"]))


def random_history(n: int, seed: int = 0) -> list[Observation]:
    rng = random.Random(seed)
    configs = [{"layers": [rng.randint(0, 1) for _ in range(8)], "count": rng.randint(1, 4)} for _ in range(n)]
    return [Observation(c, {"quality": quality(c), "storage": storage(c)}) for c in configs]


def test_horseshoe_effects_separate_the_relevant_inputs():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 2, size=(30, 10)).astype(float)
    Y = np.stack([2.0 * X[:, 3] - 1.5 * X[:, 7] + 0.05 * rng.standard_normal(30), np.ones(30)], axis=1)
    effects = horseshoe_effects(X, Y, seed=0)
    assert effects.shape == (2, 10)
    assert effects[0, 3] > 0.5 and effects[0, 7] > 0.5
    assert max(effects[0, i] for i in range(10) if i not in (3, 7)) < 0.1
    assert not effects[1].any()  # a constant objective has no effects
    assert screen_flags(X, Y, list(range(10)), seed=0) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert screen_flags(X, Y, [], seed=0) == []


def test_screened_inputs_keep_the_share_on():
    X = torch.tensor([[1.0, 0.0, 1.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0, 0.25]], dtype=torch.float64)
    out = screened_inputs(X, [0, 1, 2])
    assert out.tolist() == [[2 / 3, 0.0, 0.0, 1.0, 0.5], [0.0, 0.0, 0.0, 1.0, 0.25]]
    assert screened_inputs(X, []) is X


def test_saas_nehvi_screens_flags_from_enough_observations():
    optimizer = make_optimizer("saas-nehvi", SPACE, seed=0, known_objectives={"storage": storage}, options=FAST)
    assert optimizer.settings.flag_screen
    optimizer.suggest(random_history(SCREEN_FROM - 1), 1)
    assert optimizer.screened == [] and optimizer.notes == {}  # too few observations: no screen
    hist = random_history(SCREEN_FROM + 4)
    [config] = optimizer.suggest(hist, 1)
    flags = [i for i, dim in enumerate(optimizer.encoder.dims) if dim.index is not None]
    assert optimizer.screened and set(optimizer.screened) <= set(flags)
    assert not {flags[i] for i in RELEVANT} & set(optimizer.screened)
    # what the user is shown: the layers the surrogates see one by one
    assert optimizer.notes == {"layers_seen": {"layers": [i for i in range(8) if flags[i] not in optimizer.screened]}}
    assert len(config["layers"]) == 8
    # the quality surrogate sees screened flags only as the share on: which of them is on does not matter
    quality_model, storage_model = optimizer.model.models
    first, second = optimizer.screened[:2]
    a = optimizer.encoder.encode_many([{"layers": [int(i in (1, 6, first)) for i in range(8)], "count": 3}])
    b = optimizer.encoder.encode_many([{"layers": [int(i in (1, 6, second)) for i in range(8)], "count": 3}])
    with torch.no_grad():
        assert quality_model.posterior(a).mean.mean().item() == pytest.approx(quality_model.posterior(b).mean.mean().item())
        assert storage_model.posterior(a).mean.item() == storage_model.posterior(b).mean.item() == -9.0


def test_saas_map_does_not_screen():
    optimizer = make_optimizer("saas-map", SPACE, seed=0, known_objectives={"storage": storage}, options=FAST)
    optimizer.suggest(random_history(SCREEN_FROM + 2), 1)
    assert not optimizer.settings.flag_screen and optimizer.screened == []


def test_a_warm_started_search_screens_with_the_earlier_users_trials_too():
    from botorch.models.transforms.input import ChainedInputTransform

    earlier = random_history(SCREEN_FROM, seed=1)
    optimizer = make_optimizer("saas-nehvi", SPACE, seed=0, known_objectives={"storage": storage}, options=FAST,
                               prior=[earlier])
    [config] = optimizer.suggest(random_history(6, seed=2), 1)
    assert optimizer.screened and len(config["layers"]) == 8
    quality_model = optimizer.model.models[0]
    assert isinstance(quality_model.input_transform, ChainedInputTransform)  # the screen, then the same-user input
    x = optimizer.encoder.encode_many([config])
    with torch.no_grad():
        assert quality_model.posterior(x).mean.shape[-2:] == (1, 1)


def test_repeated_screens_release_their_compiled_programs():
    """A long study fits the screen every suggestion: the compiled programs must not pile up in memory."""
    from search.optimizers.saas.padded_model import RELEASE_EVERY

    def mappings() -> int:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)

    rng = np.random.default_rng(0)
    before = mappings()
    for i in range(2 * RELEASE_EVERY + 1):
        X = rng.integers(0, 2, size=(20 + i, 12)).astype(float)
        horseshoe_effects(X, rng.standard_normal((20 + i, 1)), seed=i, warmup=5, samples=5)
    # about 1000 mappings a fit when nothing is released: 17 fits would add some 17000
    assert mappings() - before < 600 * RELEASE_EVERY
