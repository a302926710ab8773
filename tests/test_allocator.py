"""The glibc mmap threshold fixed: large blocks a trial frees go back to the system."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from runners import allocator

# A child that frees one 8 MB block (glibc then raises its dynamic threshold to 8 MB), allocates 400
# blocks of 512 KB between small long-lived ones, frees the large ones and prints its resident MB
# before and after.
_CHILD = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from runners.allocator import fix_mmap_threshold
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else False
    block = bytearray(8 << 20); del block
    large, small = [], []
    for _ in range(400):
        large.append(bytearray(512 << 10)); small.append(bytearray(1000))
    before = rss(); del large
    print(fixed, before, rss(), os.environ.get("MALLOC_MMAP_THRESHOLD_"))
""")

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")


def _child(mode: str, tmp_path) -> tuple[str, int, int, str]:
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(pathlib.Path(__file__).resolve().parents[1])))
    env = {k: v for k, v in os.environ.items() if k != allocator.ENVIRONMENT_VARIABLE}
    out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    return out[0], int(out[1]), int(out[2]), out[3]


@glibc
def test_freed_large_blocks_return_to_the_system_once_the_threshold_is_fixed(tmp_path):
    fixed, before, after, variable = _child("fixed", tmp_path)
    assert fixed == "True" and variable == str(allocator.MMAP_THRESHOLD_BYTES)  # children inherit it
    assert before > 150 and after < before - 150  # the 200 MB of large blocks went back

    fixed, before, after, variable = _child("dynamic", tmp_path)
    assert fixed == "False" and variable == "None"
    assert after > before - 20  # glibc's raised threshold kept them on the heap


@glibc
def test_a_threshold_set_in_the_environment_is_kept(monkeypatch):
    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setenv(allocator.ENVIRONMENT_VARIABLE, "1048576")
    assert allocator.fix_mmap_threshold()
    assert os.environ[allocator.ENVIRONMENT_VARIABLE] == "1048576"
