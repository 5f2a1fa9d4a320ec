"""Tests that docker-compose.yml's open-file limits (`ulimits: nofile`) cover what the configs rendered
into the images ask for: a container's processes cannot raise their hard limit (no CAP_SYS_RESOURCE),
so a limit below the config's would cap Nginx's sockets (setrlimit fails) or stop supervisord (minfds).
The configs are rendered as docker/Dockerfile renders them: deploy/defaults.yml, docker/deploy-vars.yml,
then a staged VARS file (the bench profile is the one the repository ships)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("render", REPO / "deploy" / "render.py")
render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render)

# The stacks docker-compose.yml is built for: `make up` (no VARS) and `make bench` (its profile).
VARS_FILES = {
    "make-up": [REPO / "docker" / "deploy-vars.yml"],
    "bench-profile": [REPO / "docker" / "deploy-vars.yml", REPO / "bench" / "profile.yml"],
}


def rendered(stack: str, template: str) -> str:
    """The text of one deploy template as the images of `stack` hold it."""
    files = render.render_all(render.load_vars(VARS_FILES[stack], []), [template])
    (text,) = [text for _, text in files.values()]
    return text


def directive(text: str, name: str) -> int:
    """The number a config sets `name` to (`name 123;` or `name = 123`)."""
    found = re.findall(rf"^\s*{name}\s*=?\s*(\d+);?\s*$", text, flags=re.MULTILINE)
    assert len(found) == 1, f"{name}: {found}"
    return int(found[0])


def nofile(service: str) -> tuple[int, int]:
    """(soft, hard) open-file limit docker-compose.yml gives `service`."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    limit = compose["services"][service].get("ulimits", {}).get("nofile")
    assert limit is not None, f"docker-compose.yml sets no ulimits: nofile for {service}"
    if isinstance(limit, int):
        return limit, limit
    return limit["soft"], limit["hard"]


@pytest.mark.parametrize("stack", sorted(VARS_FILES))
def test_nginx_containers_open_file_limit_covers_the_workers_rlimit(stack):
    """Tests that the nginx service's soft and hard nofile are at least nginx.conf's worker_rlimit_nofile."""
    conf = rendered(stack, "nginx/nginx.conf")
    wanted = directive(conf, "worker_rlimit_nofile")
    assert wanted > directive(conf, "worker_connections")
    soft, hard = nofile("nginx")
    assert soft >= wanted and hard >= wanted, (
        f"docker-compose.yml nginx ulimits nofile {soft}:{hard} < worker_rlimit_nofile {wanted} "
        "(nginx_worker_connections + 1024): raise the ulimit or lower nginx_worker_connections"
    )


@pytest.mark.parametrize("stack", sorted(VARS_FILES))
def test_app_containers_open_file_limit_covers_supervisords_minfds(stack):
    """Tests that the app service's soft and hard nofile are at least supervisord's minfds (app_max_open_files)."""
    wanted = directive(rendered(stack, "supervisor/supervisord.conf"), "minfds")
    soft, hard = nofile("app")
    assert soft >= wanted and hard >= wanted, (
        f"docker-compose.yml app ulimits nofile {soft}:{hard} < minfds {wanted} (app_max_open_files)"
    )


def test_nginx_defaults_hold_ten_thousand_websockets_on_two_workers():
    """Tests that the default worker_connections let 2 workers (2 cores) hold 10,000 WebSockets, two
    connections each (issue 9's target; 4096 stopped at 3,988)."""
    workers, per_socket = 2, 2
    connections = directive(rendered("make-up", "nginx/nginx.conf"), "worker_connections")
    assert workers * connections // per_socket >= 10_000


# --- hardening (issue 12, item 2): tests/scan/test_container_limits.py checks the running containers ---

SERVICES = ("nginx", "app", "redis", "db")
UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3}


def size_bytes(value: str | int) -> int:
    """Bytes of a compose or Redis size: 512m, 2g (compose: powers of 1024), 256mb (Redis: mb is 1024²)."""
    match = re.fullmatch(r"(\d+)\s*([kmg]?)b?", str(value).lower())
    assert match, f"not a size: {value!r}"
    return int(match[1]) * UNITS.get(match[2], 1)


def service(name: str) -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][name]


@pytest.mark.parametrize("name", SERVICES)
def test_every_service_runs_read_only_with_memory_and_pids_limits_and_no_capabilities_but_its_own(name):
    """Tests that docker-compose.yml gives each service a read-only root file system, a memory and a
    pids limit, drops every capability (Nginx adds back only what its root master uses) and sets
    no-new-privileges."""
    settings = service(name)

    assert settings.get("read_only") is True
    assert size_bytes(settings["mem_limit"]) > 0
    assert settings["pids_limit"] > 0
    assert settings["cap_drop"] == ["ALL"]
    kept = {"CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"} if name == "nginx" else set()
    assert set(settings.get("cap_add", [])) <= kept
    assert "no-new-privileges:true" in settings["security_opt"]


def test_redis_memory_limit_leaves_room_above_maxmemory():
    """Tests that the redis service's mem_limit is at least twice redis_maxmemory (deploy/defaults.yml):
    Redis' own overhead and client output buffers come on top of maxmemory, and a container killed for
    memory loses every queued channel message, while a full Redis only refuses writes (noeviction)."""
    maxmemory = render.load_vars(VARS_FILES["make-up"], [])["redis_maxmemory"]

    assert size_bytes(service("redis")["mem_limit"]) >= 2 * size_bytes(maxmemory)


@pytest.mark.parametrize(
    ("name", "user", "tmpfs_path"), [("app", "channels", "/run/channels-stack"), ("db", "postgres", "/run/postgresql")]
)
def test_tmpfs_run_dirs_belong_to_the_uid_the_dockerfile_fixes(name, user, tmpfs_path):
    """Tests that the tmpfs a read-only service writes its socket to is owned by the uid and gid
    docker/Dockerfile gives that service's user (a tmpfs cannot be chowned by a process without
    capabilities, so the numbers must agree)."""
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    uid = re.search(rf"useradd --system --uid (\d+) (?:(?!RUN).)*?\b{user}$", dockerfile, re.MULTILINE | re.DOTALL)
    gid = re.search(rf"groupadd --system --gid (\d+) {user}\b", dockerfile)
    assert uid and gid, f"docker/Dockerfile fixes no uid/gid for {user}"
    (options,) = [entry.partition(":")[2] for entry in service(name)["tmpfs"] if entry.partition(":")[0] == tmpfs_path]

    assert f"uid={uid[1]}" in options.split(",") and f"gid={gid[1]}" in options.split(","), options
