"""Scratch directories a trial writes to and removes, swept up by the next trial when their owner was killed.

A trial that keeps no adapters still exports each user's adapter (its storage is measured from the
file) into a temporary directory and removes it afterwards. A trial killed on the way (a timeout,
a cancelled or lost Ray task, a killed driver taking its workers along) cannot remove anything, and
its directory stays in the system temp for good, with whatever the trial had written into it.

So every scratch directory carries a lock file that its process holds (``flock``) while it lives
(beside the ``work/`` directory a caller gets, so that what it writes there is only its own).
The kernel releases that lock when the process dies, however it dies. Before a trial makes its own
directory, it removes every scratch directory whose lock it can take: their owners are gone. The
lock file is locked before it gets its name, so a directory being made is never seen unlocked.
Directories without a lock file (made by an older version, or by something else that chose the
prefix) are left alone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # not POSIX: no sweeping, directories are still removed by their own trial
    fcntl = None

PREFIX = "pers-search-adapter-"
LOCK = ".owner.lock"


def sweep_stale(root: str | Path | None = None, prefix: str = PREFIX) -> list[Path]:
    """Remove the scratch directories under ``root`` (the system temp) whose owner process has died.

    Returns:
        The directories removed.
    """
    if fcntl is None:
        return []
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(prefix + "*"):
        try:
            fd = os.open(path / LOCK, os.O_RDWR)
        except OSError:  # no lock file (not ours, or older), or gone meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its owner is alive
            continue
        else:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def scratch_dir(root: str | Path | None = None, prefix: str = PREFIX) -> Iterator[Path]:
    """A new empty directory (``<root>/<prefix>XXXX/work``; ``root`` the system temp), removed with its
    parent on exit; stale ones are swept first."""
    sweep_stale(root, prefix)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    fd = None
    try:
        if fcntl is not None:
            fd, name = tempfile.mkstemp(prefix=".owner-", dir=path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(name, path / LOCK)  # visible to sweepers only once locked
        (path / "work").mkdir()
        yield path / "work"
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if fd is not None:
            os.close(fd)
