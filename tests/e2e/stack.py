"""What the end-to-end tests use beyond the harness (tests/harness): reading WebSocket frames, the
app's and Nginx's logs since a mark, and a probe from inside the app host. Site, Supervisor,
TimedOut and wait_until are the harness' own, re-exported for the tests."""

from __future__ import annotations

import json
import subprocess
import time

from harness.programs import Supervisor
from harness.site import Site
from harness.target import Target
from harness.waiting import TimedOut, wait_until
from websockets.sync.client import ClientConnection

__all__ = ["AppLog", "NginxLog", "Site", "Supervisor", "TimedOut", "http_ok_on_host", "wait_until"]


def receive_json(socket: ClientConnection, timeout: float) -> dict:
    return json.loads(socket.recv(timeout=timeout))


def read_until_ready(socket: ClientConnection, timeout: float = 10) -> dict:
    """Skip the board backlog; return the {"type": "ready"} frame."""
    deadline = time.monotonic() + timeout
    while True:
        frame = receive_json(socket, max(0.1, deadline - time.monotonic()))
        if frame["type"] == "ready":
            return frame
        if time.monotonic() >= deadline:
            raise TimedOut(f"no ready frame within {timeout} s")


def frames_until_quiet(socket: ClientConnection, quiet: float, limit: float) -> list[dict]:
    """Every frame received until none came for `quiet` seconds (at most `limit` seconds in all)."""
    frames: list[dict] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            frames.append(receive_json(socket, min(quiet, max(0.05, deadline - time.monotonic()))))
        except TimeoutError:
            break
    return frames


class AppLog:
    """What the app's programs (Gunicorn, Daphne, workers) logged on the target since mark()
    (Target.app_log_streams: the app container's output on compose, supervisor's log files on the VM)."""

    def __init__(self, target: Target):
        self.target = target
        self.start: dict[str, int] = {}

    def mark(self) -> None:
        self.start = {name: len(lines) for name, lines in self.target.app_log_streams().items()}

    def lines(self) -> list[str]:
        """Every line logged since mark()."""
        streams = self.target.app_log_streams()
        return [line for name, lines in streams.items() for line in lines[self.start.get(name, 0) :]]


class NginxLog:
    """Nginx's access log on the target since mark() (Target.nginx_access_lines)."""

    def __init__(self, target: Target):
        self.target = target
        self.start = 0

    def mark(self) -> None:
        self.start = len(self.target.nginx_access_lines())

    def lines(self) -> list[str]:
        """Every access log line written since mark()."""
        return self.target.nginx_access_lines()[self.start :]

    def gateways(self) -> set[str]:
        """Gateway addresses of the Docker networks of Nginx's container: the address Docker's
        published port gives every client on this machine."""
        container = self.target.nginx_host_spec().removeprefix("docker://")
        result = subprocess.run(
            ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", container],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return set(result.stdout.split())


def http_ok_on_host(host, target: Target, port: int, path: str) -> bool:
    """True when the program on port answers path with 200, asked from inside the target's host."""
    script = (
        "import sys, urllib.request; "
        f"r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3); "
        "sys.exit(0 if r.status == 200 else 1)"
    )
    return host.run(f'{target.python} -c "{script}"').rc == 0
