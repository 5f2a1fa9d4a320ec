"""What a Redis outage does to open sockets and to the workers, with a real redis-server killed mid-test."""

import subprocess
import time
from pathlib import Path

import pytest
import redis
from acl_redis import wait_until_up
from app_processes import wait_for
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from layer_settings import channel_layers_at
from listeners import free_port

from board import services
from config.asgi import application


class ThrowawayRedis:
    """A redis-server of this test's own, on a free port, that the test can stop and start."""

    def __init__(self, workdir: Path):
        self.port = free_port()
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
        wait_until_up(redis.Redis(port=self.port), self.process, timeout=10)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


@pytest.fixture
def throwaway_redis(tmp_path):
    server = ThrowawayRedis(tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.stop()


def board_socket() -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, "/ws/board/?after=0", headers=[(b"host", b"localhost"), (b"origin", b"http://localhost")]
    )


@pytest.mark.django_db(transaction=True)
async def test_open_board_socket_is_closed_with_4503_when_redis_dies(throwaway_redis, settings):
    """Tests that a socket that can no longer get live messages is closed with 'try again later'."""
    settings.CHANNEL_LAYERS = channel_layers_at(throwaway_redis.url, socket_connect_timeout=1)
    ws = board_socket()
    assert (await ws.connect())[0] is True
    assert (await ws.receive_json_from(timeout=5))["type"] == "ready"
    throwaway_redis.stop()
    assert await ws.receive_output(timeout=10) == {"type": "websocket.close", "code": 4503}


@pytest.mark.django_db(transaction=True)
async def test_board_socket_opened_while_redis_is_down_is_refused_with_4503(throwaway_redis, settings):
    """Tests that a handshake that cannot join the board group is refused with 'try again later'."""
    settings.CHANNEL_LAYERS = channel_layers_at(throwaway_redis.url, socket_connect_timeout=1)
    throwaway_redis.stop()
    assert await board_socket().connect(timeout=10) == (False, 4503)


@pytest.mark.django_db(transaction=True)
async def test_after_redis_comes_back_new_board_sockets_get_live_messages(throwaway_redis, settings):
    """Tests that the layer of a process that lost Redis subscribes afresh once Redis is back.

    The same process (event loop, channel layer) throughout, as in a Daphne that outlives an outage.
    """
    settings.CHANNEL_LAYERS = channel_layers_at(throwaway_redis.url, socket_connect_timeout=1)
    before = board_socket()
    assert (await before.connect())[0] is True
    await before.receive_json_from(timeout=5)
    throwaway_redis.stop()
    assert (await before.receive_output(timeout=10))["code"] == 4503
    throwaway_redis.start()
    after = board_socket()
    assert (await after.connect())[0] is True
    assert (await after.receive_json_from(timeout=5))["type"] == "ready"
    message = await database_sync_to_async(services.post_message)("after the outage")
    frame = await after.receive_json_from(timeout=5)
    assert (frame["type"], frame["id"], frame["text"]) == ("message", message.id, "after the outage")
    await after.disconnect()


def test_runworker_rides_out_a_redis_outage_and_then_runs_jobs(throwaway_redis, app_processes):
    """Tests that `runworker jobs` keeps its PID through a Redis outage and runs a job after it."""
    app = app_processes(throwaway_redis.url, JOB_STEP_SECONDS="0.05")
    worker = app.start_worker()
    time.sleep(2)
    throwaway_redis.stop()
    time.sleep(4)
    assert worker.poll() is None, "the worker exited while Redis was down"
    throwaway_redis.start()
    job_id = app.create_job(3)
    wait_for(lambda: app.job(job_id)[0] == "finished", 30, "the job to finish after Redis came back")
    assert worker.poll() is None
    assert "receiving from channel jobs failed" in app.kill(worker)
