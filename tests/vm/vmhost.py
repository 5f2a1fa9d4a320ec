"""What the VM tier drives: the local test host of ansible/vm.mk (testinfra, supervisorctl), its
site through Nginx on the published port, and the playbook."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import requests
from e2e.targets import deploy_vars

REPO = Path(__file__).resolve().parents[2]
VM_CONTAINER = os.environ.get("VM_CONTAINER", "channels-stack-vm")
BASE_URL = f"http://127.0.0.1:{os.environ.get('VM_HTTP_PORT', '8081')}"
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", REPO / "artifacts"))
# Where the app version under test comes from: the checkout, or the snapshot tests/vm/run.sh made.
APP_SOURCE = (REPO / os.environ.get("VM_APP_SOURCE", ".")).resolve()
# The deploy variables the test host is provisioned with: deploy/defaults.yml, the local-vm inventory
# and VM_VARS (the playbook's --extra-vars file; `make test-vm` sets it to docker/e2e-vars.yml).
DEPLOY = deploy_vars("vm")
VM_VARS = os.environ.get("VM_VARS", "")
SUPERVISORCTL_PATH = f"{DEPLOY['app_venv']}/bin/supervisorctl"
SUPERVISORD_CONF = f"{DEPLOY['app_config_dir']}/supervisord.conf"
SUPERVISORCTL = f"{SUPERVISORCTL_PATH} -c {SUPERVISORD_CONF}"
PROGRAMS = [
    "gunicorn",
    *(f"daphne:daphne-{DEPLOY['daphne_base_port'] + n}" for n in range(DEPLOY["daphne_processes"])),
    *(f"worker:worker-{n}" for n in range(DEPLOY["worker_processes"])),
]
UNIT = f"{DEPLOY['app_name']}.service"

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call check until it returns something truthy (returned); AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 (a failing probe means "not yet")
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s; last seen: {last!r}")
        time.sleep(interval)


def program_pids(host) -> dict[str, int]:
    """group:name -> PID of every supervisor program, once each one is RUNNING and PROGRAMS are among
    them (the stack may run more, e.g. an event listener); {} until then."""
    status = {}
    for line in host.run(SUPERVISORCTL + " status").stdout.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            status[fields[0]] = int(fields[3].rstrip(",")) if fields[1:3] == ["RUNNING", "pid"] else 0
    return status if status and all(status.values()) and set(PROGRAMS) <= set(status) else {}


def pid_samples(host, seconds: float, interval: float = 1.0) -> list[dict[str, int]]:
    """program_pids sampled every interval for seconds: a crash loop shows as changing PIDs or {}."""
    samples = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(program_pids(host))
        time.sleep(interval)
    return samples


def site_healthy() -> bool:
    """True when Nginx on the published port answers both health probes (Gunicorn and Daphne)."""
    return all(
        requests.get(BASE_URL + path, timeout=5).json()["status"] == "ok" for path in ("/healthz", "/ws/healthz")
    )


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters of the test host (ok, changed, failed, ...)."""
        match = re.search(rf"^{re.escape(VM_CONTAINER)}\s*:\s*(.*)$", self.output, re.MULTILINE)
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


def record_timing(what: str, seconds: float) -> None:
    """Appends a measured wall time to artifacts/vm-timings.txt (tests/vm/run.sh prints it at the end)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "vm-timings.txt").open("a") as timings:
        timings.write(f"test-vm: {what} took {seconds:.0f} s\n")


def run_playbook(*args: str) -> PlaybookRun:
    """Runs ansible/site.yml against the test host with the local-vm inventory, like `make vm`."""
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "VM_CONTAINER": VM_CONTAINER,
    }
    command = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "--inventory",
        str(REPO / "ansible" / "inventories" / "local-vm"),
        str(REPO / "ansible" / "site.yml"),
        f"--extra-vars=app_source_dir={APP_SOURCE}",
        *([f"--extra-vars=@{(REPO / VM_VARS).resolve()}"] if VM_VARS else []),
        *args,
    ]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900, check=False)
    return PlaybookRun(result.returncode, result.stdout + result.stderr, time.monotonic() - start)
