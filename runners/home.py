"""The tool's home directory, where models, pools, retrieval indexes and compile caches are kept."""

from __future__ import annotations

import os
from pathlib import Path

HOME_VARIABLE = "PERS_SEARCH_HOME"


def tool_home() -> Path:
    """``$PERS_SEARCH_HOME`` or ``~/.cache/pers-search`` (read at each call, not created)."""
    return Path(os.environ.get(HOME_VARIABLE) or "~/.cache/pers-search").expanduser()
