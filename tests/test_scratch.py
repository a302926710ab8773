"""Scratch directories of killed trials are swept by the next trial; live ones are kept (runners/scratch.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from runners.scratch import LOCK, PREFIX, scratch_dir, sweep_stale
from runners.spec import TrialConfig
from runners.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")


def _holder(root: Path | None) -> tuple[subprocess.Popen, Path]:
    """A process that made a scratch directory (under ``root``, else the system temp) and sleeps in it."""
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from runners.scratch import scratch_dir
        with scratch_dir({str(root) if root else None!r}) as work:
            (work / "user").mkdir()
            (work / "user" / "adapter.safetensors").write_bytes(b"0" * 1024)
            print(work.parent, flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    path = Path(proc.stdout.readline().strip())
    assert path.is_dir() and (path / LOCK).exists()
    return proc, path


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_owner_leaves_its_directory_until_the_next_sweep_and_a_live_one_is_kept(tmp_path):
    dead, dead_path = _holder(tmp_path)
    live, live_path = _holder(tmp_path)
    try:
        _kill(dead)
        assert dead_path.is_dir(), "SIGKILL runs no cleanup: the directory is still there"
        foreign = tmp_path / (PREFIX + "older")  # no lock file: not ours to judge, left alone
        foreign.mkdir()
        assert sweep_stale(tmp_path) == [dead_path]
        assert not dead_path.exists()
        assert live_path.is_dir() and (live_path / "work" / "user" / "adapter.safetensors").exists()
        assert foreign.is_dir()
    finally:
        _kill(live)
    assert sweep_stale(tmp_path) == [live_path]


def test_a_scratch_directory_is_removed_on_exit_and_sweeps_first(tmp_path):
    dead, dead_path = _holder(tmp_path)
    _kill(dead)
    with scratch_dir(tmp_path) as work:
        assert not dead_path.exists()
        assert work.parent.parent == tmp_path and work.parent.name.startswith(PREFIX)
        assert list(work.iterdir()) == [], "what the caller gets is empty: the lock file is beside it"
        assert sweep_stale(tmp_path) == [], "its own lock is held"
        (work / "file").write_text("x")
    assert list(tmp_path.iterdir()) == []


def test_a_trial_sweeps_what_a_killed_trial_left_in_the_system_temp(tiny_setup):
    dead, dead_path = _holder(None)
    _kill(dead)
    assert Path(tempfile.gettempdir()) == dead_path.parent and dead_path.is_dir()
    result = run_trial(TrialConfig(layers=(0, 1), count=1, rank=2), tiny_setup)
    assert result.metrics["storage_bytes"] > 0, "the trial exported (and measured) an adapter"
    assert not dead_path.exists()
