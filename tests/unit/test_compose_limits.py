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
