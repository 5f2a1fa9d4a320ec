"""The stack's board-independent end-to-end checks against the chat example (examples/chat): HTTP vs
/ws/ routing, the health probes at the configured paths, a message crossing Daphne processes through
the channel layer, the worker channel, a program restarted by supervisor, and a Redis outage."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid

import pytest
from harness.deploy import health_paths
from harness.waiting import TimedOut, wait_until

# Sockets per Daphne process; Nginx's least_conn spreads new sockets, so a few more are opened
# until every process holds this many (bounded by MAX_SOCKETS).
SOCKETS_PER_DAPHNE = 2
MAX_SOCKETS = 16
# A message reaches every socket of its room, and the archive, within this.
DELIVERY_SECONDS = 10
# Redis gone: the probes say so within this; back: healthy again within RECOVERY_SECONDS.
OUTAGE_SECONDS = 30
RECOVERY_SECONDS = 90


def receive(socket, timeout: float = DELIVERY_SECONDS) -> dict:
    return json.loads(socket.recv(timeout=timeout))


def frames_until_quiet(socket, quiet: float = 1.5) -> list[dict]:
    """Every frame received until none came for `quiet` seconds."""
    frames = []
    with contextlib.suppress(TimeoutError):
        while True:
            frames.append(receive(socket, quiet))
    return frames


@contextlib.contextmanager
def joined(site, room: str):
    """A socket in `room` and the Daphne port that accepted it (its "ready" frame says); closed after."""
    with site.websocket(f"/ws/chat/{room}/") as socket:
        ready = receive(socket)
        assert ready["type"] == "ready" and ready["room"] == room, ready
        yield int(ready["served_by"].rsplit(":", 1)[1]), socket


def archived(site, room: str) -> list[str]:
    response = site.get(f"/rooms/{room}/archive")
    assert response.status_code == 200, response.text
    return [message["text"] for message in response.json()["messages"]]


def probe(site, path: str):
    response = site.get(path)
    return response.status_code, response.json()


@pytest.fixture
def room_on_every_daphne(site, target):
    """Sockets of one new room, through Nginx, until each Daphne process holds SOCKETS_PER_DAPHNE."""
    room = f"room-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        sockets: list[tuple[int, object]] = []

        def spread() -> bool:
            if len(sockets) >= MAX_SOCKETS:
                raise TimedOut(f"{MAX_SOCKETS} sockets and still not spread: {sorted(p for p, _ in sockets)}")
            port, socket = stack.enter_context(joined(site, room))
            sockets.append((port, socket))
            ports = [port for port, _ in sockets]
            return all(ports.count(port) >= SOCKETS_PER_DAPHNE for port in target.daphne_ports)

        wait_until(spread, 30, "sockets on every Daphne process", interval=0.5)
        yield room, sockets


def test_pages_go_to_gunicorn_and_ws_paths_to_daphne(site, target):
    """Tests that Nginx sends the page and the HTTP health path to Gunicorn, /ws/ (the Daphne health
    path and the room sockets) to Daphne, and serves the collected static files itself."""
    http_path, ws_path = health_paths(target.variables)
    assert probe(site, http_path)[1]["interface"] == "wsgi"
    assert probe(site, ws_path)[1]["interface"] == "asgi"
    with joined(site, "routing") as (port, _):
        assert port in target.daphne_ports

    page = site.get("/")
    assert page.status_code == 200 and "Chat rooms" in page.text
    script = re.search(r'src="(/static/chat/chat\.[0-9a-f]+\.js)"', page.text)
    assert script, "the page names its hashed script (collectstatic's manifest)"
    static = site.get(script.group(1))
    assert static.status_code == 200 and "/ws/chat/" in static.text


@pytest.mark.parametrize("which", [0, 1], ids=["gunicorn-path", "daphne-path"])
def test_health_paths_answer_ok_with_every_check(site, target, which):
    """Tests that each configured health path answers 200 {"status": "ok"} with Redis and the archive ok."""
    status, body = probe(site, health_paths(target.variables)[which])
    assert status == 200, body
    assert body["status"] == "ok" and body["checks"] == {"redis": "ok", "archive": "ok"}


def test_message_reaches_every_socket_of_its_room_on_every_daphne_once_and_is_archived(
    site, target, room_on_every_daphne
):
    """Tests that a message sent on one socket reaches each socket of the room on every Daphne once,
    no socket of another room, and the chat-archive worker archives it."""
    room, sockets = room_on_every_daphne
    text = f"hello {uuid.uuid4().hex[:8]}"
    with joined(site, f"other-{uuid.uuid4().hex[:8]}") as (_, elsewhere):
        sockets[0][1].send(json.dumps({"text": text}))
        received = [(port, [f["text"] for f in frames_until_quiet(s) if f["type"] == "message"]) for port, s in sockets]
        assert frames_until_quiet(elsewhere, quiet=1) == []
    assert {port for port, _ in received} == set(target.daphne_ports)
    wrong = [(port, texts) for port, texts in received if texts != [text]]
    assert not wrong, f"every socket should get exactly [{text!r}]; these got: {wrong}"
    wait_until(lambda: archived(site, room) == [text], DELIVERY_SECONDS, "the message in the room's archive")


def test_a_refused_frame_gets_an_error_and_the_socket_stays_open(site):
    """Tests that a frame that is not a message gets an error frame and the socket still sends."""
    room = f"bad-{uuid.uuid4().hex[:8]}"
    with joined(site, room) as (_, socket):
        socket.send("not json")
        assert receive(socket)["type"] == "error"
        socket.send(json.dumps({"text": ""}))
        assert receive(socket)["type"] == "error"
        socket.send(json.dumps({"text": "fine"}))
        message = receive(socket)
        assert (message["type"], message["room"], message["text"]) == ("message", room, "fine")


def test_killed_worker_is_replaced_by_supervisor_and_archives_again(site, target, app_host, supervisor):
    """Tests that after SIGKILL of the chat-archive worker supervisor runs a new one, which archives."""
    program = target.workers[0]
    before = supervisor.status()[program]
    assert before.state == "RUNNING" and before.pid > 0
    killed = app_host.run(f"kill -KILL {before.pid}")
    assert killed.rc == 0, killed.stderr

    def replaced() -> bool:
        now = supervisor.status()[program]
        return now.state == "RUNNING" and now.pid != before.pid

    wait_until(replaced, RECOVERY_SECONDS, f"a new RUNNING {program}", interval=0.5)
    room = f"restart-{uuid.uuid4().hex[:8]}"
    with joined(site, room) as (_, socket):
        socket.send(json.dumps({"text": "after the restart"}))
        assert receive(socket)["text"] == "after the restart"
    wait_until(lambda: archived(site, room) == ["after the restart"], DELIVERY_SECONDS, "archived by the new worker")


def test_redis_outage_turns_both_probes_503_and_the_stack_recovers(site, target, supervisor):
    """Tests that with Redis stopped both health paths answer 503 naming redis, and that once it is back
    they answer 200 again and a message crosses the channel layer and is archived."""
    paths = health_paths(target.variables)
    target.stop_redis()
    try:

        def both_unavailable() -> bool:
            answers = [probe(site, path) for path in paths]
            return all(status == 503 and body["failing"] == ["redis"] for status, body in answers)

        wait_until(both_unavailable, OUTAGE_SECONDS, "503 naming redis on both health paths", interval=1)
    finally:
        target.start_redis()

    wait_until(target.healthy, RECOVERY_SECONDS, "both health paths 200 again", interval=1)
    room = f"after-outage-{uuid.uuid4().hex[:8]}"

    def round_trip() -> bool:
        with joined(site, room) as (_, socket):
            text = f"back {time.monotonic()}"
            socket.send(json.dumps({"text": text}))
            return receive(socket)["text"] == text

    wait_until(round_trip, RECOVERY_SECONDS, "a message round trip after the outage", interval=2)
    wait_until(lambda: archived(site, room), RECOVERY_SECONDS, "the archive worker archiving again", interval=2)
