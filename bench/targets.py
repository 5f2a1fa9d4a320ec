"""The servers a run measures: the compose stack (through its Nginx) and the bare reference server.

Each target has `name`, `endpoint` (bench.receivers.Endpoint: where the sockets go), `site`
(bench.poster.Site: where the posts go), `how` (one line for the report) and `processes()` (the
server's processes, bench.procs.Named).

The stack is reached at the Nginx container's own address on port 80, not at the published
127.0.0.1 port: that port goes through Docker's userland proxy (docker-proxy), a process per
connection direction that would be measured instead of the stack. Host is `localhost` (one of
nginx_server_names, allowed by the compose stack's DJANGO_ALLOWED_HOSTS), Origin `http://localhost`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.poster import Site
from bench.procs import Named, container_processes
from bench.receivers import Endpoint

STACK_HOST = "localhost"
ROOT = Path(__file__).resolve().parent.parent


class TargetError(Exception):
    """A server that cannot be found or started; the message says which and why."""


def container_address(compose: list[str], project: str, service: str) -> str:
    """The first network address of the project's `service` container."""
    ids = subprocess.run([*compose, "-p", project, "ps", "-q", service], capture_output=True, text=True).stdout.split()
    if not ids:
        raise TargetError(f"compose project {project!r} has no running {service!r} container")
    info = json.loads(subprocess.run(["docker", "inspect", ids[0]], check=True, capture_output=True, text=True).stdout)
    for network in info[0]["NetworkSettings"]["Networks"].values():
        if network.get("IPAddress"):
            return network["IPAddress"]
    raise TargetError(f"the {service!r} container of {project!r} has no network address")


class ComposeStack:
    name = "stack"

    def __init__(self, compose: list[str], project: str):
        self.compose, self.project = compose, project
        address = container_address(compose, project, "nginx")
        self.endpoint = Endpoint(address, 80, STACK_HOST, f"http://{STACK_HOST}")
        self.site = Site(f"http://{address}:80", STACK_HOST, f"http://{STACK_HOST}")
        self.how = (
            f"compose project {project}: Nginx container {address}:80 directly (Docker's userland proxy "
            f"bypassed), Host {STACK_HOST}"
        )

    def processes(self) -> list[Named]:
        return container_processes(self.compose, self.project)

    def restart(self, timeout: float = 180.0) -> None:
        """Restart the app and nginx containers (fresh processes, no grown heaps) and wait for health."""
        subprocess.run([*self.compose, "-p", self.project, "restart", "app", "nginx"], check=True, capture_output=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ids = subprocess.run(
                [*self.compose, "-p", self.project, "ps", "-q"], check=True, capture_output=True, text=True
            ).stdout.split()
            states = subprocess.run(
                ["docker", "inspect", "--format", "{{.State.Health.Status}}", *ids],
                capture_output=True,
                text=True,
            ).stdout.split()
            if states and all(state == "healthy" for state in states):
                self.__init__(self.compose, self.project)
                return
            time.sleep(2)
        raise TargetError(f"compose project {self.project!r} not healthy {timeout} s after a restart")


def _wait_port(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TargetError(f"bare server exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise TargetError(f"bare server: nothing listens on 127.0.0.1:{port} after {timeout} s")


class BareServer:
    """bench.bare_server in a child process (loopback); a context manager that stops it."""

    name = "bare"

    def __init__(self, ws_port: int, http_port: int):
        self.ports = (ws_port, http_port)
        self.start()

    def start(self) -> None:
        ws_port, http_port = self.ports
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.bare_server", "--ws-port", str(ws_port), "--http-port", str(http_port)],
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
        try:
            _wait_port(ws_port, 15, self.proc)
            _wait_port(http_port, 15, self.proc)
        except TargetError:
            self.stop()
            raise
        self.endpoint = Endpoint("127.0.0.1", ws_port, f"127.0.0.1:{ws_port}", f"http://127.0.0.1:{ws_port}")
        self.site = Site(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{http_port}", f"http://127.0.0.1:{http_port}")
        self.how = f"bench/bare_server.py, one asyncio process, ws://127.0.0.1:{ws_port}/ws/board/"

    def processes(self) -> list[Named]:
        return [Named("bare/server", self.proc.pid)]

    def restart(self) -> None:
        """A fresh server process (no grown heap; its messages are gone)."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> BareServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
