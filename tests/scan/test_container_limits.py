"""Tests that each container of the running compose stack is held in as docker-compose.yml says, as
Docker and the kernel apply it (docker inspect, and the container's own /proc and cgroup files): a
read-only root file system, memory and pids limits, no capability beyond the ones it uses, no way to
gain more. The db service (postgres profile) is checked when the stack runs it; its settings are
checked offline in tests/unit/test_compose_limits.py either way."""

from __future__ import annotations

import json
import subprocess

import pytest

# The capabilities each service keeps (docker-compose.yml says why): Nginx's root master binds port 80,
# switches its workers to www-data and owns its temp dirs; the others run as their own user and need none.
KEPT_CAPABILITIES = {
    "nginx": {"CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"},
    "app": set(),
    "redis": set(),
    "db": set(),
}
# Paths each service writes (its data volume or a tmpfs); everything else is read-only.
WRITABLE = {
    "nginx": ["/run", "/var/lib/nginx", "/var/log/nginx"],
    "app": ["/var/lib/channels-stack", "/run/channels-stack", "/var/log/channels-stack", "/tmp"],  # noqa: S108
    "redis": [],
    "db": ["/var/lib/postgresql", "/run/postgresql", "/tmp"],  # noqa: S108
}


def running_services(compose) -> list[str]:
    return compose.compose_run("ps", "--services", "--filter", "status=running").split()


def inspect(container: str) -> dict:
    result = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)[0]


def exec_in(container: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "exec", container, "sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.fixture(params=sorted(KEPT_CAPABILITIES))
def service(request, compose):
    """(name, container id) of each compose service that runs; db is skipped without the postgres profile."""
    name = request.param
    if name not in running_services(compose):
        pytest.skip(f"the compose stack runs no {name} service (db: make test-compose DATABASE=postgresql)")
    return name, compose.container(name)


def test_container_root_file_system_is_read_only(service):
    """Tests that the container's root file system is read-only: a file cannot be created in / or /etc."""
    name, container = service
    assert inspect(container)["HostConfig"]["ReadonlyRootfs"] is True

    result = exec_in(container, "touch /etc/scan-probe || touch /scan-probe")

    assert result.returncode != 0 and "Read-only file system" in result.stderr, (result.returncode, result.stderr)


def test_container_writes_only_where_its_service_needs(service):
    """Tests that each path the service writes is a volume or a tmpfs and writable by the service's user."""
    name, container = service
    details = inspect(container)
    mounts = {m["Destination"] for m in details["Mounts"]} | set(details["HostConfig"].get("Tmpfs") or {})

    assert sorted(set(WRITABLE[name]) - mounts) == []
    for path in WRITABLE[name]:
        result = exec_in(container, f"f={path}/.scan-probe-$$ && touch $f && rm $f")
        assert result.returncode == 0, f"{name}: {path} not writable by its user: {result.stderr}"


def test_container_has_memory_and_pids_limits_the_kernel_applies(service):
    """Tests that the container has a memory and a pids limit, and that its cgroup holds the same values."""
    name, container = service
    host_config = inspect(container)["HostConfig"]
    assert host_config["Memory"] > 0, f"{name}: no mem_limit"
    assert (host_config["PidsLimit"] or 0) > 0, f"{name}: no pids_limit"

    # cgroup v2 (one hierarchy), else v1 (one per controller), as the Docker host mounts it.
    result = exec_in(
        container,
        "cd /sys/fs/cgroup && if [ -f memory.max ]; then cat memory.max pids.max;"
        " else cat memory/memory.limit_in_bytes pids/pids.max; fi",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(host_config["Memory"]), str(host_config["PidsLimit"])]


def test_container_keeps_only_the_capabilities_it_uses(service):
    """Tests that every capability is dropped but the service's own (none for app, redis, db), that the
    main process's bounding set is exactly those, and that setuid binaries cannot raise it
    (no-new-privileges)."""
    name, container = service
    host_config = inspect(container)["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"]
    assert set(host_config["CapAdd"] or []) == KEPT_CAPABILITIES[name]
    assert "no-new-privileges:true" in host_config["SecurityOpt"]

    # capsh is not in the images: decode the bounding set of PID 1 with the kernel's numbering.
    bits = {"CHOWN": 0, "SETGID": 6, "SETUID": 7, "NET_BIND_SERVICE": 10}
    result = exec_in(container, "grep -E '^(CapBnd|NoNewPrivs):' /proc/1/status")
    status = dict(line.split(":\t") for line in result.stdout.splitlines())
    assert int(status["CapBnd"], 16) == sum(1 << bits[cap] for cap in KEPT_CAPABILITIES[name])
    assert status["NoNewPrivs"].strip() == "1"
