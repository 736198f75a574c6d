"""Helpers for tests that start a real local server (Streamlit, Chroma) in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(url: str, proc: subprocess.Popen, *, timeout_s: float, failure: Callable[[], str],
                    ok: Callable[[bytes], bool] = lambda _body: True) -> None:
    """Poll ``url`` until it answers (and ``ok`` accepts the body); fail the test with
    ``failure()`` when the process exits first or ``timeout_s`` passes."""
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if ok(response.read()):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            pytest.fail(failure())
        time.sleep(0.2)
