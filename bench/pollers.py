"""Board clients that poll instead of holding a WebSocket: the fallbacks of issue 14 (s4 contract).

- **Short polling** (`PollClient(..., long=False)`): `GET /api/messages?after=<last id>` and then,
  `period` seconds after each answer, the next one (a `setTimeout` chain, as a page does: under load
  the polls spread out rather than pile up); at once when the answer says `has_more`. The first poll
  of each client is made in `connect()` (it is its "ready"), the second after a random 0–`period` s,
  so 1,000 clients spread their polls over the period as 1,000 browsers opened at different times do.
- **Long polling** (`long=True`): `GET /api/messages/wait?after=<last id>&timeout=<s>`, again at once
  after every answer (the server holds the request until a message after `after` exists, or the
  timeout, then answers `{"messages": [], ...}`). A long-polling client is ready once its first
  request is sent (aiohttp's request-headers-sent trace): its answer comes only with the first update.
  An update posted before the server registered the wait is not lost: the view answers at once when
  messages after `after` exist.

Each client has its own aiohttp session with one keep-alive connection (a browser tab's), reaches
the Nginx container's address with the site's Host header, and shows each message id once exactly
like the WebSocket client (bench.receivers.Client.receive_message, whose accounting it shares). A
failed request (an HTTP status other than 200, a timeout, a refused connection) is counted by reason
and retried after board.js's backoff. Runs inside a receiver worker process (bench.receivers.Worker
with transport "poll" or "longpoll").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import aiohttp

from bench.receivers import Client, backoff

POLL_PATH = "/api/messages"
LONGPOLL_PATH = "/api/messages/wait"


class HTTPStatusError(Exception):
    """An answer other than 200 to a poll; str() is "HTTP <status>"."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, HTTPStatusError):
        return str(exc)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed without an HTTP answer"
    return type(exc).__name__


class PollClient(Client):
    """One board client that polls (module docstring); `worker` is its bench.receivers.Worker."""

    def __init__(self, worker, after: int | None, *, long: bool, period: float, wait_timeout: float):
        super().__init__(worker, after)
        self.long, self.period, self.wait_timeout = long, period, wait_timeout

    def url(self) -> str:
        endpoint = self.worker.endpoint
        base = f"http://{endpoint.address}:{endpoint.port}"
        after = self.last_id or 0
        if self.long:
            return f"{base}{LONGPOLL_PATH}?after={after}&timeout={int(self.wait_timeout)}"
        return f"{base}{POLL_PATH}?after={after}"

    async def poll_once(self, session: aiohttp.ClientSession) -> bool:
        """One request; shows its messages and returns its has_more. Raises on any failure."""
        self.worker.requests += 1
        async with session.get(self.url()) as response:
            if response.status != 200:
                await response.read()
                raise HTTPStatusError(f"HTTP {response.status}")
            body = await response.json(content_type=None)
        for message in body["messages"]:
            self.receive_message(int(message["id"]), str(message.get("text", "")))
        return bool(body.get("has_more"))

    def mark_ready(self, started: float) -> None:
        if self.ready_at is None:
            now = time.time()
            self.ready_at, self.handshake_s = now, now - started
            self.events.append(("ready", now, ""))
            self.settled.set()

    async def first_poll(self, session: aiohttp.ClientSession) -> bool:
        """The first request, while holding a place in the worker's connect pacing until the client is
        settled (long polling: the request sent; short: its answer), not until a long poll's answer."""
        async with self.worker.semaphore:
            request = asyncio.ensure_future(self.poll_once(session))
            settled = asyncio.ensure_future(self.settled.wait())
            await asyncio.wait({request, settled}, return_when=asyncio.FIRST_COMPLETED)
            settled.cancel()
        return await request

    async def run(self) -> None:
        worker, attempt = self.worker, 0
        # The server may hold a long poll for wait_timeout; the client's own limit comes after that.
        timeout = aiohttp.ClientTimeout(total=worker.open_timeout + (self.wait_timeout if self.long else 0))
        connector = aiohttp.TCPConnector(limit=1, ttl_dns_cache=None)
        traces = []
        if self.long:
            trace = aiohttp.TraceConfig()

            async def sent(_session, _context, _params) -> None:
                self.mark_ready(started)

            trace.on_request_headers_sent.append(sent)
            traces.append(trace)
        session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"Host": worker.endpoint.host}, trace_configs=traces
        )
        self.socket = session
        try:
            while not worker.stopping:
                started = time.time()
                try:
                    if self.settled.is_set():
                        has_more = await self.poll_once(session)
                    else:
                        has_more = await self.first_poll(session)
                except Exception as exc:  # noqa: BLE001 (every failed request is counted by its reason)
                    reason = _reason(exc)
                    worker.attempt_failures.append((time.time(), reason))
                    worker.request_failures[reason] += 1
                    if not self.settled.is_set():
                        self.first_failure = reason
                        self.settled.set()
                    # board.js: a failed short poll waits at least its period, a long poll the backoff.
                    await asyncio.sleep(backoff(attempt) if self.long else max(self.period, backoff(attempt)))
                    attempt += 1
                    continue
                attempt = 0
                if self.ready_at is None:
                    self.mark_ready(started)
                    if not self.long:
                        # Spread the clients' polls over the period (module docstring).
                        await asyncio.sleep(random.random() * self.period)  # noqa: S311 (spread, not security)
                        continue
                if has_more or self.long:
                    continue
                await asyncio.sleep(self.period)
        finally:
            self.socket = None
            with contextlib.suppress(Exception):
                await session.close()
            self.settled.set()
