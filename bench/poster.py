"""Posts bench texts at a steady rate over HTTP, like a user's browser does (stack or bare server).

`Site` says where to post: the TCP base URL, the Host header, the site's Origin. The stack needs a
CSRF token: `Poster` fetches GET / once per thread for the csrftoken cookie, then sends
POST /api/messages with X-CSRFToken, the cookie, Origin and Referer. The bare server takes the same
request and ignores those headers.

Posts are scheduled at start + seq / rate (no drift when one is slow) on a small thread pool, so a
slow answer never delays the next post. Each text carries time.time() taken just before its request.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from bench.protocol import make_text

TIMEOUT_S = 30


@dataclass(frozen=True)
class Site:
    base_url: str  # http://address:port, where the TCP connection goes
    host: str  # the Host header (one of nginx_server_names for the stack)
    origin: str  # the site's own origin as a browser would send it

    @property
    def headers(self) -> dict:
        return {"Host": self.host, "Origin": self.origin, "Referer": f"{self.origin}/"}


class PostError(Exception):
    """A post that was not answered 201 with an id; the message says what came back."""


class Poster:
    """Sends `count` posts of run `run` at `rate` per second to `site`; see run() for the result."""

    def __init__(self, site: Site, run: str, rate: float, count: int, threads: int = 4):
        if rate <= 0 or count < 0:
            raise ValueError("rate must be > 0 and count >= 0")
        self.site, self.run_tag, self.rate, self.count, self.threads = site, run, rate, count, threads
        self._local = threading.local()

    def _session(self) -> tuple[requests.Session, str]:
        if not hasattr(self._local, "session"):
            session = requests.Session()
            response = session.get(f"{self.site.base_url}/", headers=self.site.headers, timeout=TIMEOUT_S)
            token = response.cookies.get("csrftoken", "")
            self._local.session, self._local.token = session, token
        return self._local.session, self._local.token

    def post(self, text: str) -> int:
        """POST one text; return its id. Raises PostError or requests' exceptions."""
        session, token = self._session()
        headers = {**self.site.headers, "X-CSRFToken": token}
        if token:
            headers["Cookie"] = f"csrftoken={token}"
        response = session.post(
            f"{self.site.base_url}/api/messages", json={"text": text}, headers=headers, timeout=TIMEOUT_S
        )
        if response.status_code != 201:
            raise PostError(f"HTTP {response.status_code}")
        return int(response.json()["id"])

    def latest_id(self) -> int:
        """Post one warm-up message (not of this run) and return its id: receivers connect after it."""
        return self.post(make_text(f"{self.run_tag}-warmup", 0))

    def _one(self, seq: int) -> tuple[int, float, int | None, str | None]:
        sent = time.time()
        try:
            message_id = self.post(make_text(self.run_tag, seq, sent))
        except (PostError, requests.RequestException, ValueError, KeyError) as exc:
            reason = str(exc) if isinstance(exc, PostError) else type(exc).__name__
            return seq, time.time() - sent, None, reason
        return seq, time.time() - sent, message_id, None

    def run(self, stop: threading.Event | None = None) -> dict:
        """Post everything, or until `stop` is set (then no further post is sent; those sent are
        awaited); return {"asked": posts sent, "posted": [seq answered 201], "ids": {seq: id},
        "failed": {reason: n}, "post_s": [seconds per answered post], "started", "ended" (time.time())}."""
        futures = []
        stop = stop or threading.Event()
        started = time.time()
        origin = time.monotonic()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="poster") as pool:
            for seq in range(self.count):
                delay = origin + seq / self.rate - time.monotonic()
                if stop.wait(max(0.0, delay)):
                    break
                futures.append(pool.submit(self._one, seq))
            results = [f.result() for f in futures]
        failed: dict[str, int] = {}
        for _, _, message_id, reason in results:
            if message_id is None:
                failed[reason] = failed.get(reason, 0) + 1
        return {
            "asked": len(results),
            "posted": [seq for seq, _, mid, _ in results if mid is not None],
            "ids": {seq: mid for seq, _, mid, _ in results if mid is not None},
            "failed": failed,
            "post_s": [s for _, s, mid, _ in results if mid is not None],
            "started": started,
            "ended": time.time(),
        }
