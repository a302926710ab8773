"""What counts as a number in reported values: the one test every module applies to a metric.

At the bottom of the house with :mod:`search.pareto`: it imports nothing of the project, so the
schema, the front maths, the optimisers and the reports can all use it.
"""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> bool:
    """True for a real number that is neither NaN nor infinite (``bool`` is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
