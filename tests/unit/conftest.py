import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from app_processes import app_processes  # noqa: F401 (a fixture the tests use)
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory):
    """A real redis-server on the port the test settings point the channel layer at."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(settings.REDIS_PORT),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=settings.REDIS_PORT)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield client
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(autouse=True)
def empty_redis(redis_server):
    redis_server.flushall()


@pytest.fixture
def api(client):
    """A Django test client that speaks JSON."""

    class Api:
        def post(self, path, data, **extra):
            return client.post(path, data, content_type="application/json", **extra)

        def get(self, path, **params):
            return client.get(path, params)

    return Api()
