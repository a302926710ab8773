"""``runners.heap``: the C heap's free pages go back to the operating system."""

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

# Run in a fresh interpreter: a test process's heap already holds the holes of earlier tests, into
# which the blocks below could be placed, and what free() itself gives back would then vary. malloc and
# free are the process's own (CDLL(None)): glibc's, or a preloaded allocator's.
PRELUDE = """
import ctypes, json
from runners.allocator import active_allocator
from runners.heap import release_free_heap

def resident_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

BLOCK = 64 * 1024  # under glibc's initial mmap threshold (128 KiB): these blocks live on the heap
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
"""

MEASURE = PRELUDE + """
blocks, pins = [], []
for _ in range(3000):  # about 190 MB, each block between small live ones: freed, a hole the heap cannot shrink over
    blocks.append(libc.malloc(BLOCK))
    pins.append(libc.malloc(32))
for block in blocks:
    ctypes.memset(block, 1, BLOCK)  # touched: resident
before = resident_mb()
for block in blocks:
    libc.free(block)
freed = resident_mb()
released = release_free_heap()
print(json.dumps({"before": before, "freed": freed, "after": resident_mb(), "released": released}))
"""


@pytest.mark.skipif(sys.platform != "linux" or not ctypes.util.find_library("c"), reason="glibc's heap")
def test_freed_heap_pages_between_live_blocks_return_to_the_system():
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # glibc's malloc, whatever runs the tests
    out = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True, env=env).stdout
    mb = json.loads(out.splitlines()[-1])
    assert mb["released"] is True
    assert mb["freed"] - mb["before"] > -20, mb  # free() alone keeps the holes resident
    assert mb["freed"] - mb["after"] > 100, mb  # about 190 MB go back


COLLECTED = PRELUDE + """
blocks = [libc.malloc(BLOCK) for _ in range(3000)]  # about 190 MB
for block in blocks:
    ctypes.memset(block, 1, BLOCK)
before = resident_mb()
for block in blocks:
    libc.free(block)
released = release_free_heap()
print(json.dumps({"allocator": active_allocator(), "before": before, "after": resident_mb(), "released": released}))
"""


def test_under_mimalloc_the_freed_pages_return_at_once():
    from runners.allocator import mimalloc_library, preloaded_environment

    if not sys.platform.startswith("linux") or mimalloc_library() is None:
        pytest.skip("cmeel-mimalloc is a dependency on Linux only")
    env = preloaded_environment({k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PERS_SEARCH_ALLOCATOR")})
    out = subprocess.run([sys.executable, "-c", COLLECTED], capture_output=True, text=True, check=True, env=env).stdout
    mb = json.loads(out.splitlines()[-1])
    assert mb["allocator"] == "mimalloc" and mb["released"] is True
    assert mb["before"] - mb["after"] > 100, mb  # mimalloc would keep them for a while without mi_collect
