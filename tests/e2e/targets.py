"""Where the end-to-end suite runs: one Target per `--target` name (compose, vm).

The tests only talk to a Target: its Nginx on loopback (base_url), a testinfra host inside the
machine or container that runs supervisord (host_spec), the supervisorctl command there, and a way
to restart the whole stack with its data kept. Ports, process counts and paths come from the deploy
variables each target is rendered with (deploy_vars: deploy/render.py's loader over the same files
the images or the playbook use), never from constants here.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("deploy_render", REPO / "deploy" / "render.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)

VM_INVENTORY_VARS = REPO / "ansible" / "inventories" / "local-vm" / "group_vars" / "channels_stack" / "main.yml"


def _repo_path(name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else REPO / path


def deploy_vars(name: str) -> dict:
    """The deploy variables target `name` is rendered with, read from the files its stack is built from.

    compose: deploy/defaults.yml, docker/deploy-vars.yml, then EXTRA_VARS (the file `make up VARS=` or
    `make test-compose` builds the images with). vm: deploy/defaults.yml, the local-vm inventory's
    deploy variables (its other values are Ansible expressions), then VM_VARS (`--extra-vars` of the
    playbook runs). Read at collection time too: the tests are parametrized by them.
    """
    if name == "compose":
        extra = os.environ.get("EXTRA_VARS") or "docker/no-vars.yml"
        return render.load_vars([REPO / "docker" / "deploy-vars.yml", _repo_path(extra)])
    if name == "vm":
        defaults = render.load_vars([])
        inventory = yaml.safe_load(VM_INVENTORY_VARS.read_text()) or {}
        files = [_repo_path(os.environ["VM_VARS"])] if os.environ.get("VM_VARS") else []
        return render.load_vars(files, extra={k: v for k, v in inventory.items() if k in defaults})
    raise ValueError(f"unknown target {name!r}; known: compose, vm")


def gunicorn_port(variables: dict) -> int:
    return variables["gunicorn_port"]


def daphne_ports(variables: dict) -> tuple[int, ...]:
    """One port per Daphne process: daphne_base_port + n, as deploy/supervisor/programs.conf.j2 has it."""
    return tuple(variables["daphne_base_port"] + n for n in range(variables["daphne_processes"]))


def workers(variables: dict) -> tuple[str, ...]:
    return tuple(f"worker:worker-{n}" for n in range(variables["worker_processes"]))


def programs(variables: dict) -> tuple[str, ...]:
    """Every supervisor program (group:name) the variables make the stack run."""
    return ("gunicorn", *(f"daphne:daphne-{port}" for port in daphne_ports(variables)), *workers(variables))


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
    # The deploy variables the stack was rendered with (deploy_vars).
    variables: dict = field(hash=False)
    # Address Gunicorn and Daphne bind to on that host.
    bind_host: str = "127.0.0.1"
    # PID 1 names that count as a proper init for supervisord to run under.
    init_names: tuple[str, ...] = field(default=("tini", "docker-init", "systemd", "init"))
    # Redis as the app's host reaches it.
    redis_host: str = "127.0.0.1"
    # compose target only: the compose command with its project (`docker-compose -p NAME`).
    compose: tuple[str, ...] = ()
    # testinfra host spec of the container Nginx runs in; None: the same as host_spec.
    nginx_host_spec: Callable[[], str] | None = None

    @property
    def app_user(self) -> str:
        return self.variables["app_user"]

    @property
    def app_venv(self) -> str:
        return self.variables["app_venv"]

    @property
    def app_config_dir(self) -> str:
        return self.variables["app_config_dir"]

    @property
    def gunicorn_port(self) -> int:
        return gunicorn_port(self.variables)

    @property
    def daphne_ports(self) -> tuple[int, ...]:
        return daphne_ports(self.variables)

    @property
    def workers(self) -> tuple[str, ...]:
        return workers(self.variables)

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
        return programs(self.variables)


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
        variables=deploy_vars("compose"),
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

    return Target(
        name="vm",
        base_url=base_url,
        host_spec=lambda: f"docker://{container}",
        restart_stack=restart_stack,
        variables=deploy_vars("vm"),
    )


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
