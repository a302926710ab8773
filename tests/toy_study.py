"""A cheap black-box study shared by the MLflow tests (no model, milliseconds per trial)."""

from __future__ import annotations

import socket

TOY_SPACE = """
name: {name}
objectives: {{quality: max, cost: min}}
parameters:
  mask: {{type: layer_mask, size: 3, default: all}}
  x: {{type: float, low: 0.0, high: 1.0}}
  k: {{type: int, low: 0, high: 4}}
optimizer: {{name: random, init_trials: 2, trials: {trials}, seed: {seed}}}
"""


def toy_space_text(name: str, trials: int, seed: int) -> str:
    """The toy space YAML with a study name, a trial budget and a seed."""
    return TOY_SPACE.format(name=name, trials=trials, seed=seed)


def objective(config):
    """Quality grows with x and the layers on; cost with k and the layers on."""
    layers = sum(config["mask"])
    return {"quality": config["x"] + 0.5 * layers, "cost": float(config["k"] + layers)}


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
