"""LaMP's classification and rating metrics, as the benchmark's ``eval/evaluation.py`` computes them.

Predictions and labels are stripped. Classification tasks (LaMP_1, LaMP_2 movie tags, LaMP_2N
news categories) map each string to its index in the task's fixed label list, anything else to
-1, and report accuracy and macro-F1 over ``labels=range(len(labels))``, so an invalid
prediction is always wrong and is not a class of its own. LaMP_3 parses the rating with
``float``; an unparsable prediction scores as the worse of the two extremes 1 and 5.

LaMP's generation tasks (4-7) use ROUGE; see :mod:`runners.metrics.rouge`, which stems, unlike
LaMP's evaluator.
"""

from __future__ import annotations

import math
from typing import Sequence

from runners.data.pairs import LAMP_LABELS  # one label table for data and scoring
from runners.errors import ConfigError, DataError
from runners.metrics.base import Metric, check_aligned, register_metric


def _task_labels(task: object) -> tuple[str, ...]:
    try:
        return LAMP_LABELS[task]  # type: ignore[index]
    except (KeyError, TypeError) as err:
        raise ConfigError(
            f"lamp_classification: task {task!r} has no label list; use one of {', '.join(LAMP_LABELS)}"
        ) from err


def classification_scores(task: str, preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of a LaMP classification task.

    Args:
        task: ``"LaMP_1"``, ``"LaMP_2"`` (movie tags) or ``"LaMP_2N"`` (news categories).
        preds: Generated labels; stripped, and -1 (always wrong) when not in the label list.
        refs: Gold labels; stripped, and must be in the label list.

    Returns:
        ``{"accuracy": float, "f1": float}``, both in [0, 1].

    Raises:
        ConfigError: If ``task`` is not a classification task.
        DataError: If the lengths differ, nothing is given, or a reference is not a valid label.
    """
    from sklearn.metrics import accuracy_score, f1_score

    labels = _task_labels(task)
    check_aligned(preds, refs, f"{task} classification")
    index = {label: i for i, label in enumerate(labels)}
    y_pred = [index.get(pred.strip(), -1) for pred in preds]
    y_true = []
    for ref in refs:
        if ref.strip() not in index:
            raise DataError(f"{task}: reference label {ref!r} is not one of {list(labels)}; fix the gold outputs file")
        y_true.append(index[ref.strip()])
    # zero_division=0 gives the values of sklearn's default ("warn" -> 0) without the warnings.
    f1 = f1_score(y_true, y_pred, labels=list(range(len(labels))), average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)), "f1": float(f1)}


def _parse_rating(pred: str, gold: float) -> float:
    try:
        value = float(pred.strip())
    except ValueError:
        value = math.nan
    if math.isfinite(value):
        return value
    return 1.0 if abs(1.0 - gold) > abs(5.0 - gold) else 5.0


def rating_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """MAE and RMSE of LaMP_3 (product rating, 1-5).

    A prediction that ``float`` cannot parse scores as the worse extreme for its gold rating:
    1.0 when ``|1 - y| > |5 - y|``, else 5.0 (LaMP's rule). Unlike LaMP, "nan" and "inf" count
    as unparsable too, so one bad string cannot make the whole score NaN.

    Args:
        preds: Generated ratings as text.
        refs: Gold ratings as text.

    Returns:
        ``{"mae": float, "rmse": float}``.

    Raises:
        DataError: If the lengths differ, nothing is given, or a reference is not a number.
    """
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    check_aligned(preds, refs, "LaMP_3 rating")
    y_true = []
    for ref in refs:
        try:
            y_true.append(float(ref.strip()))
        except ValueError as err:
            raise DataError(f"LaMP_3: reference rating {ref!r} is not a number; fix the gold outputs file") from err
    y_pred = [_parse_rating(pred, gold) for pred, gold in zip(preds, y_true)]
    mae = float(mean_absolute_error(y_true, y_pred))
    rmse = math.sqrt(mean_squared_error(y_true, y_pred))
    return {"mae": mae, "rmse": rmse}


@register_metric("lamp_classification")
class LampClassificationMetric(Metric):
    """LaMP accuracy and macro-F1; needs ``task`` (LaMP_1, LaMP_2, LaMP_2N) in the context."""

    outputs = ("accuracy", "f1")

    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """See :func:`classification_scores`."""
        return classification_scores(context.get("task"), preds, refs)  # type: ignore[arg-type]


@register_metric("lamp_rating")
class LampRatingMetric(Metric):
    """LaMP_3 MAE and RMSE."""

    outputs = ("mae", "rmse")

    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """See :func:`rating_scores`; ``context`` is ignored."""
        return rating_scores(preds, refs)
