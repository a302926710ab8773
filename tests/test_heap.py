"""``runners.heap``: the C heap's free pages go back to the operating system."""

import ctypes
import ctypes.util
import sys

import pytest

from runners.heap import release_free_heap

BLOCK = 64 * 1024  # under glibc's initial mmap threshold (128 KiB): these blocks live on the heap
BLOCKS = 3000  # about 190 MB


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(sys.platform != "linux" or not ctypes.util.find_library("c"), reason="glibc's heap")
def test_freed_heap_pages_between_live_blocks_return_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks, pins = [], []
    for _ in range(BLOCKS):  # each block between small live ones: freed, it is a hole the heap cannot shrink over
        blocks.append(libc.malloc(BLOCK))
        pins.append(libc.malloc(32))
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)  # touched: resident
    before = resident_mb()
    for block in blocks:
        libc.free(block)
    freed = resident_mb()
    assert release_free_heap() is True
    released = resident_mb()
    for pin in pins:
        libc.free(pin)
    assert freed - released > 100, (before, freed, released)  # about 190 MB go back
