"""The compose stack's database choice: SQLite by default, PostgreSQL (the db service of the
`postgres` profile) with `make test-compose DATABASE=postgresql` (APP_DATABASE=postgresql)."""

import json
import os
import subprocess

import pytest
from harness.deploy import REPO, deploy_vars

ON_POSTGRESQL = os.environ.get("APP_DATABASE", "sqlite") == "postgresql"


@pytest.fixture
def compose(target):
    """The compose command of the stack under test; other targets skip these tests."""
    if not target.compose:
        pytest.skip(f"{target.name}: compose stack only")
    return target.compose


def run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def db_container(compose) -> str:
    return run([*compose, "ps", "-q", "db"])


@pytest.mark.skipif(ON_POSTGRESQL, reason="the stack runs PostgreSQL (APP_DATABASE=postgresql)")
def test_the_default_stack_runs_no_database_service_and_the_app_uses_sqlite(compose):
    """Tests that without the postgres profile there is no db container and the app has no DATABASE_URL."""
    assert db_container(compose) == ""
    app = run([*compose, "ps", "-q", "app"])
    assert run(["docker", "exec", app, "sh", "-c", 'echo "${DATABASE_URL:-none}"']) == "none"


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the stack runs SQLite (the default)")
def test_messages_are_stored_in_the_db_services_postgresql_which_publishes_nothing(compose, site):
    """Tests that with the postgres profile a posted message is a row in the db service's
    PostgreSQL, and that the db container is healthy, unpublished and keeps its data in a volume."""
    container = db_container(compose)
    assert container, "no db container: is the postgres profile on?"
    assert run(["docker", "inspect", "--format", "{{.State.Health.Status}}", container]) == "healthy"
    ports = json.loads(run(["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", container]))
    assert not any(ports.values()), f"the db service publishes {ports}"
    text = f"stored in postgresql {os.getpid()}"
    message = site.post_message(text)
    variables = deploy_vars("compose")
    query = f"SELECT text FROM board_message WHERE id = {int(message['id'])}"  # noqa: S608 (an id we got back)
    # Debian keeps the server's own psql out of PATH; the container's user is postgres (peer login).
    psql = [
        "sh",
        "-c",
        '"$(echo /usr/lib/postgresql/*/bin/psql)" "$@"',
        "psql",
        "-XAtq",
        "-p",
        str(variables["postgresql_port"]),
        "-d",
        variables["postgresql_database"],
    ]
    assert run(["docker", "exec", container, *psql, "-c", query]) == text
    mounts = run(["docker", "inspect", "--format", "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}", container])
    assert "volume:/var/lib/postgresql" in mounts
