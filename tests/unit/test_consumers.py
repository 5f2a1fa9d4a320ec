"""The WebSocket consumers through the full ASGI application (origin check included), real Redis."""

import asyncio
import io
import json

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.management import call_command

from board import services
from board.models import Job, Message
from config.asgi import application

# Also run on PostgreSQL (make test-unit: UNIT_DATABASE=postgresql -m postgresql).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

ORIGIN = (b"origin", b"http://localhost")


def communicator(path: str, origin=ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")] + ([origin] if origin else [])
    return WebsocketCommunicator(application, path, headers=headers)


@database_sync_to_async
def make_messages(count: int) -> list[int]:
    return [Message.objects.create(text=f"m{n}").id for n in range(count)]


async def is_refused(ws: WebsocketCommunicator) -> bool:
    """Connect; True if the handshake was refused. Always ends the connection, as Daphne would."""
    connected, _ = await ws.connect()
    # The refusing consumer listens on the channel layer until it hears the disconnect.
    await ws.disconnect()
    return not connected


async def receive_until_ready(ws) -> list[dict]:
    frames = []
    while True:
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == "ready":
            return frames
        frames.append(frame)


@pytest.mark.parametrize(
    "origin",
    [(b"origin", b"http://evil.example"), (b"origin", b"null"), None],
    ids=["foreign", "null", "missing"],
)
async def test_board_handshake_with_foreign_or_missing_origin_is_refused(origin):
    """Tests that a handshake whose Origin is foreign, "null" or missing is refused."""
    assert await is_refused(communicator("/ws/board/", origin=origin))


async def test_board_handshake_from_an_allowed_origin_is_accepted():
    """Tests that a handshake from the site's own origin is accepted and told it is ready."""
    ws = communicator("/ws/board/?after=0")
    connected, _ = await ws.connect()
    assert connected is True
    assert (await ws.receive_json_from())["type"] == "ready"
    await ws.disconnect()


@pytest.mark.parametrize("after", ["x", "-1", "1_0", "%D9%A1", "99999999999999999999", "9" * 5000])
async def test_board_handshake_with_a_bad_after_is_refused(after):
    """Tests that a resume point that is not a non-negative 64-bit integer in ASCII digits refuses the handshake."""
    assert await is_refused(communicator(f"/ws/board/?after={after}"))


async def test_board_sends_the_backlog_after_the_given_id_then_live_messages_in_order():
    """Tests that a client gets every message after its id, oldest first, then new ones as they come."""
    ids = await make_messages(4)
    ws = communicator(f"/ws/board/?after={ids[1]}")
    await ws.connect()
    backlog = await receive_until_ready(ws)
    assert [f["id"] for f in backlog] == ids[2:]
    await ws.send_json_to({"type": "post", "text": "live one"})
    live = await ws.receive_json_from(timeout=5)
    assert live["type"] == "message" and live["text"] == "live one" and live["id"] == ids[-1] + 1
    await ws.disconnect()


async def test_board_backlog_longer_than_one_page_is_sent_whole():
    """Tests that a client more than 200 messages behind still gets every one of them, in order."""
    ids = await make_messages(450)
    ws = communicator("/ws/board/?after=0")
    await ws.connect()
    backlog = await receive_until_ready(ws)
    assert [f["id"] for f in backlog] == ids
    await ws.disconnect()


async def test_board_without_after_sends_the_latest_50_like_the_page():
    """Tests that a client that gives no resume point gets the same 50 messages the page shows."""
    ids = await make_messages(60)
    ws = communicator("/ws/board/")
    await ws.connect()
    assert [f["id"] for f in await receive_until_ready(ws)] == ids[-50:]
    await ws.disconnect()


async def test_board_fills_a_gap_when_a_broadcast_overtakes_an_earlier_one():
    """Tests that a broadcast arriving before an earlier one still yields each id once, in order."""
    ws = communicator("/ws/board/?after=0")
    await ws.connect()
    await receive_until_ready(ws)
    first, second = await make_messages(2)
    layer = get_channel_layer()
    message = await database_sync_to_async(Message.objects.get)(pk=second)
    await layer.group_send("board", services.board_event(message))
    message = await database_sync_to_async(Message.objects.get)(pk=first)
    await layer.group_send("board", services.board_event(message))
    frames = [await ws.receive_json_from(timeout=5), await ws.receive_json_from(timeout=5)]
    assert [f["id"] for f in frames] == [first, second]
    assert await ws.receive_nothing(timeout=0.3)
    await ws.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "invalid JSON"),
        (b"\x00\x01", "binary frames are not supported"),
        ("[1]", "must be a JSON object"),
        (json.dumps({"type": "shout"}), "unknown frame type"),
        (json.dumps({"type": "post", "text": " "}), "must not be blank"),
        (json.dumps({"type": "post", "text": "x" * 501}), "at most 500 characters"),
        (json.dumps({"type": "post", "text": 7}), "must be a string"),
        # Text no database can store: the frame is refused, the socket stays open (it was closed 1011).
        ('{"type": "post", "text": "\\ud800"}', "lone surrogate (U+D800)"),
        ('{"type": "post", "text": "a\\udc00b"}', "lone surrogate (U+DC00)"),
        ('{"type": "post", "text": "a\\u0000b"}', "must not contain NUL"),
        # What json.loads raises besides JSONDecodeError.
        ("[" * 50_000, "nested too deeply"),
        ('{"type": "post", "text": ' + "9" * 5000 + "}", "invalid JSON"),
    ],
)
async def test_board_answers_a_bad_frame_with_an_error_and_stays_open(frame, error):
    """Tests that a bad frame gets an error frame, stores nothing, and the socket still works."""
    ws = communicator("/ws/board/?after=0")
    await ws.connect()
    await receive_until_ready(ws)
    if isinstance(frame, bytes):
        await ws.send_to(bytes_data=frame)
    else:
        await ws.send_to(text_data=frame)
    reply = await ws.receive_json_from(timeout=5)
    assert reply["type"] == "error" and error in reply["error"]
    assert await database_sync_to_async(Message.objects.count)() == 0
    await ws.send_json_to({"type": "post", "text": "still here"})
    assert (await ws.receive_json_from(timeout=5))["text"] == "still here"
    await ws.disconnect()


@pytest.mark.parametrize(
    "text",
    [
        "party 🎉👍🏽 family 👩‍👩‍👧 flag 🇺🇦",
        "שלום עולם",
        "مرحبا بالعالم",
        "abc \u200fשלום\u200e 123 عربى",
        "e\u0301 a\u0308 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    ],
)
async def test_emoji_and_right_to_left_text_posted_over_the_socket_round_trip_unchanged(text):
    """Tests that storable text posted as a frame is stored and sent back exactly as sent."""
    ws = communicator("/ws/board/?after=0")
    await ws.connect()
    await receive_until_ready(ws)
    await ws.send_json_to({"type": "post", "text": text})
    frame = await ws.receive_json_from(timeout=5)
    assert (frame["type"], frame["text"]) == ("message", text)
    assert (await database_sync_to_async(Message.objects.get)(pk=frame["id"])).text == text
    await ws.disconnect()


async def test_job_socket_with_a_bad_frame_answers_an_error_and_stays_open():
    """Tests that the job socket answers even an unparseable frame with an error frame, not a close."""
    job = await database_sync_to_async(Job.objects.create)(total=3, lease_until="2030-01-01T00:00Z")
    ws = communicator(f"/ws/jobs/{job.id}/")
    await ws.connect()
    await ws.receive_json_from(timeout=5)
    for frame in ["[" * 50_000, '{"x": "\\ud800"}']:
        await ws.send_to(text_data=frame)
        assert (await ws.receive_json_from(timeout=5))["type"] == "error"
    await ws.disconnect()


@pytest.mark.parametrize("job_id", ["424242", "99999999999999999999999"])
async def test_job_socket_for_an_unknown_job_is_refused(job_id):
    """Tests that watching a job that does not exist, or could not, refuses the handshake."""
    assert await is_refused(communicator(f"/ws/jobs/{job_id}/"))


async def test_job_socket_sends_the_current_state_at_once_then_progress():
    """Tests that a watcher gets the job's state on connect and each progress event after."""
    job = await database_sync_to_async(Job.objects.create)(
        total=3, done=1, state="running", lease_until="2030-01-01T00:00Z"
    )
    ws = communicator(f"/ws/jobs/{job.id}/")
    assert (await ws.connect())[0] is True
    assert await ws.receive_json_from(timeout=5) == {
        "type": "job.progress",
        "id": job.id,
        "state": "running",
        "done": 1,
        "total": 3,
    }
    await get_channel_layer().group_send(
        f"job-{job.id}", {"type": "job.progress", "id": job.id, "state": "running", "done": 2, "total": 3}
    )
    assert (await ws.receive_json_from(timeout=5))["done"] == 2
    await ws.disconnect()


async def test_two_board_clients_each_receive_a_post_once():
    """Tests that a message posted by one client reaches every connected client exactly once."""
    clients = [communicator("/ws/board/?after=0") for _ in range(2)]
    for ws in clients:
        await ws.connect()
        await receive_until_ready(ws)
    await clients[0].send_json_to({"type": "post", "text": "for both"})
    for ws in clients:
        assert (await ws.receive_json_from(timeout=5))["text"] == "for both"
        assert await ws.receive_nothing(timeout=0.3)
    await asyncio.gather(*(ws.disconnect() for ws in clients))


async def test_an_idle_board_socket_outlives_the_channel_layers_blocking_receive():
    """Tests that a socket with no traffic for longer than channels-redis' 5 s receive stays open and live."""
    ws = communicator("/ws/board/?after=0")
    await ws.connect()
    await receive_until_ready(ws)
    assert await ws.receive_nothing(timeout=7, interval=0.5)
    await ws.send_json_to({"type": "post", "text": "after a quiet spell"})
    assert (await ws.receive_json_from(timeout=5))["text"] == "after a quiet spell"
    await ws.disconnect()


async def test_drain_closes_every_board_and_job_socket_of_this_host_with_4012():
    """Tests that `manage.py drain` closes this host's board and job sockets with 4012 (reconnect at once)."""
    job = await database_sync_to_async(Job.objects.create)(total=3, lease_until="2000-01-01T00:00:00Z")
    board, progress = communicator("/ws/board/?after=0"), communicator(f"/ws/jobs/{job.id}/")
    await board.connect()
    await receive_until_ready(board)
    await progress.connect()
    await progress.receive_json_from(timeout=5)
    await database_sync_to_async(call_command)("drain", stdout=io.StringIO())
    assert await board.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}
    assert await progress.receive_output(timeout=5) == {"type": "websocket.close", "code": 4012}
    await board.wait()
    await progress.wait()
