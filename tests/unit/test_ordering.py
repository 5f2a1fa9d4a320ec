"""Message order on PostgreSQL with concurrent writers (issue 11, item 2; board.ordering).

Real processes throughout: two Daphne processes serving the board consumer, eight `manage.py`
processes posting through board.services.post_message (each its own database connection, the way
Gunicorn workers and Daphne processes write), a real PostgreSQL and Redis, and WebSocket clients.
Without board.ordering's lock, ids commit out of order and clients miss messages (see README,
"Message order on PostgreSQL").
"""

import asyncio
import json
import socket
import subprocess
import sys
import time

import psycopg
import pytest
import websockets
from app_processes import APP_DIR, AppProcesses, wait_for
from django.conf import settings

POSTERS = 8
POST_SECONDS = 10
# Sockets open before the posting starts (spread over the Daphne processes), and more that open
# half way through, whose backlog query races the writers.
EARLY_SOCKETS = 4
LATE_SOCKETS = 2

POSTER = f"""
import time
from board import services
deadline = time.monotonic() + {POST_SECONDS}
count = 0
while time.monotonic() < deadline:
    services.post_message(f"poster {{__import__('os').getpid()}} #{{count}}")
    count += 1
print(count)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def daphne_ports(app_processes, postgresql_database, tmp_path):
    """Two Daphne processes on a fresh, migrated PostgreSQL database; returns (ports, AppProcesses)."""
    app = app_processes(settings.REDIS_URL, postgresql_database, LOG_LEVEL="WARNING")
    ports = [free_port(), free_port()]
    daphnes = [
        subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=APP_DIR,
            env=app.env,
            stdout=subprocess.DEVNULL,
            # A file, not a pipe nobody reads: a full pipe would stall Daphne.
            stderr=(tmp_path / f"daphne-{port}.log").open("w"),
            start_new_session=True,
        )
        for port in ports
    ]
    app.workers.extend(daphnes)  # killed with the app's other processes
    for port in ports:
        wait_for(lambda port=port: listening(port), 30, f"Daphne on port {port}")
    return ports, app


class BoardClient:
    """One board socket: every message id it receives, in the order it received them."""

    def __init__(self, port: int):
        self.port = port
        self.ids: list[int] = []
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        url = f"ws://127.0.0.1:{self.port}/ws/board/?after=0"
        async with websockets.connect(url, origin=f"http://127.0.0.1:{self.port}", max_queue=None) as ws:
            while not stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if frame["type"] == "message":
                    self.ids.append(frame["id"])
                elif frame["type"] == "ready":
                    self.ready.set()


async def post_concurrently(app: AppProcesses) -> int:
    """Run POSTERS posting processes at once for POST_SECONDS; return how many messages they stored."""
    posters = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "manage.py",
            "shell",
            "-v",
            "0",
            "-c",
            POSTER,
            cwd=APP_DIR,
            env=app.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(POSTERS)
    ]
    results = await asyncio.gather(*(poster.communicate() for poster in posters))
    for poster, (_, stderr) in zip(posters, results, strict=True):
        assert poster.returncode == 0, stderr.decode()
    return sum(int(stdout.split()[-1]) for stdout, _ in results)


async def test_every_board_client_sees_every_message_once_in_order_with_concurrent_writers(daphne_ports):
    """Tests that with 8 processes posting at once on PostgreSQL for 10 s, every board socket (open
    before, or opened during, the posting) receives every stored message exactly once, in id order."""
    ports, app = daphne_ports
    stop = asyncio.Event()
    clients = [BoardClient(ports[i % len(ports)]) for i in range(EARLY_SOCKETS + LATE_SOCKETS)]
    tasks = [asyncio.create_task(client.run(stop)) for client in clients[:EARLY_SOCKETS]]
    await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in clients[:EARLY_SOCKETS])), 20)

    async def open_late_sockets():
        await asyncio.sleep(POST_SECONDS / 2)
        tasks.extend(asyncio.create_task(client.run(stop)) for client in clients[EARLY_SOCKETS:])

    posted, _ = await asyncio.gather(post_concurrently(app), open_late_sockets())

    with psycopg.connect(app.database_url) as conn:
        stored = [row[0] for row in conn.execute("SELECT id FROM board_message ORDER BY id")]
    assert len(stored) == posted > POSTERS * POST_SECONDS  # writers really ran concurrently, and fast
    # Live delivery: no reconnect, no new socket; the last message reaches every client within seconds.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(c.ids[-1:] != stored[-1:] for c in clients):
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*tasks)
    for number, client in enumerate(clients):
        missing = sorted(set(stored) - set(client.ids))
        assert client.ids == stored, (
            f"client {number} (Daphne :{client.port}) got {len(client.ids)} of {len(stored)} messages; "
            f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}; "
            f"out of order or repeated: {len(client.ids) - len(set(client.ids)) or sorted(client.ids) != client.ids}"
        )
