"""Memory freed by a trial goes back to the system: glibc's mmap threshold fixed at 128 KiB.

glibc serves a large allocation with ``mmap`` (returned to the system when freed) only above its
mmap threshold, and raises that threshold to the size of every mmapped block freed, up to 32 MB.
A process that trains and evaluates user after user frees tensors of many sizes, so after the
first user most tensors land on the heap between small long-lived objects, and the freed space
cannot be returned: the resident memory of a per-user study grew about 22 MB a user on the
embedded model. With the threshold fixed (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
raising off) it grows about 7 MB a user, and one user's peak is 20% lower (``bench/cohort_scale.py``
in docs/benchmarks.md). The same setting as the environment variable ``MALLOC_MMAP_THRESHOLD_``;
a value set there is kept, and any other C library is left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD_BYTES = 128 * 1024
ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h
_done = False


def fix_mmap_threshold() -> bool:
    """Fix this process's glibc mmap threshold (once) and pass it on to the processes it starts.

    Returns:
        True when the threshold is fixed at :data:`MMAP_THRESHOLD_BYTES` in this process (or the
        environment set one that glibc read at start), False on a C library without ``mallopt``.
    """
    global _done
    if _done:
        return True
    if ENVIRONMENT_VARIABLE in os.environ:  # glibc read it when the process started
        _done = True
        return True
    libc = _glibc()
    if libc is None or libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1:
        return False
    os.environ[ENVIRONMENT_VARIABLE] = str(MMAP_THRESHOLD_BYTES)
    _done = True
    return True


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
        return libc
    except (OSError, AttributeError):
        return None
