"""Rich consoles for the CLI: status on stderr, tables on stdout (wide when piped)."""

from __future__ import annotations

import sys
from typing import Mapping

from rich.console import Console

from runners.spec import SE_SUFFIX

PIPED_WIDTH = 200


def table_console():
    """A console for result tables on stdout: the terminal's width, or 200 columns when piped."""
    return Console(width=None if sys.stdout.isatty() else PIPED_WIDTH)


def status_console(quiet: bool = False):
    """A console for progress and status lines on stderr."""
    return Console(stderr=True, quiet=quiet, width=None if sys.stderr.isatty() else PIPED_WIDTH)


def fmt_value(value) -> str:
    """A metric for a table cell: ``-`` when missing, thousands separators for big numbers."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def fmt_metric(values: Mapping[str, float], metric: str) -> str:
    """``value ± se`` of a metric when the values carry its standard error (``<metric>_se``), else the value."""
    value, se = values.get(metric), values.get(f"{metric}{SE_SUFFIX}")
    if value is None:
        return "-"
    if se is None:
        return fmt_value(value)
    # equal per-query values leave a rounding error of the mean as their spread (4.4e-16): shown as 0
    return f"{fmt_value(value)} ± {0 if abs(se) <= 1e-9 * max(1.0, abs(value)) else se:.2g}"
