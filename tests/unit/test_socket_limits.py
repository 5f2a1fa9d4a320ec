"""Abuse limits on board sockets (app/board/limits.py, Daphne's message size): a socket over its post
rate gets an error frame and stays open, other sockets are untouched, a client within the rate is
never limited, and an oversized message closes only its own socket with 1009. Real Redis; the size
limit against a real Daphne process started with the rendered supervisor command's option."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
import yaml
from app_processes import APP_DIR
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from listeners import free_port, wait_until_listening

from board.limits import PostRate
from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
DEFAULTS = yaml.safe_load((REPO / "deploy" / "defaults.yml").read_text())
HEADERS = [(b"host", b"localhost"), (b"origin", b"http://localhost")]


async def open_board() -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, "/ws/board/?after=0", headers=HEADERS)
    connected, _ = await ws.connect()
    assert connected
    while (await ws.receive_json_from(timeout=5))["type"] != "ready":
        pass
    return ws


async def post(ws: WebsocketCommunicator, text: str) -> dict:
    """Send a post frame; the frame the socket answers with (its own message, or an error)."""
    await ws.send_json_to({"type": "post", "text": text})
    return await ws.receive_json_from(timeout=5)


@pytest.fixture
def tight_rate(settings):
    """3 posts at once, then 2 per second: quick to exceed in a test."""
    settings.WS_POST_BURST = 3
    settings.WS_POST_RATE = 2
    return settings


async def answers_to(ws: WebsocketCommunicator, texts: list[str]) -> list[dict]:
    """Send every post at once, then read one answer per post (its message back, or an error)."""
    for text in texts:
        await ws.send_json_to({"type": "post", "text": text})
    return [await ws.receive_json_from(timeout=5) for _ in texts]


async def test_posts_over_the_socket_rate_get_an_error_frame_and_the_socket_stays_open(tight_rate):
    """Tests that posts sent at once past the burst are refused with a rate-limit error frame and not
    stored (only the burst and what the rate refilled meanwhile get through), and that the same socket
    posts again once the bucket has room."""
    from board.models import Message

    ws = await open_board()
    started = time.monotonic()
    answers = await answers_to(ws, [f"flood {n}" for n in range(9)])
    elapsed = time.monotonic() - started
    accepted = [a["text"] for a in answers if a["type"] == "message"]
    refused = [a for a in answers if a["type"] == "error"]
    # Error frames come straight back, accepted posts through the channel layer: answers are not in
    # the posts' order. The first `burst` posts are always accepted.
    assert {"flood 0", "flood 1", "flood 2"} <= set(accepted)
    assert refused and len(accepted) <= 3 + int(elapsed * 2) + 1, (accepted, elapsed)
    assert refused[0]["error"].startswith("rate limited: at most 3 posts at once and 2 per second on one socket")
    assert refused[0]["retry_after"] == 0.5
    await asyncio.sleep(refused[0]["retry_after"] * 1.5)
    assert (await post(ws, "after the wait"))["text"] == "after the wait"
    texts = [m.text async for m in Message.objects.order_by("id")]
    assert sorted(texts[:-1]) == sorted(accepted) and texts[-1] == "after the wait"
    await ws.disconnect()


async def test_a_limited_socket_leaves_other_sockets_their_own_budget(tight_rate):
    """Tests that the limit is per socket: another client posts its whole burst while one is limited."""
    flooder, other = await open_board(), await open_board()
    answers = await answers_to(flooder, [f"f{n}" for n in range(9)])
    assert any(a["type"] == "error" for a in answers)
    # Drain the flooder's accepted posts, which the other socket receives live too.
    for _ in [a for a in answers if a["type"] == "message"]:
        assert (await other.receive_json_from(timeout=5))["type"] == "message"
    assert [a["type"] for a in await answers_to(other, ["o0", "o1", "o2"])] == ["message"] * 3
    await flooder.disconnect()
    await other.disconnect()


async def test_a_client_posting_within_the_rate_is_never_limited(tight_rate):
    """Tests that twice the burst, posted no faster than the rate, all go through (a slow machine only
    makes the client slower, never limited)."""
    ws = await open_board()
    for n in range(6):
        assert (await post(ws, f"steady {n}"))["type"] == "message"
        await asyncio.sleep(1 / 2 * 1.1)
    await ws.disconnect()


def test_post_rate_settings_default_to_the_deploy_variables():
    """Tests that the app's defaults (no environment) are deploy/defaults.yml's, so a target that does
    not pass them gets the documented limit."""
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings as s; print(s.WS_POST_RATE, s.WS_POST_BURST)"],
        cwd=APP_DIR,
        env={k: v for k, v in os.environ.items() if k not in ("WS_POST_RATE", "WS_POST_BURST")}
        | {"DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    rate, burst = map(float, result.stdout.split())
    assert (rate, burst) == (DEFAULTS["daphne_ws_post_rate"], DEFAULTS["daphne_ws_post_burst"])


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [(0, 10, "WS_POST_RATE=0"), (-1, 10, "WS_POST_RATE=-1"), (1, 0, "WS_POST_BURST=0"), (1, 2.5, "WS_POST_BURST=2.5")],
)
def test_bad_post_rate_settings_are_refused_with_their_names(rate, burst, message):
    """Tests that a rate or burst no bucket can have is an ImproperlyConfigured naming it."""
    with pytest.raises(ImproperlyConfigured, match=message):
        PostRate(rate, burst)


def test_daphne_and_supervisor_get_the_limits_from_the_deploy_variables(tmp_path):
    """Tests that the rendered Daphne command limits message and frame size, and passes the post rate."""
    subprocess.run(
        [sys.executable, str(REPO / "deploy" / "render.py"), "--root", str(tmp_path), "--only", "supervisor/"],
        check=True,
    )
    programs = (tmp_path / "etc/channels-stack/supervisor.d/programs.conf").read_text()
    daphne = programs[programs.index("[program:daphne]") : programs.index("[program:worker]")]
    size = DEFAULTS["daphne_ws_max_message_size"]
    assert f"--websocket-max-message-size {size} --websocket-max-frame-size {size}" in daphne
    rate, burst = DEFAULTS["daphne_ws_post_rate"], DEFAULTS["daphne_ws_post_burst"]
    assert f',WS_POST_RATE="{rate}",WS_POST_BURST="{burst}"\n' in daphne


@pytest.fixture
def daphne(app_processes, tmp_path):
    """A real Daphne with the deploy's message size limit, on a free port; its ws:// base URL."""
    app = app_processes(settings.REDIS_URL)
    port = free_port()
    size = str(DEFAULTS["daphne_ws_max_message_size"])
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "daphne"), "--bind", "127.0.0.1", "--port", str(port)]
        + ["--websocket-max-message-size", size, "--websocket-max-frame-size", size, "config.asgi:application"],
        cwd=APP_DIR,
        env=app.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until_listening(process, port, 30, "daphne")
    yield f"ws://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


async def ready(ws) -> None:
    while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "ready":
        pass


async def test_a_message_over_the_size_limit_closes_only_its_socket_with_1009(daphne):
    """Tests that Daphne closes a socket sending a message over daphne_ws_max_message_size with 1009
    "message too big", while another socket on the same process keeps posting."""
    kwargs = {"origin": daphne.replace("ws://", "http://")}  # the same origin as the socket's URL
    async with (
        websockets.connect(f"{daphne}/ws/board/?after=0", **kwargs) as big,
        websockets.connect(f"{daphne}/ws/board/?after=0", **kwargs) as other,
    ):
        await ready(big)
        await ready(other)
        oversized = json.dumps({"type": "post", "text": "x" * DEFAULTS["daphne_ws_max_message_size"]})
        await big.send(oversized)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(big.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        await other.send(json.dumps({"type": "post", "text": "still here"}))
        assert json.loads(await asyncio.wait_for(other.recv(), 10))["text"] == "still here"


async def test_the_largest_valid_post_fits_under_the_size_limit(daphne):
    """Tests that a 500-character post of escaped surrogate pairs (the largest valid frame) is accepted."""
    kwargs = {"origin": daphne.replace("ws://", "http://")}  # the same origin as the socket's URL
    async with websockets.connect(f"{daphne}/ws/board/?after=0", **kwargs) as ws:
        await ready(ws)
        text = "\U0001f600" * 500  # 500 characters, each escaped as \ud83d\ude00 by json.dumps
        frame = json.dumps({"type": "post", "text": text})
        assert len(frame) > 6000
        await ws.send(frame)
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["text"] == text
