"""One writer per study: a lock file held by the process that runs the study.

``<study>/.pers-search.lock`` is locked with ``flock`` for as long as a ``run``/``resume`` (or
:func:`search.api.optimize`, :func:`search.execution.per_user.optimize_tasks`) writes the study, and holds
the holder's host, PID, start time and command line as JSON. The kernel releases an ``flock`` when
its process dies, however it dies, so a lock whose holder was killed is free: the next writer takes
it over and says whose it was. A second writer while the holder lives gets :class:`StudyLocked`
(exit code 2), naming the holder and how to wait for it or stop it.

Readers (``status``, ``pareto``, ``export``, ``ui``) never take the lock and never write; they ask
:func:`holder` whether a live process holds it, to tell trials in flight (``running``) from
trials a dead process left (``stale``). Asking opens the lock file read-only: no byte and no
modification time of the study directory changes.

Written by hand on ``fcntl`` rather than with the ``filelock`` package: ``filelock`` truncates the
lock file when it opens it, which would erase the holder's name that a second writer must show.
The lock is re-entrant within a process (a per-user cohort's run holds the cohort's lock and
each user's study takes its own), and advisory: it keeps pers-search processes apart, on one
machine or on a shared file system whose ``flock`` works across machines (NFSv4 does; a study
directory on a file system without working locks is one writer's only).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from search.errors import StudyError

try:
    import fcntl
except ImportError:  # not POSIX: no locking (one writer is then the user's to keep)
    fcntl = None

LOCK_FILE = ".pers-search.lock"


class StudyLocked(StudyError):
    """Another live process is writing the study (exit code 2: wait for it, or stop it)."""


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a study's lock, as its lock file says."""

    host: str = "?"
    pid: int = 0
    started_at: float = 0.0
    command: str = ""

    @classmethod
    def read(cls, path: Path) -> "Holder | None":
        """The holder written in a lock file, or None when it is empty or unreadable."""
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "null")
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return cls(str(data.get("host", "?")), int(data.get("pid", 0) or 0), float(data.get("started_at", 0) or 0),
                   str(data.get("command", "")))

    def describe(self) -> str:
        """``process 1234 on host (since 12:00:01, `pers-search run s`)``."""
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started_at)) if self.started_at else "?"
        command = f", `{self.command}`" if self.command else ""
        return f"process {self.pid} on {self.host} (since {since}{command})"


@dataclass
class _Held:
    fd: int
    count: int
    created_dir: bool


_HELD: dict[Path, _Held] = {}


def lock_path(directory: str | Path) -> Path:
    """The lock file of a study (or per-user cohort) directory."""
    return Path(directory) / LOCK_FILE


def holder(directory: str | Path) -> Holder | None:
    """The live process holding the study's lock, or None when none does. Never writes.

    Within the process that holds it, the answer is this process.
    """
    path = lock_path(directory).resolve() if Path(directory).exists() else lock_path(directory)
    if path in _HELD:
        return Holder.read(path) or _me()
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return Holder.read(path) or Holder()
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def acquire(directory: str | Path, what: str, fix: str, on_takeover: Callable[[str], None] | None = None) -> Path:
    """Take the study's lock for this process (re-entrant), creating the directory if needed.

    Args:
        directory: the study (or cohort) directory.
        what: how the study is named in messages (``study 's' in studies``).
        fix: what a user whose second writer is refused should do once the holder is gone
            (``pers-search resume s``).
        on_takeover: told, in one line, when the lock was left by a process that died.

    Returns:
        The resolved lock path (give it to :func:`release`).

    Raises:
        StudyLocked: a live process holds it.
    """
    directory = Path(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    path = lock_path(directory).resolve()
    if path in _HELD:
        _HELD[path].count += 1
        return path
    if fcntl is None:
        _HELD[path] = _Held(-1, 1, created)
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        owner = Holder.read(path) or Holder()
        raise StudyLocked(f"{what} is being written by {owner.describe()}; one process writes a study at a time: "
                          f"wait for it to end (or stop it: `kill {owner.pid}`, finished trials are kept), then "
                          f"{fix}") from None
    previous = Holder.read(path)
    if previous is not None and on_takeover is not None and (previous.pid, previous.host) != (os.getpid(), _host()):
        on_takeover(f"{what}: taking over the lock left by {previous.describe()}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_me().__dict__).encode(), 0)
    _HELD[path] = _Held(fd, 1, created)
    return path


def release(path: Path) -> None:
    """Release a lock taken by :func:`acquire` (the last release of a re-entrant hold unlocks it).

    A directory that :func:`acquire` created and that holds nothing but the lock file (a run that
    stopped before its first save) is removed with it: nothing is left that the user did not have.
    """
    held = _HELD.get(path)
    if held is None:
        return
    held.count -= 1
    if held.count > 0:
        return
    del _HELD[path]
    empty = held.created_dir and [p.name for p in path.parent.iterdir()] == [LOCK_FILE]
    if empty:
        path.unlink(missing_ok=True)
    if held.fd >= 0:
        if not empty:
            os.ftruncate(held.fd, 0)  # a clean end leaves no holder's name: the next writer has nothing to take over
        os.close(held.fd)
    if empty:
        try:
            path.parent.rmdir()
        except OSError:
            pass


class StudyLock:
    """``with StudyLock(directory, what, fix):`` holds the study's lock for the block."""

    def __init__(self, directory: str | Path, what: str, fix: str,
                 on_takeover: Callable[[str], None] | None = None) -> None:
        self.directory, self.what, self.fix, self.on_takeover = Path(directory), what, fix, on_takeover
        self.path: Path | None = None

    def __enter__(self) -> "StudyLock":
        self.path = acquire(self.directory, self.what, self.fix, self.on_takeover)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            release(self.path)
            self.path = None


def holds(directory: str | Path) -> bool:
    """True when this process holds the study's lock."""
    return lock_path(directory).resolve() in _HELD if Path(directory).exists() else False


def _host() -> str:
    return socket.gethostname()


def _me() -> Holder:
    argv = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    return Holder(_host(), os.getpid(), time.time(), " ".join(argv)[:300])


def lock_info(directory: str | Path) -> dict[str, Any] | None:
    """The live holder of a study's lock as JSON-ready data (``status --json``), or None."""
    owner = holder(directory)
    return None if owner is None else dict(owner.__dict__)


def writer_lock(directory: Path, what: str, fix: str) -> StudyLock:
    """The study's lock for this process as its one writer (a takeover of a dead holder's lock is warned)."""
    return StudyLock(directory, what, fix, on_takeover=_warn_takeover)


def _warn_takeover(line: str) -> None:
    warnings.warn(line, StaleLockWarning, stacklevel=4)


class StaleLockWarning(UserWarning):
    """A study's lock was left by a process that died; this process took it over."""
