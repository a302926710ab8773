"""The README's quickstart runs as written: its commands, in a fresh directory, as real processes.

The fast test runs them on the tiny space (the README's ``--space quick.yaml`` swapped for
``tiny.yaml``); the slow one on ``quick.yaml`` as written, with the embedded model.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def quickstart_commands() -> list[list[str]]:
    """The command lines of the README's quickstart block, split as a shell would."""
    section = README.read_text(encoding="utf-8").split("## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def expected_next_steps() -> list[str]:
    """The README's pasted output of ``run``: its ``next:`` lines and the MLflow line after them."""
    section = README.read_text(encoding="utf-8").split("## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = lines.index("next:")
    return lines[start:start + 6]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)  # the quickstart uses the default store, ./mlruns in its directory
    return env


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    assert argv[0] == "pers-search", argv
    done = subprocess.run([sys.executable, "-m", "search.cli", *argv[1:]], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done


def _ui_link(argv: list[str], cwd: Path) -> str:
    """Start ``ui`` on a free port, take the link it prints, check the UI answers, and stop it."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", *argv[1:], "--port", str(port)], cwd=cwd,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        link = proc.stdout.readline().strip()  # stdout carries the link only, once the UI is up
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/"), link
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            assert response.status == 200
        return link
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def run_quickstart(cwd: Path, space: str | None, timeout: float) -> None:
    """Run the quickstart's commands in ``cwd`` (``space`` replaces the README's space when given) and
    check what each is there to show."""
    commands = quickstart_commands()
    assert [c[:2] for c in commands] == [["pers-search", "run"], ["pers-search", "status"],
                                         ["pers-search", "pareto"], ["pers-search", "export"],
                                         ["pers-search", "ui"]]
    run, status, pareto, export, ui = commands
    name = run[2]
    if space is not None:
        run = [space if previous == "--space" else word for previous, word in zip([""] + run, run)]
    said = _run(run, cwd, timeout).stderr
    steps = said[said.index("next:"):].splitlines()
    assert steps[:5] == expected_next_steps()[:5], "the README shows what run prints after the front"
    assert steps[5] == expected_next_steps()[5]
    link = steps[6]
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/#/experiments/\d+/runs\?\S+", link), link
    assert "trial" in _run(status, cwd, timeout).stdout
    shown = _run(pareto, cwd, timeout).stdout
    assert f"Pareto front of {name}" in shown and link in shown
    _run(export, cwd, timeout)
    bundle = cwd / export[export.index("--out") + 1]
    assert (bundle / "serving.yaml").is_file() and (bundle / "summary.json").is_file() and (bundle / "vllm.sh").is_file()
    assert _ui_link(ui, cwd).split("/#/", 1)[1] == link.split("/#/", 1)[1]  # the same page as run printed


def test_the_quickstart_runs_on_the_tiny_space(tmp_path):
    run_quickstart(tmp_path, "tiny.yaml", timeout=600)


@pytest.mark.slow
def test_the_quickstart_runs_as_written(tmp_path):
    run_quickstart(tmp_path, None, timeout=1800)
