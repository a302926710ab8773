"""Metrics of one trial: ROUGE, Persona-F1, copy rate, LaMP classification and rating, storage.

:func:`score` returns the values appropriate to a task. New metrics plug in with
``@register_metric("name")`` on a :class:`Metric` subclass and are looked up with
:func:`get_metric`.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from runners.errors import ConfigError
from runners.spec import SE_SUFFIX
from runners.metrics.base import Metric, get_metric, register_metric, registered_metrics
from runners.metrics.content import UserContent
from runners.metrics.copying import content_ngrams, copy_rate
from runners.metrics.lamp import LAMP_LABELS, classification_scores, rating_scores
from runners.metrics.persona import (
    content_counter,
    persona_f1,
    persona_f1_mean,
    tokenize,
)
from runners.metrics.rouge import rouge_per_item, rouge_scores
from runners.metrics.storage import file_bytes, safetensors_bytes

_GENERATION = ("rouge",)

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "generic": _GENERATION,
    "demo": _GENERATION,
    "meddialogue": _GENERATION,
    "LaMP_1": ("rouge", "lamp_classification"),
    "LaMP_2": ("rouge", "lamp_classification"),
    "LaMP_2N": ("rouge", "lamp_classification"),
    "LaMP_3": ("rouge", "lamp_rating"),
    "LaMP_4": _GENERATION,
    "LaMP_5": _GENERATION,
    "LaMP_6": _GENERATION,
    "LaMP_7": _GENERATION,
}
"""Registered metric names computed for each task (Persona-F1 and the copy rate are added when the
user's content is given: :data:`CONTENT_METRICS`)."""

CONTENT_METRICS = ("persona_f1", "copy_rate")
"""Metrics of an answer against the user's own text: overlap of words (Persona-F1) and verbatim
reuse of phrases (copy rate). Reported together, since a high Persona-F1 with a high copy rate
is the user's data played back, not personalization."""


def user_content_of(text: str) -> UserContent:
    """A user's profile and history text prepared for :data:`CONTENT_METRICS` (once per user)."""
    return UserContent(content_counter(text), content_ngrams(text))


def _content_names(user_content: str | Counter | UserContent | None) -> tuple[str, ...]:
    """The content metrics that ``user_content`` can feed (a bare Counter has no word order: no copy rate)."""
    if user_content is None:
        return ()
    return ("persona_f1",) if isinstance(user_content, Counter) else CONTENT_METRICS

METRIC_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "rouge1": (0.0, 1.0), "rougeL": (0.0, 1.0), "persona_f1": (0.0, 100.0), "copy_rate": (0.0, 1.0),
    "accuracy": (0.0, 1.0), "f1": (0.0, 1.0), "mae": (0.0, None), "rmse": (0.0, None),
    "storage_bytes": (0.0, None), "loss": (0.0, None), "heldout_loss": (0.0, None),
}
"""The range each reported metric can take (None: unbounded on that side); the ideal point of a
study's hypervolume box is the bound its direction points to (search.results.report)."""


def metric_bounds(name: str) -> tuple[float | None, float | None]:
    """``(low, high)`` of a reported metric, ``(None, None)`` when its range is not known."""
    return METRIC_BOUNDS.get(name, (None, None))


def score_names(task: str) -> list[str]:
    """The metric keys :func:`score` returns for ``task`` with the user's content given (the
    :data:`CONTENT_METRICS` included; checked before a study starts)."""
    names = TASK_METRICS.get(task)
    if names is None:
        raise ConfigError(f"unknown task {task!r} for scoring; use one of {', '.join(TASK_METRICS)}")
    metrics = [type(get_metric(name)) for name in (*names, *CONTENT_METRICS)]
    return [key for m in metrics for key in m.outputs] + [f"{key}{SE_SUFFIX}" for m in metrics
                                                          for key in m.per_query_outputs]


def score(
    task: str,
    preds: Sequence[str],
    refs: Sequence[str],
    user_content: str | Counter | UserContent | None = None,
) -> dict[str, float]:
    """Compute the metrics appropriate to a task.

    Always ``rouge1`` and ``rougeL`` (in [0, 1]); ``persona_f1`` (percent) and ``copy_rate``
    (a fraction) when ``user_content`` is given (a bare Counter gives Persona-F1 only); ``accuracy`` and ``f1`` (macro) for LaMP_1, LaMP_2 and LaMP_2N; ``mae`` and
    ``rmse`` for LaMP_3.

    Args:
        task: One of the keys of :data:`TASK_METRICS`.
        preds: Generated texts.
        refs: Reference texts, aligned with ``preds``.
        user_content: The user's profile and history text, its :func:`user_content`, or its
            :func:`content_counter` (Persona-F1 only).

    Returns:
        Metric values by name.

    Raises:
        ConfigError: If ``task`` is unknown.
        DataError: If ``preds`` and ``refs`` do not align or a reference is invalid for the task.
    """
    try:
        names = TASK_METRICS[task]
    except KeyError as err:
        raise ConfigError(f"unknown task {task!r} for scoring; use one of {', '.join(TASK_METRICS)}") from err
    names = (*names, *_content_names(user_content))
    values: dict[str, float] = {}
    for name in names:
        values.update(get_metric(name).compute(preds, refs, task=task, user_content=user_content))
    return values


def score_queries(
    task: str,
    preds: Sequence[str],
    refs: Sequence[str],
    user_content: str | Counter | UserContent | None = None,
) -> dict[str, list[float]]:
    """Per-query values of the metrics of :func:`score` that are means over queries (ROUGE, Persona-F1,
    copy rate).

    A trial's standard errors are bootstrapped from these (``runners.metrics.uncertainty``).
    """
    names = (*TASK_METRICS.get(task, _GENERATION), *_content_names(user_content))
    out: dict[str, list[float]] = {}
    for name in names:
        out.update(get_metric(name).per_query(preds, refs, task=task, user_content=user_content))
    return out


__all__ = [
    "CONTENT_METRICS",
    "LAMP_LABELS",
    "TASK_METRICS",
    "Metric",
    "UserContent",
    "classification_scores",
    "content_counter",
    "content_ngrams",
    "copy_rate",
    "file_bytes",
    "get_metric",
    "persona_f1",
    "persona_f1_mean",
    "rating_scores",
    "register_metric",
    "registered_metrics",
    "rouge_per_item",
    "rouge_scores",
    "score_queries",
    "safetensors_bytes",
    "score",
    "score_names",
    "tokenize",
    "user_content_of",
]
