"""What only the compose stack has: what it publishes on the host, its services' healthchecks and
restart policies, its Redis settings, and the .env that `make up` makes."""

import json
import os
import stat
import subprocess

import pytest
from harness.deploy import REPO, deploy_vars

SERVICES = ["nginx", "app", "redis"]
REDIS_IMAGE = "channels-stack/redis:latest"


@pytest.fixture
def compose(target):
    """The compose command of the stack under test; other targets skip these tests."""
    if not target.compose:
        pytest.skip(f"{target.name}: compose stack only")
    return target.compose


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, **kwargs)


def container(compose, service: str) -> str:
    ids = run([*compose, "ps", "-q", service], cwd=REPO).stdout.split()
    assert ids, f"no container for service {service}"
    return ids[0]


def inspect(container_id: str, template: str):
    return json.loads(run(["docker", "inspect", "--format", "{{json " + template + "}}", container_id]).stdout)


@pytest.mark.parametrize(
    ("service", "expected"),
    [("nginx", {"80/tcp": ["127.0.0.1"], "443/tcp": ["127.0.0.1"]}), ("app", {}), ("redis", {})],
)
def test_only_nginx_is_published_and_only_on_loopback(compose, service, expected):
    """Tests that the host reaches Nginx (HTTP and HTTPS) on 127.0.0.1 only, and that the app and Redis
    publish no port."""
    ports = inspect(container(compose, service), ".NetworkSettings.Ports")
    published = {port: sorted({b["HostIp"] for b in bindings}) for port, bindings in ports.items() if bindings}

    assert published == expected


@pytest.mark.parametrize("service", SERVICES)
def test_service_is_healthy_by_its_healthcheck_and_restarts_unless_stopped(compose, service):
    """Tests that each service has a healthcheck that passes and a restart policy that brings it back."""
    container_id = container(compose, service)

    assert inspect(container_id, ".Config.Healthcheck.Test")
    assert inspect(container_id, ".State.Health.Status") == "healthy"
    assert inspect(container_id, ".HostConfig.RestartPolicy.Name") == "unless-stopped"


def redis_cli(compose, *args: str) -> str:
    """A shell command line in the redis container; its stdout."""
    return run(["docker", "exec", container(compose, "redis"), "sh", "-c", " ".join(args)]).stdout.strip()


def test_redis_requires_the_password_and_keeps_protected_mode_on(compose):
    """Tests that Redis answers NOAUTH without the password, PONG to the app's ACL user with it, and runs
    with protected-mode yes (CONFIG is refused to that user: the settings file it was started with says so)."""
    assert "NOAUTH" in redis_cli(compose, "redis-cli", "ping")
    # The password from the container's own environment, never on this side.
    user = deploy_vars("compose")["redis_app_user"]
    authed_cli = f'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --user {user}'
    assert redis_cli(compose, authed_cli, "ping") == "PONG"
    assert "NOPERM" in redis_cli(compose, authed_cli, "config", "get", "protected-mode")
    assert "protected-mode yes" in redis_cli(compose, "cat", "/etc/redis/channels-stack.conf").splitlines()


def test_redis_refuses_to_start_without_a_password(compose):
    """Tests that the redis image exits with a clear message when REDIS_PASSWORD is empty."""
    result = run(["docker", "run", "--rm", "--env", "REDIS_PASSWORD=", REDIS_IMAGE])

    assert result.returncode == 64
    assert "REDIS_PASSWORD is empty" in result.stderr


def make_env(path) -> subprocess.CompletedProcess:
    return run(["bash", str(REPO / "docker" / "env.sh"), str(path)])


def env_values(path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_env_file_is_made_once_with_random_secrets_and_then_kept(compose, tmp_path):
    """Tests that .env is made with fresh random secrets, private to its owner, and never overwritten."""
    first, second = tmp_path / "first.env", tmp_path / "second.env"
    created = make_env(first)
    make_env(second)
    first.write_text(first.read_text() + "DJANGO_DEBUG=0\n")  # a user's edit
    edited = first.read_text()
    again = make_env(first)

    values, other = env_values(first), env_values(second)
    assert created.returncode == 0 and "created" in created.stdout
    assert again.returncode == 0 and "reusing" in again.stdout
    assert first.read_text() == edited
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert len(values["DJANGO_SECRET_KEY"]) >= 50 and len(values["REDIS_PASSWORD"]) >= 50
    assert values["DJANGO_SECRET_KEY"] != other["DJANGO_SECRET_KEY"]
    assert values["REDIS_PASSWORD"] != other["REDIS_PASSWORD"]
    assert values["REDIS_PASSWORD"] != values["DJANGO_SECRET_KEY"]
