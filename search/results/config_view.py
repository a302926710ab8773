"""A trial's configuration as the outputs show it: only what ran, layer masks as layer indices.

A study keeps every trial's full raw configuration (``study.json``, what the optimiser resumes
from). Every output that shows one (the progress lines, the trials and front tables, ``pareto``
CSV and JSON, ``serving.yaml``'s ``config``, the trial runs' MLflow params and ``config`` tag)
goes through this module, so that one rule, :func:`active_config`, decides what is left out:

- a parameter whose ``when:`` condition does not hold (:meth:`search.space.Space.is_active`);
- a setting the runner ignored in that trial (:func:`runners.spec.inert_keys`): the memory's
  layers, rank and learning-rate scale without memory (``lora.count=0`` or no layer on), the
  retriever without retrieval (``rag.k=0``).

Layer masks (one 0/1 flag per layer) read as index ranges in text (``2,12,22-24``; ``-`` when no
layer is on) and as an index list in data, beside the count of layers on (``lora.layers`` ->
``lora.n_layers``).
"""

from __future__ import annotations

from typing import Any, Mapping

from runners.spec import index_ranges, inert_keys
from search.space import LayerMaskParam, Space

NOTHING = "-"  # a table cell, or the ranges of a mask with no layer on


def active_config(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of ``config`` that did something in the trial, with their raw values.

    Args:
        space: the study's space (its ``when:`` conditions).
        config: a trial's flat configuration, as the study stores it.

    Returns:
        A new dict in ``config``'s order, without the inactive parameters.
    """
    inert = inert_keys(config)
    return {key: value for key, value in config.items()
            if key not in inert and (key not in space.parameters or space.is_active(key, config))}


def is_mask(value: Any) -> bool:
    """True for a layer mask (the only list a configuration holds)."""
    return isinstance(value, (list, tuple))


def layer_indices(mask: Any) -> list[int]:
    """The indices of the layers a 0/1 mask turns on."""
    return [i for i, flag in enumerate(mask) if flag]


def layer_ranges(mask: Any) -> str:
    """A mask as index ranges: ``2,12,22-24``; ``-`` when no layer is on."""
    return index_ranges(layer_indices(mask)) or NOTHING


def count_key(name: str) -> str:
    """Where the count of layers on goes beside a mask: ``lora.layers`` -> ``lora.n_layers``, ``mask`` -> ``n_mask``."""
    head, _, last = name.rpartition(".")
    return f"{head}.n_{last}" if head else f"n_{last}"


def yes_no(flag: Any) -> str:
    """A boolean for a table cell: ``yes``/``no`` (``-`` for None)."""
    return NOTHING if flag is None else ("yes" if flag else "no")


def param_names(space: Space) -> list[str]:
    """The params a trial run can carry, in the space's order: each layer mask followed by its count
    of layers on (``lora.layers``, ``lora.n_layers``), for the MLflow views' columns."""
    names: list[str] = []
    for name, param in space.parameters.items():
        names += [name, count_key(name)] if isinstance(param, LayerMaskParam) else [name]
    return names


def describe(space: Space, config: Mapping[str, Any]) -> str:
    """One line for tables, progress lines and tags: ``lora.layers=2,12,22-24 lora.count=2 rag.k=0``."""
    return " ".join(f"{key}={_text(value)}" for key, value in active_config(space, config).items())


def config_record(space: Space, config: Mapping[str, Any]) -> dict[str, Any]:
    """The active configuration for JSON and CSV: a mask as its index list followed by the count of
    layers on (``lora.layers: [2, 12], lora.n_layers: 2``), other values as they are."""
    out: dict[str, Any] = {}
    for key, value in active_config(space, config).items():
        if is_mask(value):
            out[key] = layer_indices(value)
            out[count_key(key)] = len(out[key])
        else:
            out[key] = value
    return out


def config_params(space: Space, config: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params of a trial: the active configuration as text, a mask as index ranges
    (``lora.layers=2,12,22-24``, ``-`` for none) beside the count of layers on (``lora.n_layers``)."""
    params: dict[str, str] = {}
    for key, value in config_record(space, config).items():
        params[key] = (index_ranges(value) or NOTHING) if is_mask(value) else _param_text(value)
    return params


def _text(value: Any) -> str:
    if is_mask(value):
        return layer_ranges(value)
    return yes_no(value) if isinstance(value, bool) else str(value)


def _param_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
