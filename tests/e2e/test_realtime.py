"""Live updates end to end: HTTP posts reach WebSocket clients on every Daphne process through
Redis, and long polls parked on them; jobs run by the workers report their progress over WebSocket."""

import contextlib
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from .stack import TimedOut, frames_until_quiet, read_until_ready, receive_json, wait_until

# Clients per Daphne process; Nginx's least_conn spreads new sockets, so a few more are opened
# until every process holds this many (bounded by MAX_CLIENTS).
CLIENTS_PER_DAPHNE = 2
MAX_CLIENTS = 16
MESSAGES = 3


def served_by_port(ready_frame: dict) -> int:
    """The Daphne port that accepted the socket: the consumer reports its server address."""
    return int(ready_frame["served_by"].rsplit(":", 1)[1])


@pytest.fixture
def clients_on_every_daphne(site, target):
    """Open board sockets through Nginx until each Daphne process serves CLIENTS_PER_DAPHNE of them."""
    with contextlib.ExitStack() as stack:
        clients: list[tuple[int, object]] = []

        def spread() -> bool:
            if len(clients) >= MAX_CLIENTS:
                raise TimedOut(f"{MAX_CLIENTS} sockets and still not spread: {sorted(p for p, _ in clients)}")
            socket = stack.enter_context(site.websocket("/ws/board/"))
            clients.append((served_by_port(read_until_ready(socket)), socket))
            ports = [port for port, _ in clients]
            return all(ports.count(port) >= CLIENTS_PER_DAPHNE for port in target.daphne_ports)

        # A Daphne restarted by an earlier test may still be starting; its handshakes go to the others.
        wait_until(spread, 20, "sockets on every Daphne process", interval=0.5)
        yield clients


def test_http_message_reaches_clients_on_every_daphne_once_in_order(site, target, clients_on_every_daphne):
    """Tests that messages posted over HTTP reach clients of every Daphne process once each, in order."""
    tag = uuid.uuid4().hex[:8]
    posted = [site.post_message(f"fan-out {tag} #{n}") for n in range(MESSAGES)]

    expected = [(message["id"], message["text"]) for message in posted]
    received = []
    for port, socket in clients_on_every_daphne:
        frames = frames_until_quiet(socket, quiet=1.5, limit=10)
        received.append((port, [(frame["id"], frame["text"]) for frame in frames if frame["type"] == "message"]))

    assert {port for port, _ in received} == set(target.daphne_ports)
    wrong = [(port, messages) for port, messages in received if messages != expected]
    assert not wrong, f"every socket should get exactly {expected}; these got: {wrong}"


def test_job_progress_arrives_over_websocket_until_finished(site):
    """Tests that a job posted over HTTP is run by a worker and its progress arrives over WebSocket to finished."""
    job = site.post_job(steps=5)
    assert job["state"] == "queued"

    frames = []
    with site.websocket(f"/ws/jobs/{job['id']}/") as socket:
        deadline = time.monotonic() + 30
        while not frames or frames[-1]["state"] != "finished":
            assert time.monotonic() < deadline, f"job not finished within 30 s; frames: {frames}"
            frames.append(receive_json(socket, timeout=deadline - time.monotonic()))

    done = [frame["done"] for frame in frames]
    assert all(frame["type"] == "job.progress" and frame["id"] == job["id"] for frame in frames)
    assert done == sorted(done), f"progress went backwards: {done}"
    assert (frames[-1]["done"], frames[-1]["total"]) == (5, 5)
    assert site.get(f"/api/jobs/{job['id']}").json()["state"] == "finished"


def test_jobs_wait_for_a_worker_and_finish_when_one_runs(site, supervisor):
    """Tests that jobs are run by the worker programs: none progresses while they are stopped."""
    supervisor.stop("worker:*")
    job = site.post_job(steps=3)
    time.sleep(3)
    assert site.get(f"/api/jobs/{job['id']}").json()["done"] == 0

    supervisor.start("worker:*")
    finished = wait_until(
        lambda: site.get(f"/api/jobs/{job['id']}").json()["state"] == "finished", 30, "job finished after workers start"
    )
    assert finished


# Longer than the channel layer's blocking receive (channels_redis waits 5 s per BZPOPMIN) plus a
# Redis socket timeout, and shorter than Daphne's ping interval and Nginx's proxy timeouts.
IDLE_SECONDS = 12


def test_idle_socket_stays_open_and_still_receives_messages(site):
    """Tests that a board socket left idle for a while is not closed and still gets a new message."""
    with site.websocket("/ws/board/") as socket:
        read_until_ready(socket)
        idle = frames_until_quiet(socket, quiet=IDLE_SECONDS, limit=IDLE_SECONDS)
        message = site.post_message(f"after {IDLE_SECONDS} s idle {uuid.uuid4().hex[:8]}")
        frame = receive_json(socket, timeout=10)

    assert idle == []
    assert (frame["type"], frame["id"], frame["text"]) == ("message", message["id"], message["text"])


def test_long_polls_parked_through_nginx_all_get_the_next_message_at_once(site, target):
    """Tests that long polls waiting through Nginx (spread over the Daphne processes by least_conn) each
    answer with a message posted meanwhile, within seconds, not at their timeout."""
    last = site.post_message(f"before the long polls {uuid.uuid4().hex[:8]}")["id"]
    polls = 2 * len(target.daphne_ports)
    url = site.url(f"/api/messages/wait?after={last}&timeout=30")
    with ThreadPoolExecutor(polls) as pool:
        waiting = [pool.submit(site.http.get, url, timeout=45) for _ in range(polls)]
        time.sleep(2)  # parked: each has read the database and waits
        assert not any(poll.done() for poll in waiting), "a long poll answered before anything was posted"
        posted = time.monotonic()
        message = site.post_message(f"to the long polls {uuid.uuid4().hex[:8]}")
        answers = [poll.result() for poll in waiting]
        seconds = time.monotonic() - posted
    assert [answer.status_code for answer in answers] == [200] * polls
    assert all(answer.json() == {"messages": [message], "has_more": False} for answer in answers), answers[0].text
    assert seconds < 10
