"""Memory a trial freed goes back to the system (glibc's malloc_trim after each user)."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from runners import allocator

# A child that frees one 8 MB block (glibc then raises its dynamic mmap threshold to 8 MB), allocates
# 400 blocks of 512 KB between small long-lived ones (so they land on the heap), frees the large ones,
# optionally releases the free memory, and prints its resident MB before and after.
_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from runners.allocator import release_free_memory
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024
    block = bytearray(8 << 20); del block
    large, small = [], []
    for _ in range(400):
        large.append(bytearray(512 << 10)); small.append(bytearray(1000))
    before = rss(); del large
    released = release_free_memory() if sys.argv[1] == "release" else False
    print(released, before, rss())
""")

glibc = pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")


def _child(mode: str, tmp_path) -> tuple[str, int, int]:
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(root=str(pathlib.Path(__file__).resolve().parents[1])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    released, before, after = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                                             env=env, check=True).stdout.split()
    return released, int(before), int(after)


@glibc
def test_freed_heap_memory_goes_back_to_the_system_once_released(tmp_path):
    released, before, after = _child("keep", tmp_path)
    assert before > 150 and after > before - 20  # 200 MB freed, and still resident

    released, before, after = _child("release", tmp_path)
    assert released == "True" and before > 150 and after < before - 150  # and now given back


def test_a_trial_releases_after_each_user(monkeypatch):
    from runners import trial
    from runners.spec import TrialConfig, TrialSetup

    calls = []
    monkeypatch.setattr(trial, "release_free_memory", lambda: calls.append(len(calls)) or True)
    setup = TrialSetup.from_dicts({"name": "tiny"}, {"source": "demo", "users": 2}, {"max_steps": 1})
    result = trial.run_trial(TrialConfig(layers=(0,), count=1, rank=2), setup)
    assert len(result.users) == 2 and calls == [0, 1]
