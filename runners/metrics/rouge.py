"""ROUGE-1 and ROUGE-L F-measures with Google's ``rouge_score`` package.

Stemming is on (``use_stemmer=True``), as DESIGN.md asks. LaMP's own evaluator
(``eval/evaluation.py``, through HF ``evaluate``) uses ``use_stemmer=False`` and reports the
median of bootstrap means, so LaMP generation scores computed here run slightly higher than the
benchmark's published numbers (stemming only adds matches) and are the plain mean over pairs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Sequence

from runners.metrics.base import Metric, check_aligned, register_metric

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

ROUGE_KEYS = ("rouge1", "rougeL")


@functools.lru_cache(maxsize=1)
def _scorer() -> RougeScorer:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def rouge_per_item(preds: Sequence[str], refs: Sequence[str]) -> dict[str, list[float]]:
    """ROUGE-1 and ROUGE-L F-measure of each prediction against its reference.

    Args:
        preds: Generated texts.
        refs: Reference texts, aligned with ``preds``.

    Returns:
        ``{"rouge1": [...], "rougeL": [...]}``, one value in [0, 1] per pair, in input order.

    Raises:
        DataError: If the lengths differ or both are empty.
    """
    check_aligned(preds, refs, "rouge")
    scorer = _scorer()
    rows = [scorer.score(target=ref, prediction=pred) for pred, ref in zip(preds, refs)]
    return {key: [row[key].fmeasure for row in rows] for key in ROUGE_KEYS}


def rouge_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1 and ROUGE-L F-measure over prediction/reference pairs.

    Args:
        preds: Generated texts.
        refs: Reference texts, aligned with ``preds``.

    Returns:
        ``{"rouge1": float, "rougeL": float}``, each in [0, 1].

    Raises:
        DataError: If the lengths differ or both are empty.
    """
    per_item = rouge_per_item(preds, refs)
    return {key: sum(values) / len(values) for key, values in per_item.items()}


@register_metric("rouge")
class RougeMetric(Metric):
    """ROUGE-1 and ROUGE-L F-measure (stemmed), averaged over pairs."""

    outputs = ("rouge1", "rougeL")
    per_query_outputs = outputs

    def compute(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, float]:
        """See :func:`rouge_scores`; ``context`` is ignored."""
        return rouge_scores(preds, refs)

    def per_query(self, preds: Sequence[str], refs: Sequence[str], **context: object) -> dict[str, list[float]]:
        """ROUGE-1 and ROUGE-L F-measure of each query."""
        return rouge_per_item(preds, refs)
