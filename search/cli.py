"""The ``pers-search`` command line.

AutoML for personalizing language models: run trials, baselines and multi-objective searches
over LoRA memory, retrieval and Per-Pcs; inspect fronts in MLflow; export configs to serving.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
import warnings
from importlib import metadata
from pathlib import Path
from typing import Sequence

from runners.allocator import PRELOAD, preloaded_environment
from runners.errors import RunnerError
from search.commands import importance, mlflow_commands, pool, prompt, run, trial
from search.errors import SearchError
from search.execution.usage_reporting import usage_reporting_off


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        print("pers-search: error: choose a command (the list above); `pers-search COMMAND --help` tells more",
              file=sys.stderr)
        return 2
    usage_reporting_off()  # no usage data from MLflow, Ray or the HF hub, in this process or those it starts
    warnings.formatwarning = _one_line_warning
    try:
        if argv is None and getattr(args, "trains", False):
            restart_with_allocator()  # the console script: a command that trains runs on mimalloc
        return int(args.handler(args) or 0)
    except (SearchError, RunnerError) as err:
        print(f"pers-search: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except KeyboardInterrupt:
        print("pers-search: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk, a permission, a vanished file: say which, no traceback
        print(f"pers-search: error: {os_problem(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, the traceback on request
        wrapped = os_error_within(err)
        if wrapped is not None:
            print(f"pers-search: error: {os_problem(wrapped)}", file=sys.stderr)
            return 1
        return _unexpected(err)


_PACKAGES = tuple(str(Path(__file__).resolve().parents[1] / package) for package in ("runners", "search"))


def restart_with_allocator() -> None:
    """Start this process again from its start with the allocator of :mod:`runners.allocator` preloaded,
    unless it has it already or ``PERS_SEARCH_ALLOCATOR=system``; where the restart fails, go on with
    the system's malloc and say so.

    Raises:
        ConfigError: ``PERS_SEARCH_ALLOCATOR`` names no allocator.
    """
    env = preloaded_environment()
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, env)
    except OSError as err:
        warnings.warn(f"could not start again with {PRELOAD}={env[PRELOAD]} ({err}); going on with the system's "
                      "malloc (set PERS_SEARCH_ALLOCATOR=system to skip the attempt)", RuntimeWarning, stacklevel=2)


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    """The project's own warnings as one line, ``pers-search: warning: ...`` (not the source line under it);
    other libraries' warnings as Python prints them."""
    if str(Path(filename).resolve()).startswith(_PACKAGES):
        return f"pers-search: warning: {message}\n"
    return _PYTHON_FORMAT(message, category, filename, lineno, line)


_PYTHON_FORMAT = warnings.formatwarning
_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error_within(err: Exception) -> OSError | None:
    """The operating-system error a library wrapped in its own exception (safetensors' Rust writer
    reports a full disk as ``SafetensorError: ... No space left on device (os error 28)``), or None."""
    for item in (err, err.__cause__, err.__context__):
        if isinstance(item, OSError):
            return item
        match = _OS_ERROR.search(str(item or ""))
        if match:
            code = int(match.group(1))
            return OSError(code, os.strerror(code))
    return None


def os_problem(err: OSError) -> str:
    """An operating-system error as one line: what happened, to which file, and what to do."""
    where = f" ({err.filename})" if err.filename else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "the disk is full: free space on it, then run the command again (`pers-search resume` for a study)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "fix the permissions or pick another directory (--study-dir, --out)"
    else:
        fix = "check the path"
    return f"{err.strerror or err}{where}; {fix}; finished trials are saved"


def _unexpected(err: Exception) -> int:
    """An error nobody anticipated: one line naming it, the traceback with ``PERS_SEARCH_DEBUG=1``."""
    if os.environ.get("PERS_SEARCH_DEBUG"):
        traceback.print_exc()
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    place = f" at {os.path.basename(frame.filename)}:{frame.lineno}" if frame else ""
    print(f"pers-search: error: unexpected {type(err).__name__}{place}: {str(err).splitlines()[0] if str(err) else ''}"
          "; rerun with PERS_SEARCH_DEBUG=1 for the traceback and report it", file=sys.stderr)
    return 1


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, unless its help already says it (or it is a switch or None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, True, [], argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults (sub-command parsers inherit the class)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The parser with every sub-command registered by its module."""
    parser = Parser(prog="pers-search", description=__doc__.split("\n\n", 1)[1].strip())
    parser.add_argument("--version", action="version", version=f"pers-search {_version()}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    for module in (trial, run, mlflow_commands, importance, pool, prompt):
        module.add_parsers(sub)
    return parser


def _version() -> str:
    try:
        return metadata.version("pers-search")
    except metadata.PackageNotFoundError:  # a checkout used without installing it
        return "unknown (not installed)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
