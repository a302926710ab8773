"""Configuration <-> unit-cube vector, and canonical configuration keys.

Each searched parameter becomes one or more dimensions in ``[0, 1]``:

- a layer mask: one binary dimension per layer (0 or 1);
- an int: one dimension, ``(t(v) - t(low)) / (t(high) - t(low))`` with ``t = log`` when ``log``;
  its grid of allowed values is exact, except for ranges wider than ``MAX_INT_GRID`` values,
  which are relaxed to a continuous dimension and rounded;
- a float: one continuous dimension (log scale optional);
- a choice: one *ordinal* dimension, value index / (count - 1). Numeric values are sorted so the
  order means something (ranks 8 < 16 < 32); string values are flagged as categorical so a
  mixed acquisition optimiser may jump between any two of them. Ordinal rather than one-hot
  keeps the dimension count low (the SAAS prior pays per dimension and one-hot needs an
  exactly-one constraint the acquisition optimisers don't express).

Fixed parameters and parameters with a single value have no dimension. Inactive conditional
parameters are set to their default before encoding, so equivalent configurations encode to the
same vector and share one :func:`config_key`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from search.errors import SpaceError
from search.space import (
    ChoiceParam,
    FixedParam,
    FloatParam,
    IntParam,
    LayerMaskParam,
    Space,
)

if TYPE_CHECKING:
    import torch

MAX_INT_GRID = 256


@dataclass(frozen=True)
class Dim:
    """One dimension of the encoded space.

    Attributes:
        param: the parameter name.
        kind: ``binary``, ``int``, ``ordinal``, ``categorical`` or ``float``.
        grid: the allowed encoded values (sorted), or None for a continuous dimension.
        index: the layer index for a layer-mask dimension, else None.
    """

    param: str
    kind: str
    grid: tuple[float, ...] | None
    index: int | None = None


def canonical(space: Space, config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with missing parameters filled and inactive ones set to their default.

    Layer masks become lists of 0/1 ints, ints become ints, so that equal configurations compare
    (and serialise) equal.

    Raises:
        SpaceError: the space is not bound, or a value has the wrong shape.
    """
    out: dict[str, Any] = {}
    for name, param in space.parameters.items():
        value = config.get(name, space.default_of(name)) if not isinstance(param, FixedParam) else param.value
        out[name] = _normalise(name, param, value)
    for name in space.parameters:
        if not space.is_active(name, out):
            out[name] = _normalise(name, space.parameters[name], space.default_of(name))
    return out


def _normalise(name: str, param: Any, value: Any) -> Any:
    if isinstance(param, LayerMaskParam):
        flags = [int(bool(v)) for v in value]
        if len(flags) != param.size:
            raise SpaceError(f"config {name}: mask has {len(flags)} flags, the model has {param.size} layers")
        return flags
    if isinstance(param, IntParam):
        return int(round(value))
    if isinstance(param, FloatParam):
        return float(value)
    return value


def config_key(space: Space, config: dict[str, Any]) -> str:
    """A canonical string key of a configuration, equal for equivalent configurations."""
    return json.dumps(canonical(space, config), sort_keys=True, separators=(",", ":"))


class Encoder:
    """Maps configurations of a bound space to vectors in ``[0, 1]^d`` and back.

    Args:
        space: a bound space (layer masks know their size).

    Raises:
        SpaceError: the space is not bound.
    """

    def __init__(self, space: Space) -> None:
        space.defaults()  # raises when unbound
        self.space = space
        self.dims: list[Dim] = [dim for name, param in space.parameters.items() for dim in _dims(name, param)]

    @property
    def d(self) -> int:
        """The number of dimensions."""
        return len(self.dims)

    def discrete_dims(self) -> dict[int, list[float]]:
        """Ordered discrete dimensions (binary, int, ordinal): index -> allowed encoded values."""
        return {i: list(d.grid) for i, d in enumerate(self.dims) if d.grid is not None and d.kind != "categorical"}

    def categorical_dims(self) -> dict[int, list[float]]:
        """Unordered dimensions (string choices): index -> allowed encoded values."""
        return {i: list(d.grid) for i, d in enumerate(self.dims) if d.kind == "categorical"}

    def encode(self, config: dict[str, Any]) -> list[float]:
        """Encode one configuration (canonicalised first) as a list of ``d`` floats in [0, 1]."""
        config = canonical(self.space, config)
        return [self._encode_dim(dim, config[dim.param]) for dim in self.dims]

    def encode_many(self, configs: Sequence[dict[str, Any]]) -> "torch.Tensor":
        """Encode configurations as a float64 tensor of shape ``(len(configs), d)``."""
        import torch

        return torch.tensor([self.encode(c) for c in configs], dtype=torch.float64).reshape(len(configs), self.d)

    def decode(self, x: Sequence[float]) -> dict[str, Any]:
        """Decode one vector (relaxed values are snapped to the nearest allowed value)."""
        config: dict[str, Any] = {}
        for dim, value in zip(self.dims, [float(v) for v in x]):
            decoded = self._decode_dim(dim, _snap(dim, value))
            if dim.index is None:
                config[dim.param] = decoded
            else:
                config.setdefault(dim.param, []).append(decoded)
        return canonical(self.space, config)

    def from_uniform(self, u: Sequence[float]) -> dict[str, Any]:
        """Decode a uniform draw so that every grid value gets an equal share of ``[0, 1)``.

        Used by the quasi-random optimisers (nearest-value snapping would give the two end values
        of a grid half the weight of the others).
        """
        x = []
        for dim, value in zip(self.dims, [float(v) for v in u]):
            if dim.grid is None:
                x.append(min(max(value, 0.0), 1.0))
            else:
                x.append(dim.grid[min(int(value * len(dim.grid)), len(dim.grid) - 1)])
        return self.decode(x)

    # ----------------------------------------------------------------- per dimension
    def _encode_dim(self, dim: Dim, value: Any) -> float:
        param = self.space.parameters[dim.param]
        if isinstance(param, LayerMaskParam):
            return float(value[dim.index])
        if isinstance(param, ChoiceParam):
            order = _choice_order(param)
            return order.index(value) / (len(order) - 1)
        return _to_unit(param, value)

    def _decode_dim(self, dim: Dim, x: float) -> Any:
        param = self.space.parameters[dim.param]
        if isinstance(param, LayerMaskParam):
            return int(round(x))
        if isinstance(param, ChoiceParam):
            order = _choice_order(param)
            return order[int(round(x * (len(order) - 1)))]
        value = _from_unit(param, x)
        return int(round(value)) if isinstance(param, IntParam) else value


def _dims(name: str, param: Any) -> list[Dim]:
    if isinstance(param, LayerMaskParam):
        return [] if param.fixed else [Dim(name, "binary", (0.0, 1.0), i) for i in range(param.size or 0)]
    if isinstance(param, IntParam):
        count = param.high - param.low + 1
        if count == 1:
            return []
        grid = None if count > MAX_INT_GRID else tuple(_to_unit(param, v) for v in range(param.low, param.high + 1))
        return [Dim(name, "int", grid)]
    if isinstance(param, FloatParam):
        return [] if param.low == param.high else [Dim(name, "float", None)]
    if isinstance(param, ChoiceParam):
        k = len(param.values)
        if k == 1:
            return []
        return [Dim(name, "ordinal" if param.numeric else "categorical", tuple(i / (k - 1) for i in range(k)))]
    return []


def _choice_order(param: ChoiceParam) -> list[Any]:
    return sorted(param.values) if param.numeric else list(param.values)


def _to_unit(param: IntParam | FloatParam, value: float) -> float:
    t = math.log if param.log else float
    lo, hi = t(param.low), t(param.high)
    return 0.0 if hi == lo else (t(value) - lo) / (hi - lo)


def _from_unit(param: IntParam | FloatParam, x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    if param.log:
        value = math.exp(math.log(param.low) + x * (math.log(param.high) - math.log(param.low)))
    else:
        value = param.low + x * (param.high - param.low)
    return min(max(value, param.low), param.high)  # rounding (-1 + 1 * (1 - 1e-40) is 0.0) stays in bounds


def _snap(dim: Dim, x: float) -> float:
    if dim.grid is None:
        return min(max(x, 0.0), 1.0)
    return min(dim.grid, key=lambda g: abs(g - x))
