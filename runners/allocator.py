"""Memory a trial freed goes back to the system: glibc's ``malloc_trim`` after each user.

glibc serves a large allocation with ``mmap`` (returned to the system when freed) only above its
mmap threshold, and raises that threshold to the size of every mmapped block freed, up to 32 MB.
A process that trains and evaluates user after user frees tensors of many sizes, so after the
first user most tensors land on the heap between small long-lived objects, and the pages they
held stay resident after they are freed: a per-user study's memory grew about 22 MB a user on the
embedded model. ``malloc_trim(0)`` hands every whole free page of the heap back to the system
(``madvise``), in milliseconds, so :func:`runners.trial.run_trial` calls it after each user.

Fixing the threshold instead (``mallopt(M_MMAP_THRESHOLD, 128 KiB)``) held the growth as well but
made every large tensor a fresh ``mmap``: 14x the system time of a trial, 1.35x its wall time
(docs/benchmarks.md). Any other C library is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


def release_free_memory() -> bool:
    """Return the free pages of this process's heap to the system (glibc only).

    Returns:
        True when glibc released memory, False when there was none to release or the C library is
        not glibc.
    """
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0))


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError):
        return None
