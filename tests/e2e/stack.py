"""What the end-to-end tests use to drive a stack: its site through Nginx (HTTP with CSRF, and
WebSockets), its supervisor programs through testinfra, and bounded waiting."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import requests
from websockets.sync.client import ClientConnection, connect

from .targets import Target

T = TypeVar("T")

HTTP_TIMEOUT = 10
WS_OPEN_TIMEOUT = 10


class TimedOut(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call check until it returns a truthy value (returned) or timeout seconds pass (TimedOut).

    Exceptions from check count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 (any failure of the probe means "not yet")
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"{what}: not within {timeout} s; last seen: {last!r}")
        time.sleep(interval)


class Site:
    """The site through Nginx, as a browser uses it: a session with the CSRF cookie and headers."""

    def __init__(self, target: Target):
        self.target = target
        self.base_url = target.base_url
        self.http = requests.Session()
        response = self.http.get(self.base_url + "/", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        self.csrf_token = self.http.cookies["csrftoken"]

    def url(self, path: str) -> str:
        return self.base_url + path

    def csrf_headers(self) -> dict[str, str]:
        return {"X-CSRFToken": self.csrf_token, "Origin": self.base_url, "Referer": self.base_url + "/"}

    def post(self, path: str, body: bytes | str, *, csrf: bool = True, **headers: str) -> requests.Response:
        all_headers = {"Content-Type": "application/json", **(self.csrf_headers() if csrf else {}), **headers}
        return self.http.post(self.url(path), data=body, headers=all_headers, timeout=HTTP_TIMEOUT)

    def post_json(self, path: str, data: dict) -> requests.Response:
        return self.post(path, json.dumps(data))

    def post_message(self, text: str) -> dict:
        response = self.post_json("/api/messages", {"text": text})
        assert response.status_code == 201, response.text
        return response.json()

    def post_job(self, steps: int) -> dict:
        response = self.post_json("/api/jobs", {"steps": steps})
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.http.get(self.url(path), timeout=HTTP_TIMEOUT, **kwargs)

    def websocket(self, path: str, origin: str | None = None, headers: dict | None = None) -> ClientConnection:
        return connect(
            self.target.ws_url + path,
            origin=origin or self.target.host_origin,
            additional_headers=headers,
            open_timeout=WS_OPEN_TIMEOUT,
            close_timeout=2,
        )

    def healthy(self) -> bool:
        """True when both tiers answer their health probe through Nginx."""
        return all(
            self.get(path).status_code == 200 and self.get(path).json()["status"] == "ok"
            for path in ("/healthz", "/ws/healthz")
        )


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
    """What the app's programs (Gunicorn, Daphne, workers) logged on the target since mark(): the app
    container's output on compose, supervisor's program log files on the VM."""

    # supervisor_log_target "file" (deploy/defaults.yml app_log_dir), the VM's.
    LOG_FILES = "/var/log/channels-stack/*.log"

    def __init__(self, target: Target, host):
        self.target = target
        self.host = host
        self.start: dict[str, int] = {}

    def streams(self) -> dict[str, list[str]]:
        """Each log stream's lines so far, by name (a stream only grows)."""
        if self.target.compose:
            container = self.target.host_spec().removeprefix("docker://")
            result = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
            return {"stdout": result.stdout.splitlines(), "stderr": result.stderr.splitlines()}
        listing = self.host.run(f"ls {self.LOG_FILES}").stdout.split()
        return {name: self.host.file(name).content_string.splitlines() for name in listing}

    def mark(self) -> None:
        self.start = {name: len(lines) for name, lines in self.streams().items()}

    def lines(self) -> list[str]:
        """Every line logged since mark()."""
        return [line for name, lines in self.streams().items() for line in lines[self.start.get(name, 0) :]]


class NginxLog:
    """Nginx's access log on the target since mark(): the nginx container's output on compose
    (nginx_access_log /dev/stdout), /var/log/nginx/access.log on the VM (deploy/defaults.yml)."""

    ACCESS_LOG = "/var/log/nginx/access.log"

    def __init__(self, target: Target):
        self.target = target
        self.spec = (target.nginx_host_spec or target.host_spec)()
        self.start = 0

    def all_lines(self) -> list[str]:
        container = self.spec.removeprefix("docker://")
        if self.target.compose:
            command = ["docker", "logs", container]
        else:
            command = ["docker", "exec", container, "cat", self.ACCESS_LOG]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        return result.stdout.splitlines()

    def mark(self) -> None:
        self.start = len(self.all_lines())

    def lines(self) -> list[str]:
        """Every access log line written since mark()."""
        return self.all_lines()[self.start :]

    def gateways(self) -> set[str]:
        """Gateway addresses of the Docker networks of Nginx's container: the address Docker's
        published port gives every client on this machine."""
        container = self.spec.removeprefix("docker://")
        result = subprocess.run(
            ["docker", "inspect", "--format", "{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}", container],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return set(result.stdout.split())


@dataclass(frozen=True)
class Program:
    name: str
    state: str
    pid: int


class Supervisor:
    """supervisorctl on the target's host (testinfra), as the user the host runs commands as."""

    def __init__(self, target: Target, host):
        self.target = target
        self.host = host

    def ctl(self, *args: str):
        return self.host.run(f"{self.target.supervisorctl} {' '.join(args)}")

    def status(self) -> dict[str, Program]:
        """group:name -> Program, from `supervisorctl status` (exits non-zero when one is not RUNNING)."""
        result = self.ctl("status")
        programs = {}
        for line in result.stdout.splitlines():
            fields = line.split()
            if len(fields) < 2:
                continue
            pid = int(fields[3].rstrip(",")) if len(fields) > 3 and fields[2] == "pid" else 0
            programs[fields[0]] = Program(fields[0], fields[1], pid)
        if not programs:
            raise AssertionError(f"supervisorctl status said nothing useful: {result.stdout!r} {result.stderr!r}")
        return programs

    def stop(self, name: str) -> None:
        result = self.ctl("stop", name)
        assert result.rc == 0, f"supervisorctl stop {name}: {result.stdout} {result.stderr}"

    def start(self, *names: str) -> None:
        # "already started" exits non-zero; callers check the state they need afterwards.
        self.ctl("start", *names)

    def all_running(self) -> bool:
        status = self.status()
        return all(status.get(name, Program(name, "MISSING", 0)).state == "RUNNING" for name in self.target.programs)


def http_ok_on_host(host, target: Target, port: int, path: str) -> bool:
    """True when the program on port answers path with 200, asked from inside the target's host."""
    script = (
        "import sys, urllib.request; "
        f"r = urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=3); "
        "sys.exit(0 if r.status == 200 else 1)"
    )
    return host.run(f'{target.python} -c "{script}"').rc == 0
