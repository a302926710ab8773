"""Rich consoles for the CLI: status on stderr, tables on stdout (wide when piped)."""

from __future__ import annotations

import sys

from rich.console import Console

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
