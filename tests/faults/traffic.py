"""Users of the board while a fault happens: WebSocket clients that behave like the browser
(board.js: track the last id shown, reconnect with ?after=<last id> and backoff), a poster that
posts messages at a steady rate, and the check that compares what each client showed with the
database.

Everything is bounded: clients and the poster stop when told or when their time is up, every wait
has a limit, and the only addresses used are the target's Nginx on loopback.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

from harness.site import Site
from harness.target import Target
from harness.tls import ws_ssl
from harness.waiting import TimedOut, wait_until
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.sync.client import ClientConnection, connect

# A client or poster never runs longer than this, whatever the test does.
MAX_SECONDS = 420
# Reconnect backoff: board.js starts at 0.5 s and doubles to 30 s; the tests cap it lower so a
# client comes back within a few seconds of the stack (the browser's cap is about user load).
BACKOFF_START = 0.5
BACKOFF_CAP = 4.0
# After the poster stops, how long clients get to show everything the database has.
CATCH_UP_SECONDS = 60
WS_OPEN_TIMEOUT = 5
API_PAGE = 200


def board_socket(target: Target, after: int | None, open_timeout: float = WS_OPEN_TIMEOUT) -> ClientConnection:
    """A board socket as the browser opens it: no client pings (browsers send none), the site's Origin."""
    query = "" if after is None else f"?after={after}"
    return connect(
        f"{target.ws_url}/ws/board/{query}",
        origin=target.host_origin,
        open_timeout=open_timeout,
        close_timeout=2,
        ping_interval=None,
        max_queue=None,
        ssl=ws_ssl(target.ws_url),
    )


def database_ids(site: Site, after: int) -> list[int]:
    """Ids of the stored messages after `after`, in order, paged through GET /api/messages."""
    ids: list[int] = []
    while True:
        response = site.get(f"/api/messages?after={after}&limit={API_PAGE}")
        assert response.status_code == 200, f"GET /api/messages -> {response.status_code} {response.text[:200]}"
        page = response.json()
        ids.extend(message["id"] for message in page["messages"])
        if not page["has_more"] or not page["messages"]:
            return ids
        after = page["messages"][-1]["id"]


@dataclass
class Connection:
    """One socket of a client: when it was ready, which Daphne served it, how it ended."""

    opened: float
    port: int
    # Message frames received before the ready frame: the backfill of this connection.
    backlog: int
    closed: float | None = None
    close_code: int | None = None
    # The address that Daphne listens on (its ready frame's served_by): which host, on a cluster.
    host: str = ""


class BoardClient(threading.Thread):
    """A board client: shows messages by id, reconnects after any close with ?after=<last id>."""

    def __init__(self, target: Target, name: str, after: int, max_seconds: float = MAX_SECONDS):
        super().__init__(name=name, daemon=True)
        self.target = target
        self.last_id = after
        self.frames: list[int] = []  # ids of every message frame received, duplicates included
        self.frame_times: list[float] = []  # when each of them arrived (time.monotonic())
        self.connections: list[Connection] = []
        self.failed_handshakes: list[tuple[float, str]] = []
        self.ready = threading.Event()
        self._offline = threading.Event()
        self._stop_event = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()

    @property
    def shown(self) -> list[int]:
        """What the browser shows: each id once (board.js drops ids <= the last one shown)."""
        shown: list[int] = []
        for message_id in self.frames:
            if not shown or message_id > shown[-1]:
                shown.append(message_id)
        return shown

    @property
    def port(self) -> int:
        return self.connections[-1].port if self.connections else 0

    def disconnects_between(self, start: float, end: float) -> list[Connection]:
        return [c for c in self.connections if c.closed is not None and start <= c.closed <= end]

    def frames_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.frame_times if start <= t <= end)

    def stop(self) -> None:
        self._stop_event.set()

    def go_offline(self) -> None:
        """Close the socket and stay away (a laptop closed) until come_back()."""
        self.ready.clear()
        self._offline.set()

    def come_back(self) -> None:
        self._offline.clear()

    def running(self) -> bool:
        return not self._stop_event.is_set() and time.monotonic() < self._deadline

    def online(self) -> bool:
        return self.running() and not self._offline.is_set()

    def run(self) -> None:
        attempt = 0
        while self.running():
            if self._offline.is_set():
                self._stop_event.wait(0.2)
                continue
            try:
                socket = board_socket(self.target, self.last_id)
            except Exception as exc:  # noqa: BLE001 (any failed handshake: retried, like the browser)
                self.failed_handshakes.append((time.monotonic(), repr(exc)[:200]))
                ceiling = min(BACKOFF_CAP, BACKOFF_START * 2**attempt)
                self._stop_event.wait(ceiling / 2 + random.random() * ceiling / 2)  # noqa: S311 (jitter)
                attempt += 1
                continue
            with socket:
                connection = self.read(socket)
            if connection is not None and connection.port:
                attempt = 0

    def read(self, socket: ClientConnection) -> Connection | None:
        connection = None
        backlog = 0
        try:
            while self.online():
                try:
                    frame = json.loads(socket.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if frame["type"] == "message":
                    with self.lock:
                        self.frames.append(frame["id"])
                        self.frame_times.append(time.monotonic())
                        self.last_id = max(self.last_id, frame["id"])
                    backlog += connection is None
                elif frame["type"] == "ready":
                    host, _, port = frame["served_by"].rpartition(":")
                    connection = Connection(time.monotonic(), int(port), backlog, host=host)
                    self.connections.append(connection)
                    self.ready.set()
        except (ConnectionClosed, OSError) as closed:
            if connection is not None:
                connection.closed = time.monotonic()
                received = getattr(closed, "rcvd", None)
                connection.close_code = received.code if received else None
            else:
                self.failed_handshakes.append((time.monotonic(), f"closed before ready: {closed!r}"[:200]))
        else:
            if connection is not None:  # closed by this client: stopped or gone offline
                connection.closed = time.monotonic()
                connection.close_code = 1000
        return connection


class Poster(threading.Thread):
    """Posts a numbered message every `interval` seconds through Nginx; remembers what got 201."""

    def __init__(
        self,
        target: Target,
        tag: str,
        interval: float = 0.25,
        max_count: int = 600,
        max_seconds: float = MAX_SECONDS,
        retries: int = 0,
    ):
        super().__init__(name=f"poster-{tag}", daemon=True)
        self.site = Site(target)
        self.tag = tag
        self.interval = interval
        self.max_count = max_count
        # A post not answered 201 is sent again this many times at once (a user's retry).
        self.retries = retries
        self.accepted: list[int] = []  # ids answered 201
        self.refused: list[tuple[float, str]] = []  # (time, status or error) of every other final answer
        self.retried: list[tuple[float, str]] = []  # (time, status or error) of attempts a retry followed
        self._stop_event = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        # Held while a post is under way; pause() takes it, so it returns once no post is.
        self._gate = threading.Condition()
        self._paused = False

    @property
    def attempts(self) -> int:
        return len(self.accepted) + len(self.refused)

    def stop(self) -> None:
        self._stop_event.set()
        with self._gate:
            self._gate.notify_all()

    @contextlib.contextmanager
    def paused(self):
        """No post under way nor started inside the block (a test that must know every request
        in flight is its own); posting resumes after it."""
        with self._gate:
            self._paused = True
        try:
            yield
        finally:
            with self._gate:
                self._paused = False
                self._gate.notify_all()

    def running(self) -> bool:
        return not self._stop_event.is_set() and time.monotonic() < self._deadline

    def run(self) -> None:
        number = 0
        while self.running() and number < self.max_count:
            started = time.monotonic()
            with self._gate:
                self._gate.wait_for(lambda: not self._paused or not self.running(), timeout=MAX_SECONDS)
                if not self.running():
                    return
                number += 1
                self.post(number)
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def post(self, number: int) -> None:
        for attempt in range(self.retries + 1):
            try:
                response = self.site.post_json("/api/messages", {"text": f"{self.tag} #{number}"})
            except Exception as exc:  # noqa: BLE001 (a failed request is an answer too: recorded)
                failure = (time.monotonic(), type(exc).__name__)
            else:
                if response.status_code == 201:
                    self.accepted.append(response.json()["id"])
                    return
                failure = (time.monotonic(), str(response.status_code))
            (self.retried if attempt < self.retries else self.refused).append(failure)


@dataclass
class Delivery:
    """What the clients showed compared with the database, for the report and the asserts."""

    posted: int  # answered 201
    delivered: int  # of those, shown exactly once by every client
    refused: int  # posts not answered 201 (no promise made)
    database: list[int]
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.posted - self.delivered


class Traffic:
    """Board clients and a poster around a fault: `with Traffic(target) as traffic: ...`.

    On entry the clients connect (after the newest stored message) and the poster starts; the test
    injects its fault; traffic.finish() stops the poster, waits for the clients to catch up with
    the database and returns the Delivery. On exit everything is stopped in any case.
    """

    def __init__(
        self,
        target: Target,
        clients: int = 4,
        interval: float = 0.25,
        spread: bool = False,
        max_seconds: float = MAX_SECONDS,
        post_retries: int = 0,
    ):
        self.target = target
        # Clients and the poster stop by themselves after this long (a fault that takes longer, such as
        # a playbook run, passes more).
        self.max_seconds = max_seconds
        self.tag = f"fault-{uuid.uuid4().hex[:8]}"
        self.site = Site(target)
        self.start_id = newest_id(self.site)
        self.client_count = clients
        self.spread = spread
        self.clients: list[BoardClient] = []
        self.poster = Poster(target, self.tag, interval, max_seconds=max_seconds, retries=post_retries)
        self.delivery: Delivery | None = None

    def __enter__(self) -> Traffic:
        try:
            self.connect_clients()
        except BaseException:
            self.stop()
            raise
        self.poster.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def add_client(self) -> BoardClient:
        client = BoardClient(self.target, f"client-{len(self.clients)}", self.start_id, self.max_seconds)
        self.clients.append(client)
        client.start()
        if not client.ready.wait(20):
            raise TimedOut(f"{client.name} not ready within 20 s: {client.failed_handshakes[-3:]}")
        return client

    def connect_clients(self) -> None:
        """Connect the clients; with spread, until every Daphne process serves at least two."""
        for _ in range(self.client_count):
            self.add_client()
        if self.spread:

            def spread_enough() -> bool:
                ports = [client.port for client in self.clients]
                if all(ports.count(port) >= 2 for port in self.target.daphne_ports):
                    return True
                if len(self.clients) >= 12:
                    raise TimedOut(f"12 clients and not on every Daphne: {ports}")
                self.add_client()
                return False

            # A Daphne restarted a moment ago may still be starting: Nginx passes its handshakes on.
            wait_until(spread_enough, 30, "clients on every Daphne process", 0.5)

    def clients_on(self, port: int) -> list[BoardClient]:
        return [client for client in self.clients if client.connections and client.connections[0].port == port]

    def run_for(self, seconds: float) -> None:
        time.sleep(seconds)

    def stop(self) -> None:
        self.poster.stop()
        for client in self.clients:
            client.stop()
        for thread in [self.poster, *self.clients]:
            if thread.is_alive():
                thread.join(15)

    def finish(self, catch_up: float = CATCH_UP_SECONDS) -> Delivery:
        """Stop posting; once every client shows the newest stored message (bounded), compare."""
        self.poster.stop()
        self.poster.join(30)
        database = wait_until(lambda: database_ids(self.site, self.start_id), 60, "GET /api/messages answers", 1)
        newest = database[-1] if database else self.start_id

        def caught_up() -> bool:
            return all(client.last_id >= newest for client in self.clients)

        # Not caught up in time: reported below as lost messages.
        with contextlib.suppress(TimedOut):
            wait_until(caught_up, catch_up, "every client shows the newest stored message", 0.5)
        self.stop()
        self.delivery = compare(self.poster, self.clients, database)
        return self.delivery


def newest_id(site: Site) -> int:
    """The id of the newest stored message: a socket without `after` gets the latest messages,
    then a ready frame naming the last one sent (0 when there is none)."""
    with board_socket(site.target, after=None) as socket:
        while True:
            frame = json.loads(socket.recv(timeout=10))
            if frame["type"] == "ready":
                return frame["last_id"]


def compare(poster: Poster, clients: list[BoardClient], database: list[int]) -> Delivery:
    """Every id answered 201 must be stored and shown exactly once, in order, by every client."""
    problems = []
    stored = set(database)
    counts = {client.name: Counter(client.frames) for client in clients}
    missing_in_db = [i for i in poster.accepted if i not in stored]
    if missing_in_db:
        problems.append(f"answered 201 but not stored: {missing_in_db[:10]}")
    delivered_everywhere = set(poster.accepted)
    for client in clients:
        frames = client.frames
        duplicates = sorted(i for i, n in counts[client.name].items() if n > 1)
        if duplicates:
            problems.append(f"{client.name} got these ids more than once: {duplicates[:10]}")
        if frames != sorted(frames):
            problems.append(f"{client.name} got ids out of order: {frames[:50]}")
        shown = set(client.shown)
        if client.shown != database:
            missing = [i for i in database if i not in shown]
            extra = [i for i in client.shown if i not in stored]
            problems.append(f"{client.name} missed {missing[:10]} ({len(missing)}), extra {extra[:10]}")
        once = {i for i in shown if counts[client.name][i] == 1}
        delivered_everywhere &= once
    return Delivery(
        posted=len(poster.accepted),
        delivered=len(delivered_everywhere),
        refused=len(poster.refused),
        database=database,
        problems=problems,
    )


class HandshakeProber(threading.Thread):
    """A user opening the page every `interval` s: a new board socket, closed once ready. A failed
    handshake is retried once at once, as a browser's reconnect would; both failing is a burst."""

    def __init__(self, target: Target, interval: float = 0.3):
        super().__init__(name="handshake-prober", daemon=True)
        self.target = target
        self.interval = interval
        self.results: list[tuple[float, bool, bool | None]] = []  # (time, first ok, retry ok)
        self._stop_event = threading.Event()
        self._deadline = time.monotonic() + MAX_SECONDS

    def __enter__(self) -> HandshakeProber:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop_event.set()
        self.join(15)

    def handshake(self) -> bool:
        try:
            with board_socket(self.target, after=2**62) as socket:
                while json.loads(socket.recv(timeout=5))["type"] != "ready":
                    pass
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError):
            return False
        return True

    def run(self) -> None:
        while not self._stop_event.is_set() and time.monotonic() < self._deadline:
            started = time.monotonic()
            ok = self.handshake()
            retry = None if ok else self.handshake()
            self.results.append((started, ok, retry))
            self._stop_event.wait(max(0.0, self.interval - (time.monotonic() - started)))

    @property
    def bursts(self) -> list[float]:
        """Times of the handshakes that failed twice in a row."""
        return [started for started, ok, retry in self.results if not ok and not retry]


class JobWatcher(threading.Thread):
    """A job's progress bar (board.js watchJob): /ws/jobs/<id>/ until a finished frame, reconnecting."""

    def __init__(self, target: Target, job_id: int):
        super().__init__(name=f"job-{job_id}", daemon=True)
        self.target = target
        self.job_id = job_id
        self.frames: list[dict] = []
        self.finished = threading.Event()
        self._deadline = time.monotonic() + MAX_SECONDS

    def run(self) -> None:
        while not self.finished.is_set() and time.monotonic() < self._deadline:
            try:
                with connect(
                    f"{self.target.ws_url}/ws/jobs/{self.job_id}/",
                    origin=self.target.host_origin,
                    open_timeout=WS_OPEN_TIMEOUT,
                    ping_interval=None,
                    ssl=ws_ssl(self.target.ws_url),
                ) as socket:
                    while time.monotonic() < self._deadline:
                        try:
                            frame = json.loads(socket.recv(timeout=1))
                        except TimeoutError:
                            continue
                        self.frames.append(frame)
                        if frame.get("state") == "finished":
                            self.finished.set()
                            return
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
                time.sleep(0.5)

    @property
    def finished_frames(self) -> int:
        return sum(1 for frame in self.frames if frame.get("state") == "finished")
