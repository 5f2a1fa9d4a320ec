import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from acl_redis import redis_server_argv, render_redis, wait_until_up
from app_processes import app_processes  # noqa: F401 (a fixture the tests use)
from channels.layers import channel_layers
from django.conf import settings
from postgresql_server import PostgresServer

REPO = Path(__file__).resolve().parents[2]


# The tests' own Redis user, for what the app may not do (FLUSHALL between tests, killing clients).
TEST_ADMIN = ("unit-tests-admin", "unit-tests-admin-password")


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory):
    """A real redis-server on the port the test settings point the channel layer at, run from the
    rendered deploy/redis templates (default user off, the app's ACL user); yields a client of the
    tests' own unrestricted user."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    render_redis(workdir, settings.REDIS_PORT)
    admin_rule = [TEST_ADMIN[0], "on", f">{TEST_ADMIN[1]}", "~*", "&*", "+@all"]
    argv = redis_server_argv(workdir, settings.REDIS_APP_PASSWORD, admin_rule)
    process = subprocess.Popen([*argv, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=settings.REDIS_PORT, username=TEST_ADMIN[0], password=TEST_ADMIN[1])
    try:
        wait_until_up(client, process)
    except RuntimeError as exc:
        process.kill()
        pytest.fail(str(exc))
    yield client
    process.terminate()
    process.wait(timeout=10)


# Started first when the session's own database is PostgreSQL (UNIT_DATABASE=postgresql: autouse
# session fixtures run before pytest-django creates its test database); otherwise started the
# first time a test asks for it.
@pytest.fixture(scope="session", autouse=settings.UNIT_DATABASE == "postgresql")
def postgresql_server():
    """A real PostgreSQL cluster (Debian's server, initdb in a temp dir) on settings.POSTGRES_PORT."""
    server = PostgresServer(settings.POSTGRES_PORT, settings.POSTGRES_PASSWORD)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgresql_database(postgresql_server) -> str:
    """DATABASE_URL of a new, empty PostgreSQL database for one test."""
    return postgresql_server.create_database()


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    redis_server.flushall()


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """A new channel layer instance for every test.

    Each async test runs in its own event loop (pytest-asyncio), and channels-redis keeps an
    asyncio.Lock per receiving channel prefix that a background cleaner task releases after each
    message. A cleaner still pending when a test's loop closed left that lock locked and bound to
    the dead loop, and the next test to receive failed with "is bound to a different event loop"
    (seen in CI, test_board_answers_a_bad_frame_with_an_error_and_stays_open). Daphne runs one
    loop per process, so the product itself never meets this.
    """
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def api(client):
    """A Django test client that speaks JSON."""

    class Api:
        def post(self, path, data, **extra):
            return client.post(path, data, content_type="application/json", **extra)

        def get(self, path, **params):
            return client.get(path, params)

    return Api()
