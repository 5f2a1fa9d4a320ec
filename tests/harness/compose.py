"""ComposeTarget: the stack of docker-compose.yml under one compose project (nginx, app, redis)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from . import deploy
from .target import COMMAND_SECONDS, Target, run
from .waiting import wait_until

# The services of docker-compose.yml that always run, and those a profile turns on.
SERVICES = ("nginx", "app", "redis")
PROFILE_SERVICES = {"postgres": ("db",)}
# docker/up.sh builds the images and waits for health (UP_TIMEOUT, 240 s) itself.
UP_SECONDS = 1200


def compose_command() -> list[str]:
    """$COMPOSE when set, else `docker compose` (v2) when installed, else `docker-compose` (v1.29)."""
    configured = os.environ.get("COMPOSE")
    if configured:
        return shlex.split(configured)
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


class ComposeTarget(Target):
    """A compose project: `project` (its volume is <project>_data), Nginx published on
    127.0.0.1:http_port and (HTTPS) 127.0.0.1:https_port, its certificate in .tls/<project>/, images
    built with the deploy variables file vars_file (EXTRA_VARS, None: the images' own,
    docker/deploy-vars.yml) and tagged image_tag (None: latest); command is the compose command
    (None: compose_command())."""

    kind = "compose"
    bind_host = "0.0.0.0"  # noqa: S104 (inside the container, on the private compose network)
    redis_host = "redis"
    reload_methods = ("nginx -s reload",)
    stop_methods = ("supervisorctl stop all", "make down")
    supervisord_keeper = "container restart policy"
    logs_name = "compose-logs.txt"
    start_hint = "make up"

    def __init__(
        self,
        project: str,
        http_port: int | None,
        vars_file: str | None = None,
        image_tag: str | None = None,
        command: list[str] | None = None,
        https_port: int | None = None,
    ):
        super().__init__(http_port, deploy.compose_vars(vars_file), https_port)
        self.project = project
        self.vars_file = vars_file
        self.image_tag = image_tag
        self.compose = (*(command or compose_command()), "-p", project)
        # Every compose call must see the port, variables and tag the stack was created with, or a
        # later `up` would move or rebuild it.
        self.env = {**os.environ}
        if http_port:
            self.env["HTTP_PORT"] = str(http_port)
        if https_port:
            self.env["HTTPS_PORT"] = str(https_port)
        # Each project its own certificate (docker/up.sh issues it), so two bring-ups never write one.
        self.env["TLS_DIR"] = f".tls/{project}"
        if vars_file:
            self.env["EXTRA_VARS"] = vars_file
        if image_tag:
            self.env["IMAGE_TAG"] = image_tag

    def __repr__(self) -> str:
        ports = f"{self.http_port}, {self.https_port}" if self.http_port else "(as published)"
        return f"<ComposeTarget project {self.project} ports {ports}>"

    def compose_run(self, *args: str, timeout: float = COMMAND_SECONDS) -> str:
        return run([*self.compose, *args], timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        """The id of the service's container; RuntimeError when there is none."""
        ids = self.containers(service)
        if not ids:
            raise RuntimeError(f"compose project {self.project!r} has no {service} container; start it with `make up`")
        return ids[0]

    def containers(self, service: str) -> list[str]:
        """The ids of every container of the service (several after `--scale`), maybe none."""
        return self.compose_run("ps", "-q", service).split()

    def address(self, container: str, network: str) -> str:
        """The container's IPv4 address on the project's network `network` (edge, backend)."""
        template = f'{{{{(index .NetworkSettings.Networks "{self.project}_{network}").IPAddress}}}}'
        return run(["docker", "inspect", "--format", template, container])

    def scale(self, service: str, replicas: int, timeout: float = UP_SECONDS) -> list[str]:
        """Runs `replicas` containers of the service (`up --scale`, nothing else recreated) and waits
        until each is healthy; their ids. TimedOut (harness.waiting) when they are not healthy in time."""
        self.compose_run(
            "up", "--detach", "--no-deps", "--no-recreate", "--scale", f"{service}={replicas}", service, timeout=timeout
        )

        def healthy() -> list[str] | None:
            ids = self.containers(service)
            states = run(["docker", "inspect", "--format", "{{.State.Health.Status}}", *ids]).split() if ids else []
            return ids if len(ids) == replicas and set(states) == {"healthy"} else None

        return wait_until(healthy, timeout, f"{replicas} healthy {service} containers", interval=2)

    # --- life -------------------------------------------------------------------------------------
    def provision(self) -> None:
        started = time.monotonic()
        run(["bash", "docker/up.sh", *self.compose], timeout=UP_SECONDS, env=self.env)
        self._timings = {"compose up (build, start, healthy)": time.monotonic() - started}

    def down(self) -> None:
        self.compose_run("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=300)

    def save_logs(self, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / self.logs_name
        result = subprocess.run(
            [*self.compose, "logs", "--no-color", "--timestamps"],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=deploy.REPO,
            timeout=300,
            check=False,
        )
        path.write_text(result.stdout + result.stderr)
        return [path]

    def attach(self) -> None:
        super().attach()
        if not self.http_port:
            # A running stack of unknown port (`make up`'s): where compose published Nginx.
            self.http_port = int(self.compose_run("port", "nginx", "80").rpartition(":")[2])
            self.env["HTTP_PORT"] = str(self.http_port)
        if not self.https_port:
            self.https_port = int(self.compose_run("port", "nginx", "443").rpartition(":")[2])
            self.env["HTTPS_PORT"] = str(self.https_port)

    def is_up(self) -> bool:
        try:
            return bool(self.compose_run("port", "nginx", "80"))
        except RuntimeError:
            return False

    # --- inspection -------------------------------------------------------------------------------
    def host_spec(self) -> str:
        return f"docker://{self.container('app')}"

    def nginx_host_spec(self) -> str:
        return f"docker://{self.container('nginx')}"

    def app_log_streams(self) -> dict[str, list[str]]:
        # supervisor_log_target stdout (docker/deploy-vars.yml): the programs log to the container's output.
        result = subprocess.run(
            ["docker", "logs", self.container("app")], capture_output=True, text=True, check=False, timeout=60
        )
        return {"stdout": result.stdout.splitlines(), "stderr": result.stderr.splitlines()}

    def nginx_access_lines(self) -> list[str]:
        # nginx_access_log /dev/stdout (docker/deploy-vars.yml); the error log is the container's stderr.
        result = subprocess.run(
            ["docker", "logs", self.container("nginx")], capture_output=True, text=True, check=True, timeout=60
        )
        return result.stdout.splitlines()

    # --- faults -----------------------------------------------------------------------------------
    def restart_stack(self) -> None:
        self.compose_run("down", "--timeout", "30", timeout=600)
        run(["bash", "docker/up.sh", *self.compose], timeout=600, env=self.env)

    def stop_redis(self) -> None:
        self.compose_run("stop", "--timeout", "10", "redis")

    def start_redis(self) -> None:
        self.compose_run("start", "redis")

    def supervisord_restarts(self) -> int:
        return int(run(["docker", "inspect", "--format", "{{.RestartCount}}", self.container("app")]))

    def reboot(self) -> None:
        self.compose_run("restart", timeout=300)

    def stop_stack(self, method: str) -> None:
        if method == "make down":
            compose = shlex.join(self.compose[:-2])
            run(
                ["make", "--no-print-directory", "down", f"COMPOSE={compose}", f"COMPOSE_PROJECT={self.project}"],
                300,
                env=self.env,
            )
        else:
            super().stop_stack(method)

    def start_stack(self, method: str) -> None:
        if method == "make down":
            run(["bash", "docker/up.sh", *self.compose], timeout=600, env=self.env)
        else:
            super().start_stack(method)

    def leftovers(self, method: str) -> list[str]:
        if method == "make down":
            containers = run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}"])
            return containers.splitlines()[1:]
        return super().leftovers(method)

    def services_down(self) -> list[str]:
        running = self.compose_run("ps", "--services", "--filter", "status=running").split()
        return [service for service in self.services() if service not in running]

    def services(self) -> tuple[str, ...]:
        """The services this stack runs: SERVICES and those of the profiles on (COMPOSE_PROFILES)."""
        profiles = self.env.get("COMPOSE_PROFILES", "").split(",")
        return SERVICES + tuple(s for profile in profiles for s in PROFILE_SERVICES.get(profile.strip(), ()))

    def restore(self) -> None:
        if self.services_down():
            run(["bash", "docker/up.sh", *self.compose], timeout=600, env=self.env)
        self.start_stopped_programs()
        self.wait_whole()
