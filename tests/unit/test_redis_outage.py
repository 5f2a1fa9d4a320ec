"""What a Redis outage does to open sockets and to the workers, with a real redis-server killed mid-test."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator

from config.asgi import application

APP_DIR = Path(__file__).resolve().parents[2] / "app"


class ThrowawayRedis:
    """A redis-server of this test's own, on a free port, that the test can stop and start."""

    def __init__(self, workdir: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.workdir = workdir
        self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout != b"PONG\n":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def throwaway_redis(tmp_path):
    redis = ThrowawayRedis(tmp_path)
    redis.start()
    yield redis
    if redis.process.poll() is None:
        redis.stop()


@pytest.mark.django_db(transaction=True)
async def test_open_board_socket_is_closed_with_4503_when_redis_dies(throwaway_redis, settings):
    """Tests that a socket that can no longer get live messages is closed with 'try again later'."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": throwaway_redis.url, "socket_connect_timeout": 1}]},
        }
    }
    ws = WebsocketCommunicator(application, "/ws/board/?after=0", headers=[(b"origin", b"http://localhost")])
    assert (await ws.connect())[0] is True
    assert (await ws.receive_json_from(timeout=5))["type"] == "ready"
    throwaway_redis.stop()
    assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4503}


def test_runworker_rides_out_a_redis_outage_and_then_runs_jobs(throwaway_redis, tmp_path):
    """Tests that `runworker jobs` keeps its PID through a Redis outage and runs a job after it."""
    env = {
        **os.environ,
        "APP_DATA_DIR": str(tmp_path),
        "REDIS_URL": throwaway_redis.url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "JOB_STEP_SECONDS": "0.05",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=APP_DIR, env=env, check=True)
    worker = subprocess.Popen(
        [*manage, "runworker", "jobs"],
        cwd=APP_DIR,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        time.sleep(2)
        throwaway_redis.stop()
        time.sleep(4)
        assert worker.poll() is None, "the worker exited while Redis was down"
        throwaway_redis.start()
        created = subprocess.run(
            [*manage, "shell", "-v", "0", "-c", "from board.services import create_job; print(create_job(3).id)"],
            cwd=APP_DIR,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        job_id = created.stdout.strip().splitlines()[-1]
        check = f"from board.models import Job; print(Job.objects.get(pk={job_id}).state)"
        deadline = time.monotonic() + 30
        while (
            state := subprocess.run(
                [*manage, "shell", "-v", "0", "-c", check], cwd=APP_DIR, env=env, capture_output=True, text=True
            ).stdout.strip()
        ) != "finished":
            assert time.monotonic() < deadline, f"job is {state} 30 s after Redis came back"
            time.sleep(0.5)
        assert worker.poll() is None
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        _, stderr = worker.communicate(timeout=10)
    assert "receiving from channel jobs failed" in stderr
