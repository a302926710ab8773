"""File names made from free text (user ids, study and model names)."""

from __future__ import annotations


def safe_name(text: str, limit: int = 80, fallback: str = "user") -> str:
    """A file-name-safe version of ``text``: letters, digits and ``-_.`` kept, anything else ``_``.

    No result can leave a directory: a slash becomes ``_`` and a name made only of dots (``..``)
    becomes ``fallback``, as does an empty one. At most ``limit`` characters.
    """
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:limit]
    return name if name.strip(".") else fallback
