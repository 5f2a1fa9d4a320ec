"""Servers the unit tier starts as real processes (Nginx, Daphne): a free port, and waiting until one listens."""

from __future__ import annotations

import socket
import subprocess
import time

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_listening(process: subprocess.Popen, port: int, timeout: float, name: str) -> None:
    """Return once 127.0.0.1:port accepts a TCP connection.

    Fails the test with the last 2,000 characters of the process's stderr (it must be started with
    stderr=PIPE, text=True) when it exits first or timeout seconds pass; the process is killed then.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"{name} did not start: {process.communicate()[1][-2000:]}")
            time.sleep(0.05)
