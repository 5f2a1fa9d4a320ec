"""VmTarget: a systemd test host standing in for a Debian 12 VM (docker/test-host/), provisioned by
ansible/site.yml with the local-vm inventory: Nginx, Redis and channels-stack.service in one machine."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from . import deploy
from .programs import processes
from .target import COMMAND_SECONDS, Target, run
from .waiting import wait_until

# TEST_HOST_IMAGE: another tag, so concurrent sessions building a changed docker/test-host/ do not collide.
IMAGE = os.environ.get("TEST_HOST_IMAGE", "channels-stack-test-host")
INVENTORY = deploy.REPO / "ansible" / "inventories" / "local-vm"
PLAYBOOK_SECONDS = int(os.environ.get("PLAYBOOK_SECONDS", "1800"))
BOOT_SECONDS = 120
# The CA bundle the test host trusts (the control machine's, so pip works behind an intercepting proxy).
DEFAULT_CA_CERTS = "/etc/ssl/certs/ca-certificates.crt"
# systemd in a container: its own cgroup tree, /run on tmpfs, and no seccomp/AppArmor profile in the way.
DOCKER_RUN_OPTIONS = (
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--tmpfs", "/run",
    "--tmpfs", "/run/lock",
    "--volume", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
)  # fmt: skip


@dataclass(frozen=True)
class PlaybookRun:
    """One ansible-playbook run: exit status, combined output, wall seconds, and the host it ran on."""

    returncode: int
    output: str
    seconds: float
    host: str

    @property
    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters of the test host (ok, changed, failed, ...)."""
        match = re.search(rf"^{re.escape(self.host)}\s*:\s*(.*)$", self.output, re.MULTILINE)
        assert match, f"no PLAY RECAP line in:\n{self.output[-3000:]}"
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    @property
    def changed_tasks(self) -> list[str]:
        """Names of the tasks that reported a change."""
        changed, task = [], None
        for line in self.output.splitlines():
            if heading := re.match(r"(?:TASK|RUNNING HANDLER) \[(.+?)\]", line):
                task = heading.group(1)
            elif line.startswith("changed:") and task not in changed:
                changed.append(task)
        return changed


class VmTarget(Target):
    """The test host container `container`, Nginx published on 127.0.0.1:http_port and (HTTPS)
    127.0.0.1:https_port, provisioned with
    the deploy variables file vars_file (--extra-vars; None: the inventory's) from app_source (a
    directory holding app/ and requirements.txt; None: a snapshot of the checkout taken by up(), so
    edits made while the tests run cannot make a "new release" mid-test)."""

    kind = "vm"
    reload_methods = ("nginx -s reload", "ansible handler")
    stop_methods = ("supervisorctl stop all", "systemctl stop")
    as_app_user = "runuser -u channels -- "
    supervisord_keeper = "systemd Restart=always"
    start_hint = "make vm"

    def __init__(
        self,
        container: str,
        http_port: int,
        vars_file: str | None = None,
        app_source: Path | None = None,
        https_port: int | None = None,
    ):
        super().__init__(http_port, deploy.vm_vars(vars_file), https_port)
        self.container = container
        self.vars_file = vars_file
        self.app_source = app_source or deploy.REPO
        self.unit = f"{self.variables['app_name']}.service"
        self.service = self.variables["app_name"]

    def __repr__(self) -> str:
        return f"<VmTarget {self.container} port {self.http_port}>"

    # --- life -------------------------------------------------------------------------------------
    def create_host(self) -> None:
        """Builds the test host image and starts its container (kept when it exists); returns once
        systemd has booted. RuntimeError when it does not boot within BOOT_SECONDS."""
        build_test_host_image()
        publish = [f"127.0.0.1:{self.http_port}:80", *([f"127.0.0.1:{self.https_port}:443"] if self.https_port else [])]
        start_test_host(self.container, publish=publish)

    def snapshot_source(self) -> Path:
        """Copies the project and its lock file to build/vm-source-<container>/: the version under test."""
        return snapshot_source(self.container, self.variables)

    def up(self) -> None:
        self.down()
        self.app_source = self.snapshot_source()
        self.provision()

    def provision(self) -> None:
        started = time.monotonic()
        self.create_host()
        self._timings = {"creating the test host": time.monotonic() - started}
        provision = self.run_playbook()
        self._timings["the playbook's first run"] = provision.seconds
        if provision.returncode != 0:
            raise RuntimeError(f"the playbook failed on {self.container}:\n{provision.output[-4000:]}")

    def down(self) -> None:
        if self.exists():
            run(["docker", "rm", "--force", "--volumes", self.container])

    def exists(self) -> bool:
        return container_exists(self.container)

    def is_up(self) -> bool:
        running = run(["docker", "ps", "--quiet", "--filter", f"name=^{self.container}$"])
        return bool(running) and self.booted()

    def save_logs(self, directory: Path) -> list[Path]:
        if not self.exists():
            return []
        directory.mkdir(parents=True, exist_ok=True)
        journal, logs = directory / f"{self.container}-journal.txt", directory / f"{self.container}-logs.txt"
        host = self.app_host()
        journal.write_text(host.run("journalctl --no-pager -o short-precise").stdout)
        logs.write_text(host.run("tail -n +1 /var/log/channels-stack/*.log /var/log/nginx/error.log").stdout)
        return [journal, logs]

    def run_playbook(self, *args: str) -> PlaybookRun:
        """Runs ansible/site.yml on the test host (local-vm inventory) with app_source and vars_file."""
        # The redirect from plain HTTP goes to the port published on this machine.
        https = [f"--extra-vars=nginx_https_public_port={self.https_port}"] if self.https_port else []
        return run_playbook(
            INVENTORY,
            {"VM_CONTAINER": self.container},
            self.app_source,
            self.vars_file,
            (*https, *args),
            "channels-stack-vm",
        )

    # --- inspection -------------------------------------------------------------------------------
    def host_spec(self) -> str:
        return f"docker://{self.container}"

    def booted(self) -> bool:
        """systemd has finished booting (running, or degraded: a unit failed, shown by the tests)."""
        return booted(self.container)

    def systemctl(self, *args: str) -> str:
        """Runs systemctl on the host; its stdout, AssertionError when it fails."""
        result = self.app_host().run(shlex.join(["systemctl", *args]))
        assert result.rc == 0, f"systemctl {' '.join(args)}: {result.stdout} {result.stderr}"
        return result.stdout.strip()

    def app_log_streams(self) -> dict[str, list[str]]:
        # supervisor_log_target file: one file per program and stream in app_log_dir.
        host = self.app_host()
        listing = host.run(f"ls {self.variables['app_log_dir']}/*.log").stdout.split()
        return {name: host.file(name).content_string.splitlines() for name in listing}

    def nginx_access_lines(self) -> list[str]:
        return self.app_host().file(self.variables["nginx_access_log"]).content_string.splitlines()

    # --- faults -----------------------------------------------------------------------------------
    def restart_stack(self) -> None:
        # A reboot: systemd stops every service, then boots them again; Ansible is not involved.
        run(["docker", "restart", "--time", "60", self.container], timeout=180)
        wait_until(self.healthy, 120, f"{self.base_url} healthy after rebooting {self.container}", 1)

    def stop_redis(self) -> None:
        self.systemctl("stop", "redis-server")

    def start_redis(self) -> None:
        self.systemctl("start", "redis-server")

    def reload_nginx(self, method: str) -> None:
        if method == "ansible handler":
            env = {
                **os.environ,
                "ANSIBLE_CONFIG": str(deploy.REPO / "ansible" / "ansible.cfg"),
                "VM_CONTAINER": self.container,
            }
            playbook = str(deploy.REPO / "tests" / "faults" / "reload-nginx.yml")
            run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(INVENTORY), playbook], 300, env)
        else:
            super().reload_nginx(method)

    def supervisord_pid(self) -> int:
        return int(self.systemctl("show", "--property", "MainPID", "--value", self.service))

    def supervisord_restarts(self) -> int:
        return int(self.systemctl("show", "--property", "NRestarts", "--value", self.service))

    def reboot(self) -> None:
        # docker sends systemd SIGRTMIN+3 (the image's STOPSIGNAL): an orderly shutdown that stops
        # channels-stack.service within its TimeoutStopSec, like `reboot` on a VM.
        run(["docker", "restart", "--time", "90", self.container], timeout=300)
        wait_until(self.booted, BOOT_SECONDS, f"{self.container} booted", 1)

    def stop_stack(self, method: str) -> None:
        if method == "systemctl stop":
            self.systemctl("stop", self.service)
        else:
            super().stop_stack(method)

    def start_stack(self, method: str) -> None:
        if method == "systemctl stop":
            self.systemctl("start", self.service)
        else:
            super().start_stack(method)

    def leftovers(self, method: str) -> list[str]:
        if method == "systemctl stop":
            host = self.app_host()
            uid = host.user(self.app_user).uid
            return [f"{p.pid} {p.args}" for p in processes(host) if p.uid == uid]
        return super().leftovers(method)

    def services_down(self) -> list[str]:
        host = self.app_host()
        return [unit for unit in ("redis-server", "nginx", self.service) if not host.service(unit).is_running]

    def restore(self) -> None:
        if not self.booted():
            wait_until(self.booted, BOOT_SECONDS, f"{self.container} booted", 1)
        for unit in self.services_down():
            self.systemctl("start", unit)
        wait_until(lambda: self.supervisor().status(), 60, "supervisord answers", 1)
        self.start_stopped_programs()
        self.wait_whole()


def build_test_host_image() -> None:
    """Builds the test host image (docker/test-host/), a no-op when it is up to date."""
    run(["docker", "build", "--quiet", "--tag", IMAGE, "docker/test-host"], timeout=900)


def container_exists(container: str) -> bool:
    return bool(run(["docker", "ps", "--all", "--quiet", "--filter", f"name=^{container}$"]))


def booted(container: str) -> bool:
    """systemd in `container` has finished booting (running, or degraded: a unit failed)."""
    result = subprocess.run(
        ["docker", "exec", container, "systemctl", "is-system-running"],
        capture_output=True, text=True, check=False, timeout=COMMAND_SECONDS,
    )  # fmt: skip
    return result.stdout.strip() in {"running", "degraded"}


def start_test_host(
    container: str, publish: list[str] = (), network: str | None = None, address: str | None = None, wait: bool = True
) -> None:
    """Starts the test host container `container` (created from the image when it does not exist),
    with docker run's --publish specs `publish`, on the Docker network `network` at `address` (else
    the default bridge); with wait, returns once systemd has booted (RuntimeError after BOOT_SECONDS).
    The cluster (harness.cluster) starts its five hosts with wait=False, then waits for all."""
    if not container_exists(container):
        placement = [*(["--network", network] if network else []), *(["--ip", address] if address else [])]
        ports = [option for spec in publish for option in ("--publish", spec)]
        run([
            "docker", "run", "--detach", "--name", container, "--hostname", container,
            *DOCKER_RUN_OPTIONS, *placement, *ports, IMAGE,
        ])  # fmt: skip
    run(["docker", "start", container])
    if wait:
        wait_until(lambda: booted(container), BOOT_SECONDS, f"{container}: systemd booted", 1)


def run_playbook(
    inventory: Path,
    env_extra: dict[str, str],
    app_source: Path,
    vars_file: str | None,
    args: tuple[str, ...],
    host: str,
    playbook: str = "site.yml",
) -> PlaybookRun:
    """Runs ansible/<playbook> with `inventory`, the environment plus env_extra (the inventory's names),
    app_source as the release and vars_file as --extra-vars; `host` is the PLAY RECAP line PlaybookRun
    reads. Never raises for a failed run: the returncode says."""
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(deploy.REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "EXTRA_CA_CERTS": os.environ.get("EXTRA_CA_CERTS", DEFAULT_CA_CERTS),
        **env_extra,
    }
    command = [
        str(bin_dir / "ansible-playbook"),
        "--inventory", str(inventory),
        str(deploy.REPO / "ansible" / playbook),
        f"--extra-vars=app_source_dir={Path(app_source).resolve()}",
        *([f"--extra-vars=@{deploy.repo_path(vars_file).resolve()}"] if vars_file else []),
        *args,
    ]  # fmt: skip
    start = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=PLAYBOOK_SECONDS, check=False, cwd=deploy.REPO
    )
    return PlaybookRun(result.returncode, result.stdout + result.stderr, time.monotonic() - start, host)


def snapshot_source(name: str, variables: dict) -> Path:
    """Copies the project (app_project_dir) and its lock file (app_requirements) of `variables` to
    build/vm-source-<name>/, at the same relative paths, and returns it: the release under test, so
    edits made while the tests run cannot make a "new release" mid-test."""
    snapshot = deploy.REPO / "build" / f"vm-source-{name}"
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(parents=True)
    project, requirements = variables["app_project_dir"], variables["app_requirements"]
    shutil.copytree(deploy.REPO / project, snapshot / project, ignore=shutil.ignore_patterns("__pycache__"))
    (snapshot / requirements).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(deploy.REPO / requirements, snapshot / requirements)
    return snapshot
