"""Where the end-to-end suite runs: one Target per `--target` name (compose, vm).

The tests only talk to a Target: its Nginx on loopback (base_url), a testinfra host inside the
machine or container that runs supervisord (host_spec), the supervisorctl command there, and a way
to restart the whole stack with its data kept. Paths and ports are the ones of deploy/defaults.yml,
which both the compose images and the VM use.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]

# deploy/defaults.yml: the same on every target.
APP_USER = "channels"
APP_VENV = "/srv/channels-stack/venv"
APP_CONFIG_DIR = "/etc/channels-stack"
GUNICORN_PORT = 8000
DAPHNE_PORTS = (8100, 8101)
WORKERS = ("worker:worker-0", "worker:worker-1")


@dataclass(frozen=True)
class Target:
    name: str
    # Nginx of the stack, e.g. http://127.0.0.1:8080 (no trailing slash).
    base_url: str
    # testinfra host spec of the machine/container running supervisord, e.g. docker://<id>. A
    # callable, because restarting a compose stack recreates its containers.
    host_spec: Callable[[], str]
    # Stops and starts the whole stack (data kept); returns when it is healthy again.
    restart_stack: Callable[[], None]
    # Address Gunicorn and Daphne bind to on that host.
    bind_host: str = "127.0.0.1"
    app_user: str = APP_USER
    app_venv: str = APP_VENV
    app_config_dir: str = APP_CONFIG_DIR
    gunicorn_port: int = GUNICORN_PORT
    daphne_ports: tuple[int, ...] = DAPHNE_PORTS
    workers: tuple[str, ...] = WORKERS
    # PID 1 names that count as a proper init for supervisord to run under.
    init_names: tuple[str, ...] = field(default=("tini", "docker-init", "systemd", "init"))
    # Redis as the app's host reaches it.
    redis_host: str = "127.0.0.1"
    # compose target only: the compose command with its project (`docker-compose -p NAME`).
    compose: tuple[str, ...] = ()
    # testinfra host spec of the container Nginx runs in; None: the same as host_spec.
    nginx_host_spec: Callable[[], str] | None = None

    @property
    def python(self) -> str:
        return f"{self.app_venv}/bin/python"

    @property
    def supervisorctl_path(self) -> str:
        return f"{self.app_venv}/bin/supervisorctl"

    @property
    def supervisord_conf(self) -> str:
        return f"{self.app_config_dir}/supervisord.conf"

    @property
    def supervisorctl(self) -> str:
        """The command line that controls the programs, run on the target's host."""
        return f"{self.supervisorctl_path} -c {self.supervisord_conf}"

    @property
    def host_origin(self) -> str:
        """The Origin a browser on this site sends."""
        return self.base_url

    @property
    def ws_url(self) -> str:
        return "ws://" + self.base_url.removeprefix("http://")

    @property
    def programs(self) -> tuple[str, ...]:
        """Every supervisor program (group:name) the stack runs."""
        daphnes = tuple(f"daphne:daphne-{port}" for port in self.daphne_ports)
        return ("gunicorn", *daphnes, *self.workers)


def _run(command: list[str], **kwargs) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


def _compose_command() -> list[str]:
    configured = os.environ.get("E2E_COMPOSE_CMD")
    if configured:
        return shlex.split(configured)
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def compose_target() -> Target:
    """The stack of docker-compose.yml: E2E_COMPOSE_PROJECT (default: the `make up` project)."""
    project = os.environ.get("E2E_COMPOSE_PROJECT", "channels-stack")
    compose = [*_compose_command(), "-p", project]
    env = dict(os.environ)
    if os.environ.get("E2E_HTTP_PORT"):
        # Every compose call must see the port the stack was created with, or `up` would move it.
        env["HTTP_PORT"] = os.environ["E2E_HTTP_PORT"]

    def compose_run(*args: str) -> str:
        return _run([*compose, *args], cwd=REPO, env=env, timeout=600)

    address = compose_run("port", "nginx", "80")
    if not address:
        raise RuntimeError(f"compose project {project!r} has no nginx running; start it with `make up`")

    def host_spec() -> str:
        container = compose_run("ps", "-q", "app").splitlines()
        if not container:
            raise RuntimeError(f"compose project {project!r} has no app container")
        return f"docker://{container[0]}"

    def nginx_host_spec() -> str:
        container = compose_run("ps", "-q", "nginx").splitlines()
        if not container:
            raise RuntimeError(f"compose project {project!r} has no nginx container")
        return f"docker://{container[0]}"

    def restart_stack() -> None:
        compose_run("down", "--timeout", "30")
        _run(["bash", str(REPO / "docker" / "up.sh"), *compose], cwd=REPO, env=env, timeout=600)

    return Target(
        name="compose",
        base_url=f"http://{address}",
        host_spec=host_spec,
        restart_stack=restart_stack,
        bind_host="0.0.0.0",  # noqa: S104 (inside the container, on the private compose network)
        redis_host="redis",
        compose=tuple(compose),
        nginx_host_spec=nginx_host_spec,
    )


def vm_target() -> Target:
    """The local test host of ansible/vm.mk (VM_CONTAINER, Nginx on 127.0.0.1:VM_HTTP_PORT), as
    provisioned by ansible/site.yml: systemd runs supervisord, reached with `docker exec`."""
    container = os.environ.get("VM_CONTAINER", "channels-stack-vm")
    base_url = f"http://127.0.0.1:{os.environ.get('VM_HTTP_PORT', '8081')}"
    if _run(["docker", "container", "inspect", "--format", "{{.State.Running}}", container]) != "true":
        raise RuntimeError(f"test host {container!r} is not running; start it with `make vm`")

    def restart_stack() -> None:
        # A reboot: systemd stops every service, then boots them again; Ansible is not involved.
        _run(["docker", "restart", "--time", "60", container], timeout=180)
        deadline = time.monotonic() + 120
        while True:
            try:
                if all(
                    requests.get(base_url + path, timeout=3).status_code == 200 for path in ("/healthz", "/ws/healthz")
                ):
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url} not healthy within 120 s of rebooting {container}")
            time.sleep(1)

    return Target(name="vm", base_url=base_url, host_spec=lambda: f"docker://{container}", restart_stack=restart_stack)


TARGETS: dict[str, Callable[[], Target]] = {
    "compose": compose_target,
    "vm": vm_target,
}


def make_target(name: str) -> Target:
    try:
        factory = TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}") from None
    return factory()
