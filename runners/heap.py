"""Hand the C heap's free pages back to the operating system between the phases of a trial.

A trial frees most of what it allocates (activations, gradients, the optimiser's state, the
generation's caches), but glibc keeps the freed memory of its main heap resident: the small
objects a trial keeps (cache entries, a user's index) pin the heap between the holes, and its
dynamic mmap threshold sends ever larger tensors to that heap. Over a cohort of users in one
process the resident size then creeps up with every user although the memory in use does not
(measured in ``docs/benchmarks.md``, "A cohort in one process"). ``malloc_trim(0)`` returns every
whole free page of every arena (``madvise(MADV_DONTNEED)``); called at the few phase boundaries
of a trial it costs a few milliseconds and the page faults of memory touched again, instead of
the page faults of every large allocation that a fixed ``M_MMAP_THRESHOLD`` would cost.

Where the process runs on mimalloc (``runners.allocator``: the console script's training commands
do), malloc is mimalloc's and :func:`release_free_heap` also has it return the pages it keeps for
reuse (``mi_collect(true)``), which it would otherwise give back only after a delay, so that a
trial's next phase starts from what is in use. Where the C library is not glibc (macOS, musl) and no
mimalloc is loaded, :func:`release_free_heap` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


@functools.lru_cache(maxsize=1)
def _mi_collect():
    """mimalloc's ``mi_collect`` when the process has mimalloc loaded, else None."""
    try:
        collect = ctypes.CDLL(None).mi_collect
    except (OSError, AttributeError):
        return None
    collect.argtypes, collect.restype = [ctypes.c_bool], None
    return collect


def release_free_heap() -> bool:
    """Return the C heap's free pages to the operating system; True when the allocator could."""
    collect, trim = _mi_collect(), _malloc_trim()
    if collect is not None:
        collect(True)
    if trim is not None:
        trim(0)
    return collect is not None or trim is not None
