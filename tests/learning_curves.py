"""A synthetic learning-curve problem whose right answer is known (for the early-stopping tests and bench).

A configuration ``x`` in [0, 1], ``width`` in 1..4 has the final objectives

    quality = 0.2 + 0.6 x (1 - 0.15 (width - 1)) ** 2 ... (see :func:`final`),  cost = width (known),

and trains for ``STEPS`` steps: after ``s`` steps its quality is ``final * (1 - exp(-s / TAU))``
measured with Gaussian noise of standard deviation ``NOISE`` (reported as ``quality_se``). The
function is deterministic under the configuration (the noise is seeded by it), so a study can be
replayed. Steps are counted in ``STEPS_SPENT`` per process (the cost early stopping saves).
"""

from __future__ import annotations

import math
import random

from runners.spec import Checkpoint

STEPS = 40
EVERY = 4
TAU = 8.0
NOISE = 0.01
OBJECTIVES = {"quality": "max", "cost": "min"}
SPACE = """
name: curves
objectives: {quality: max, cost: min}
parameters:
  x: {type: float, low: 0.0, high: 1.0}
  width: {type: int, low: 1, high: 4}
optimizer: {name: random, init_trials: 4, trials: 24, seed: 0, ref_point: {quality: 0.0, cost: 5.0}}
early_stopping: {enabled: true, every: 4, min_steps: 8, confidence: 0.9}
"""


def final(config: dict) -> dict[str, float]:
    """The objectives a configuration reaches after all its steps."""
    x, width = float(config["x"]), int(config["width"])
    return {"quality": 0.2 + 0.6 * x * (1.0 - 0.2 * (4 - width)), "cost": float(width)}


def cost(config: dict) -> float:
    """The known objective."""
    return float(config["width"])


def trained(config: dict, rng: random.Random, step: int) -> float:
    """Quality after ``step`` steps, with measurement noise."""
    return final(config)["quality"] * (1.0 - math.exp(-step / TAU)) + rng.gauss(0.0, NOISE)


def objective(config: dict, report=None) -> dict[str, float]:
    """Train for ``STEPS`` steps, reporting every ``EVERY``; return the final objectives."""
    rng = random.Random(f"{config['x']:.6f}:{config['width']}")
    for index, step in enumerate(range(EVERY, STEPS + 1, EVERY)):
        if report is not None:
            quality = trained(config, rng, step)
            report(Checkpoint(key=f"u0:s{step}", index=index, user_index=0, user_id="synthetic", step=step,
                              trained_steps=step, metrics={"quality": quality, "quality_se": NOISE}))
    return {"quality": final(config)["quality"] + rng.gauss(0.0, NOISE), "quality_se": NOISE,
            "cost": cost(config), "steps": float(STEPS)}
