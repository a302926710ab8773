"""The :class:`Metric` base and its registry.

A metric plugs in with one decorator, ``@register_metric("name")``, and is looked up by name
with :func:`get_metric`. Metrics are stateless: the registry keeps classes and hands out a
fresh instance on each lookup.
"""

from __future__ import annotations

import abc
from typing import Callable, ClassVar, Sequence, TypeVar

from runners.errors import ConfigError, DataError
from runners.registry import Registry


MetricT = TypeVar("MetricT", bound="Metric")


class Metric(abc.ABC):
    """Scores generated texts against references.

    Subclasses set ``name`` through :func:`register_metric` and implement :meth:`compute`.
    """

    name: ClassVar[str] = ""
    outputs: ClassVar[tuple[str, ...]] = ()  # the keys :meth:`compute` returns
    per_query_outputs: ClassVar[tuple[str, ...]] = ()  # the keys :meth:`per_query` returns (means over queries)

    @abc.abstractmethod
    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """Score predictions against references.

        Args:
            preds: Generated texts, one per query.
            refs: Reference texts, aligned with ``preds``.
            **context: Metric-specific extras (``user_content`` for Persona-F1, ``task`` for
                LaMP classification).

        Returns:
            Metric values by key (a metric may report several, e.g. ``rouge1`` and ``rougeL``).
        """

    def per_query(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, list[float]]:
        """Per-query values of the outputs that are means over queries (their standard errors
        come from these); ``{}`` for a metric none of whose outputs is such a mean."""
        return {}


def register_metric(name: str) -> Callable[[type[MetricT]], type[MetricT]]:
    """Class decorator that registers a :class:`Metric` subclass under ``name``.

    Args:
        name: The lookup name; must not be registered yet.

    Returns:
        The decorator, which sets ``cls.name`` and returns the class unchanged otherwise.

    Raises:
        ConfigError: If ``name`` is already registered or the class is not a ``Metric``.
    """
    return METRICS.register(name)


def registered_metrics() -> list[str]:
    """Return the registered metric names, sorted."""
    return METRICS.names()


def get_metric(name: str) -> Metric:
    """Return a fresh instance of the metric registered under ``name``.

    Args:
        name: A registered metric name.

    Returns:
        The metric instance.

    Raises:
        ConfigError: If no metric is registered under ``name``; the message lists the known names.
    """
    cls = METRICS.get(name)
    return cls()


def check_aligned(preds: Sequence[str], refs: Sequence[str], metric: str) -> None:
    """Check that predictions and references are non-empty and of equal length.

    Args:
        preds: Generated texts.
        refs: Reference texts.
        metric: The metric name, for the message.

    Raises:
        DataError: If the lengths differ or there is nothing to score.
    """
    if len(preds) != len(refs):
        raise DataError(
            f"{metric}: predictions and references must align one to one, got {len(preds)} predictions "
            f"and {len(refs)} references; pass one reference per prediction"
        )
    if not preds:
        raise DataError(f"{metric}: nothing to score (0 predictions); pass at least one prediction")


METRICS: Registry[type[Metric]] = Registry(
    "metric", Metric, ConfigError,
    how_to_add="register a new one with @runners.metrics.register_metric({name}) on a Metric subclass")
