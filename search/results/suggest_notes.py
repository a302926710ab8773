"""What the optimiser's model found when it suggested a trial (``TrialRecord.suggest_notes``), in words.

The progress lines, ``status`` and MLflow show the same sentences. Today the only note is the
layer screen of ``saas-nehvi`` (:mod:`search.optimizers.saas.flag_screen`): which layers its surrogates
see one by one because a sparse model of the finished trials found them to matter.
"""

from __future__ import annotations

from typing import Any, Sequence

from search.study.study import TrialRecord


def layers_text(layers: Sequence[int]) -> str:
    """``"2, 9, 13"``, or ``"none"``."""
    return ", ".join(str(i) for i in layers) or "none"


def describe_notes(notes: dict[str, Any], space: Any) -> list[str]:
    """One sentence per note (none for an empty ``notes``)."""
    out = []
    for param, layers in sorted((notes.get("layers_seen") or {}).items()):
        size = getattr(space.parameters.get(param), "size", None) or 0
        if not layers:
            out.append(f"layer screen: no layer of {param} has shown an effect yet; the model sees only how many of "
                       f"its {size or 'layers'} are on")
        elif len(layers) == size:
            out.append(f"layer screen: every layer of {param} ({size}) has shown an effect; the model sees each one")
        else:
            of, other = (f" (of {size})", f"the other {size - len(layers)}") if size else ("", "the others")
            out.append(f"layer screen: the model sees {param} {layers_text(layers)} one by one{of}, "
                       f"{other} only by how many are on")
    return out


def suggested_line(number: int, sentence: str, label: str = "") -> str:
    """``"<label> trial 20 suggested; <sentence>"``: how the progress and ``status`` print a note."""
    return f"{label + ' ' if label else ''}trial {number} suggested; {sentence}"


def latest_notes(trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The last trial that carries notes, or None."""
    return next((t for t in reversed(trials) if t.suggest_notes), None)


def mlflow_tags(notes: dict[str, Any]) -> dict[str, str]:
    """Run tags of the notes: ``layers_seen.<mask parameter>`` = ``"2,9,13"``."""
    return {f"layers_seen.{param}": ",".join(map(str, layers)) or "none"
            for param, layers in (notes.get("layers_seen") or {}).items()}
