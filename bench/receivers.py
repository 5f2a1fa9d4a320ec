"""Board clients in worker processes: open sockets, read every frame, account for every delivery.

A `ReceiverPool` starts `processes` worker processes (multiprocessing, spawn) and splits the clients
between them; each worker runs one asyncio loop with its share of clients (websockets' asyncio
client). A client behaves like the browser's board.js: it connects with ``?after=<id>``, ignores the
backlog until the ``ready`` frame, shows each message id once, and — when `reconnect` is on —
reconnects after any close with ``?after=<last id it has>`` after a jittered backoff (board.js's:
attempt n waits 0.5 s × 2^n, capped here at 4 s, times a random 50–100 %; attempt 0 follows a close,
so a socket dropped with the others comes back 0.25–0.5 s later, never in the same instant), so a
reconnect storm is measured with the same code. `concurrency` caps the handshakes in flight per
worker during connect() only; reconnects are not capped (a browser has no such cap). With
`transport` "poll" or "longpoll" the clients poll over HTTP instead (bench.pollers.PollClient, the
transport comparison's), with the same accounting; `requests` and `request_failures` in expect()'s
answer count their requests since arm() (0 for WebSocket clients).

Accounting is by the bench text's (run, seq) (bench.protocol): per client the set of seqs seen
(a second delivery of a seq to one client is a duplicate); per worker every delivery's latency
(seconds), and per seq the largest latency and the number of clients that got it.

Commands (`ReceiverPool` methods) and what each returns, summed over the workers:
- connect(count, after) -> {"ok", "failed", "failures": {reason: n}, "first_attempt", "last_ready",
  "handshake_s": [seconds per successful handshake]}; times are time.time().
- expect(run, seqs, timeout) -> waits until every ready client has every seq, or `timeout` s; then
  {"deliveries", "latencies": [s], "per_seq_max": {seq: s}, "per_seq_count": {seq: n}, "lost",
  "duplicates", "closed_during_run", "reconnects", "first_delivery", "last_delivery"}.
- status() -> {"open", "ready", "live", "closed"}: sockets connected / clients that were ever ready /
  clients ready now (between a ``ready`` frame and the socket's close) / clients closed at least once.
- timelines() -> {"clients": [[(event, time, served_by), ...] per client], "attempt_failures":
  [(time, reason), ...]}: each client's "ready" (with the frame's served_by, Daphne's "host:port") and
  "closed" events in order, and every failed handshake attempt, first or retried; times are
  time.time().
- close() -> closes every socket and ends the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import resource
import time
from collections import Counter
from dataclasses import asdict, dataclass

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus

from bench.protocol import parse_frame, parse_text

BACKOFF_START = 0.5
# What the clients hold: a board socket (Client), or polls (bench.pollers.PollClient).
TRANSPORTS = ("websocket", "longpoll", "poll")
BACKOFF_CAP = 4.0


@dataclass(frozen=True)
class Endpoint:
    """Where the clients connect: TCP `address`:`port`, with `host` in the URI (and so in the Host
    header) and `origin` as the Origin header; `path` is the board socket's path."""

    address: str
    port: int
    host: str
    origin: str
    path: str = "/ws/board/"

    def uri(self, after: int | None) -> str:
        query = "" if after is None else f"?after={after}"
        return f"ws://{self.host}{self.path}{query}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, InvalidMessage):
        return "closed without an HTTP answer"
    return type(exc).__name__


def backoff(attempt: int) -> float:
    """Seconds before reconnect attempt `attempt` (0 right after a close, then one more per failed
    handshake): board.js's 0.5 s × 2^attempt, capped at BACKOFF_CAP, times a random 50–100 %."""
    ceiling = min(BACKOFF_CAP, BACKOFF_START * 2**attempt)
    return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 (jitter, not security)


class Worker:
    """The clients of one worker process and their accounting (runs inside that process)."""

    def __init__(
        self,
        endpoint: Endpoint,
        reconnect: bool,
        open_timeout: float,
        concurrency: int,
        transport: str = "websocket",
        poll_period: float = 2.0,
        wait_timeout: float = 25.0,
    ):
        if transport not in TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
        self.endpoint = endpoint
        self.transport, self.poll_period, self.wait_timeout = transport, poll_period, wait_timeout
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.semaphore = asyncio.Semaphore(concurrency)
        self.clients: list[Client] = []
        self.attempt_failures: list[tuple[float, str]] = []
        self.stopping = False
        self.run: str | None = None
        self.reset_counts()

    def reset_counts(self) -> None:
        self.latencies: list[float] = []
        self.per_seq_max: dict[int, float] = {}
        self.per_seq_count: Counter[int] = Counter()
        self.duplicates = 0
        self.first_delivery: float | None = None
        self.last_delivery: float | None = None
        self.requests = 0  # HTTP requests sent by polling clients
        self.request_failures: Counter[str] = Counter()

    def delivered(self, client: Client, seq: int, sent: float) -> None:
        now = time.time()
        if seq in client.seen:
            self.duplicates += 1
            return
        client.seen.add(seq)
        latency = now - sent
        self.latencies.append(latency)
        if latency > self.per_seq_max.get(seq, -1.0):
            self.per_seq_max[seq] = latency
        self.per_seq_count[seq] += 1
        if self.first_delivery is None:
            self.first_delivery = now
        self.last_delivery = now

    def new_client(self, after: int | None) -> Client:
        if self.transport == "websocket":
            return Client(self, after)
        from bench.pollers import PollClient  # it builds on Client, defined below

        return PollClient(
            self, after, long=self.transport == "longpoll", period=self.poll_period, wait_timeout=self.wait_timeout
        )

    async def connect(self, count: int, after: int | None) -> dict:
        batch = [self.new_client(after) for _ in range(count)]
        self.clients.extend(batch)
        first_attempt = time.time()
        for client in batch:
            client.task = asyncio.create_task(client.run())
        await asyncio.gather(*(client.settled.wait() for client in batch))
        ok = [c for c in batch if c.ready_at is not None]
        failures = Counter(c.first_failure for c in batch if c.ready_at is None)
        return {
            "ok": len(ok),
            "failed": count - len(ok),
            "failures": dict(failures),
            "first_attempt": first_attempt,
            "last_ready": max((c.ready_at for c in ok), default=None),
            "handshake_s": [c.handshake_s for c in ok],
        }

    async def expect(self, run: str, seqs: list[int], timeout: float) -> dict:
        wanted = set(seqs)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = sum(1 for c in self.clients if c.ready_at is not None and c.socket is not None)
            if all(self.per_seq_count[s] >= ready for s in wanted):
                break
            await asyncio.sleep(0.05)
        counted = [c for c in self.clients if c.ready_at is not None]
        return {
            "deliveries": len(self.latencies),
            "latencies": self.latencies,
            "per_seq_max": self.per_seq_max,
            "per_seq_count": dict(self.per_seq_count),
            "lost": sum(len(wanted - c.seen) for c in counted),
            "duplicates": self.duplicates,
            "closed_during_run": sum(1 for c in counted if c.closes),
            "reconnects": sum(c.reconnects for c in counted),
            "first_delivery": self.first_delivery,
            "last_delivery": self.last_delivery,
            "requests": self.requests,
            "request_failures": dict(self.request_failures),
        }

    def status(self) -> dict:
        return {
            "open": sum(1 for c in self.clients if c.socket is not None),
            "ready": sum(1 for c in self.clients if c.ready_at is not None),
            "live": sum(1 for c in self.clients if c.live),
            "closed": sum(1 for c in self.clients if c.closes),
        }

    def timelines(self) -> dict:
        return {"clients": [c.events for c in self.clients], "attempt_failures": self.attempt_failures}

    async def close(self) -> None:
        self.stopping = True
        for client in self.clients:
            if client.task is not None:
                client.task.cancel()
        await asyncio.gather(*(c.task for c in self.clients if c.task), return_exceptions=True)


class Client:
    """One board client (the browser's board.js): ready after the ``ready`` frame, ids shown once."""

    def __init__(self, worker: Worker, after: int | None):
        self.worker = worker
        self.last_id = after
        self.seen: set[int] = set()
        self.socket = None
        self.task: asyncio.Task | None = None
        self.settled = asyncio.Event()  # first handshake done, either way
        self.ready_at: float | None = None
        self.handshake_s = 0.0
        self.first_failure = ""
        self.closes = 0
        self.reconnects = 0
        self.events: list[tuple[str, float, str]] = []  # ("ready", t, served_by) / ("closed", t, "")

    @property
    def live(self) -> bool:
        """Ready now: a ``ready`` frame and no close since."""
        return bool(self.events) and self.events[-1][0] == "ready"

    async def run(self) -> None:
        worker, attempt = self.worker, 0
        try:
            while not worker.stopping:
                started = time.time()
                # `concurrency` paces the harness's own connect() (first handshakes); a reconnect is
                # the client's own, uncapped like a browser's, so a storm meets only the server's limits.
                gate = worker.semaphore if not self.settled.is_set() else contextlib.nullcontext()
                try:
                    async with gate:
                        socket = await connect(
                            worker.endpoint.uri(self.last_id),
                            host=worker.endpoint.address,
                            port=worker.endpoint.port,
                            origin=worker.endpoint.origin,
                            open_timeout=worker.open_timeout,
                            close_timeout=2,
                            ping_interval=None,  # browsers send no pings; the server's are answered
                            compression=None,
                            max_queue=None,
                        )
                        self.socket = socket
                        await self.read_until_ready(socket, started)
                except Exception as exc:  # noqa: BLE001 (every failed handshake is counted by its reason)
                    self.socket = None
                    reason = _reason(exc)
                    worker.attempt_failures.append((time.time(), reason))
                    if not self.settled.is_set():
                        self.first_failure = reason
                        self.settled.set()
                    if not worker.reconnect:
                        return
                    await asyncio.sleep(backoff(attempt))
                    attempt += 1
                    continue
                with contextlib.suppress(ConnectionClosed):
                    async for raw in socket:
                        self.receive(raw)
                self.socket = None
                self.events.append(("closed", time.time(), ""))
                self.closes += 1
                if not worker.reconnect or worker.stopping:
                    return
                self.reconnects += 1
                # board.js: a close waits backoff(0), and the handshake after it is attempt 1.
                await asyncio.sleep(backoff(0))
                attempt = 1
        finally:
            if self.socket is not None:
                with contextlib.suppress(Exception):
                    await self.socket.close()
                self.socket = None
            self.settled.set()

    async def read_until_ready(self, socket, started: float) -> None:
        while True:
            frame = parse_frame(await socket.recv())
            if frame.kind == "message":
                self.receive_message(frame.id, frame.text)
            elif frame.kind == "ready":
                now = time.time()
                if self.ready_at is None:
                    self.ready_at = now
                    self.handshake_s = now - started
                self.events.append(("ready", now, frame.served_by or ""))
                self.last_id = max(self.last_id or 0, frame.last_id or 0)
                self.settled.set()
                return

    def receive(self, raw) -> None:
        frame = parse_frame(raw)
        if frame.kind == "message":
            self.receive_message(frame.id, frame.text)

    def receive_message(self, message_id: int, text: str) -> None:
        bench = parse_text(text)
        ours = bench is not None and bench.run == self.worker.run
        if self.last_id is not None and message_id <= self.last_id:
            # The browser shows an id once and drops this frame: a duplicate when it was shown
            # before, else (an older id arriving late) the user never sees it: counted as lost.
            if ours and bench.seq in self.seen:
                self.worker.duplicates += 1
            return
        self.last_id = message_id
        if ours:
            self.worker.delivered(self, bench.seq, bench.sent)


def _raise_open_files() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _serve(conn, endpoint: Endpoint, options: dict) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(endpoint, **options)
    while True:
        command, args = await loop.run_in_executor(None, conn.recv)
        if command == "connect":
            reply = await worker.connect(args["count"], args["after"])
        elif command == "expect":
            worker.run = args["run"]
            reply = await worker.expect(args["run"], args["seqs"], args["timeout"])
        elif command == "arm":
            worker.run = args["run"]
            worker.reset_counts()
            reply = {}
        elif command == "status":
            reply = worker.status()
        elif command == "timelines":
            reply = worker.timelines()
        elif command == "close":
            await worker.close()
            conn.send(("closed", {}))
            return
        else:
            reply = {"error": f"unknown command {command!r}"}
        conn.send((command, reply))


def _worker_main(conn, endpoint: dict, options: dict) -> None:
    _raise_open_files()
    asyncio.run(_serve(conn, Endpoint(**endpoint), options))


class ReceiverPool:
    """`processes` worker processes sharing the clients evenly (see the module docstring)."""

    def __init__(
        self,
        endpoint: Endpoint,
        processes: int,
        *,
        reconnect: bool = False,
        open_timeout: float = 30.0,
        concurrency: int = 100,
        transport: str = "websocket",
        poll_period: float = 2.0,
        wait_timeout: float = 25.0,
    ):
        if processes < 1:
            raise ValueError("processes must be at least 1")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
        context = multiprocessing.get_context("spawn")
        options = {
            "reconnect": reconnect,
            "open_timeout": open_timeout,
            "concurrency": concurrency,
            "transport": transport,
            "poll_period": poll_period,
            "wait_timeout": wait_timeout,
        }
        self.pipes = []
        self.procs = []
        for _ in range(processes):
            parent, child = context.Pipe()
            proc = context.Process(target=_worker_main, args=(child, asdict(endpoint), options), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _all(self, command: str, args_per_worker: list[dict]) -> list[dict]:
        for pipe, args in zip(self.pipes, args_per_worker, strict=True):
            pipe.send((command, args))
        replies = []
        for pipe in self.pipes:
            name, reply = pipe.recv()
            if "error" in reply:
                raise RuntimeError(f"receiver: {reply['error']}")
            replies.append(reply)
        return replies

    def connect(self, count: int, after: int | None) -> dict:
        shares = [count // len(self.pipes) + (1 if i < count % len(self.pipes) else 0) for i in range(len(self.pipes))]
        replies = self._all("connect", [{"count": n, "after": after} for n in shares])
        failures: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
        readies = [r["last_ready"] for r in replies if r["last_ready"] is not None]
        return {
            "ok": sum(r["ok"] for r in replies),
            "failed": sum(r["failed"] for r in replies),
            "failures": dict(failures),
            "first_attempt": min(r["first_attempt"] for r in replies),
            "last_ready": max(readies) if readies else None,
            "handshake_s": [s for r in replies for s in r["handshake_s"]],
        }

    def arm(self, run: str) -> None:
        """Count deliveries of `run` from now on (earlier counts are dropped)."""
        self._all("arm", [{"run": run}] * len(self.pipes))

    def expect(self, run: str, seqs: list[int], timeout: float) -> dict:
        replies = self._all("expect", [{"run": run, "seqs": seqs, "timeout": timeout}] * len(self.pipes))
        per_seq_max: dict[int, float] = {}
        per_seq_count: Counter[int] = Counter()
        for reply in replies:
            for seq, latency in reply["per_seq_max"].items():
                per_seq_max[seq] = max(latency, per_seq_max.get(seq, latency))
            per_seq_count.update(reply["per_seq_count"])
        request_failures: Counter[str] = Counter()
        for reply in replies:
            request_failures.update(reply["request_failures"])
        firsts = [r["first_delivery"] for r in replies if r["first_delivery"] is not None]
        lasts = [r["last_delivery"] for r in replies if r["last_delivery"] is not None]
        return {
            "deliveries": sum(r["deliveries"] for r in replies),
            "latencies": [x for r in replies for x in r["latencies"]],
            "per_seq_max": per_seq_max,
            "per_seq_count": dict(per_seq_count),
            "lost": sum(r["lost"] for r in replies),
            "duplicates": sum(r["duplicates"] for r in replies),
            "closed_during_run": sum(r["closed_during_run"] for r in replies),
            "reconnects": sum(r["reconnects"] for r in replies),
            "first_delivery": min(firsts) if firsts else None,
            "last_delivery": max(lasts) if lasts else None,
            "requests": sum(r["requests"] for r in replies),
            "request_failures": dict(request_failures),
        }

    def status(self) -> dict:
        """{"open", "ready", "live", "closed"} summed over the workers (module docstring)."""
        replies = self._all("status", [{}] * len(self.pipes))
        return {key: sum(r[key] for r in replies) for key in ("open", "ready", "live", "closed")}

    def timelines(self) -> dict:
        """Every client's ready/closed events and every failed handshake attempt (module docstring)."""
        replies = self._all("timelines", [{}] * len(self.pipes))
        return {
            "clients": [events for r in replies for events in r["clients"]],
            "attempt_failures": sorted(f for r in replies for f in r["attempt_failures"]),
        }

    def close(self, timeout: float = 60.0) -> None:
        """Close every socket and end the workers (killed if they do not end within `timeout` s)."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", {}))
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def __enter__(self) -> ReceiverPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def worker_count_default() -> int:
    """Receiver processes by default: as many as cores, at least 2 (so the load comes from several)."""
    return max(2, os.cpu_count() or 2)
