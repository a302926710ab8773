"""``runners.allocator`` and the console script's restart: a command that trains runs on mimalloc."""

import os
import subprocess
import sys

import pytest

from runners.allocator import (PRELOAD, VARIABLE, active_allocator, chosen_library, mimalloc_library,
                               preloaded_environment)
from runners.errors import ConfigError
from search import cli

linux_with_mimalloc = pytest.mark.skipif(not sys.platform.startswith("linux") or mimalloc_library() is None,
                                         reason="cmeel-mimalloc is a dependency on Linux only")

# A fresh interpreter that restarts itself as the console script does, then says which allocator it runs on and
# that torch's tensors work on it.
RESTARTED = ("import sys; from search.cli import restart_with_allocator; restart_with_allocator(); "
             "import torch; from runners.allocator import active_allocator; "
             "x = torch.ones(512, 512); print(active_allocator(), float((x @ x).sum()))")


@linux_with_mimalloc
def test_the_default_is_the_installed_mimalloc_and_system_opts_out(tmp_path):
    assert chosen_library({}) == mimalloc_library() and mimalloc_library().name.startswith("libmimalloc.so")
    assert chosen_library({VARIABLE: "mimalloc"}) == mimalloc_library()
    assert chosen_library({VARIABLE: "system"}) is None and preloaded_environment({VARIABLE: "system"}) is None
    other = tmp_path / "libother.so"
    other.write_bytes(b"")
    assert chosen_library({VARIABLE: str(other)}) == other.resolve()


def test_an_allocator_that_is_not_there_is_an_error_naming_the_variable_and_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=f"{VARIABLE}=.*no such file.*'mimalloc'.*'system'"):
        chosen_library({VARIABLE: str(tmp_path / "missing.so")})


@linux_with_mimalloc
def test_the_preload_keeps_what_was_there_and_is_not_added_twice():
    env = preloaded_environment({"HOME": "/h", PRELOAD: "/opt/libfirst.so"})
    assert env["HOME"] == "/h" and env[PRELOAD] == f"{mimalloc_library()} /opt/libfirst.so"
    assert preloaded_environment(env) is None


@linux_with_mimalloc
def test_mimalloc_runs_without_transparent_huge_pages_unless_the_environment_says(tmp_path):
    assert preloaded_environment({})["MIMALLOC_ALLOW_THP"] == "0"
    assert preloaded_environment({"MIMALLOC_ALLOW_THP": "1"})["MIMALLOC_ALLOW_THP"] == "1"
    other = tmp_path / "libjemalloc.so.2"
    other.write_bytes(b"")
    assert "MIMALLOC_ALLOW_THP" not in preloaded_environment({VARIABLE: str(other)})


def test_a_process_without_a_known_allocator_reports_the_system_one(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert active_allocator(maps) == "system"
    maps.write_text(maps.read_text() + "7f02-7f03 r-xp 00000000 08:01 2 /x/cmeel.prefix/lib/libmimalloc.so\n")
    assert active_allocator(maps) == "mimalloc"
    assert active_allocator(tmp_path / "absent") == "system"


@linux_with_mimalloc
def test_a_restarted_process_runs_on_mimalloc_and_torch_works_there():
    env = {k: v for k, v in os.environ.items() if k not in (VARIABLE, PRELOAD)}
    out = subprocess.run([sys.executable, "-c", RESTARTED], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["mimalloc", str(512.0 ** 3)], out.stderr
    out = subprocess.run([sys.executable, "-c", RESTARTED], capture_output=True, text=True, check=True,
                         env={**env, VARIABLE: "system"})
    assert out.stdout.split()[0] == "system", out.stderr


class Restarted(BaseException):  # not caught by the CLI's last line of defence
    pass


@linux_with_mimalloc
@pytest.mark.parametrize("command, restarts", [(["trial", "--help-not-an-option"], None),
                                               (["trial", "--space", "tiny.yaml"], True),
                                               (["status", "nothing-here"], False)])
def test_the_console_script_restarts_the_commands_that_train_only(monkeypatch, tmp_path, command, restarts):
    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))
        raise Restarted

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.delenv(VARIABLE, raising=False)
    monkeypatch.delenv(PRELOAD, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pers-search", *command])
    if restarts is None:  # a usage error stops before anything restarts
        with pytest.raises(SystemExit):
            cli.main()
        assert calls == []
    elif restarts:
        with pytest.raises(Restarted):
            cli.main()
        path, argv, env = calls[0]
        assert (path, argv) == (sys.executable, sys.orig_argv) and env[PRELOAD] == str(mimalloc_library())
    else:
        cli.main()
        assert calls == []


@linux_with_mimalloc
def test_a_main_called_with_arguments_never_restarts(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "execve", lambda *a: pytest.fail("restarted"))
    monkeypatch.delenv(PRELOAD, raising=False)
    assert cli.main(["status", "nothing-here", "--study-dir", str(tmp_path)]) != 0
