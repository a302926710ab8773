"""A test helper: ``mlflow server`` on a store for a ``with`` block (tests/test_mlflow_server.py,
tests/test_browser_ui.py)."""

from __future__ import annotations

import subprocess
from contextlib import contextmanager
from typing import Iterator

from search.tracking.server import DEFAULT_HOST, DEFAULT_PORT, start_server, stop_server, wait_until_up


@contextmanager
def running_server(uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log: str | None = None,
                   timeout: float = 120.0) -> Iterator[str]:
    """Run ``mlflow server`` on a store for the ``with`` block; yields its URL; always stops it.

    Args:
        uri: the backend store URI.
        host: interface to bind.
        port: port to listen on.
        log: file that receives the server's output (default: inherited).
        timeout: seconds to wait for the server to answer.
    """
    handle = open(log, "w", encoding="utf-8") if log else None
    try:
        proc = start_server(uri, host, port, stdout=handle, stderr=subprocess.STDOUT if handle else None)
        try:
            url = f"http://{host}:{port}"
            wait_until_up(url, proc, timeout)
            yield url
        finally:
            stop_server(proc)
    finally:
        if handle:
            handle.close()
