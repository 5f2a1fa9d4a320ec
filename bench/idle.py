"""Idle capacity: how many idle board sockets a server holds, and what each costs in memory.

Run on freshly started servers (`__main__` restarts them first): a heap grown by an earlier run
would hide the cost of new sockets. Sockets are opened in steps of `step` (no posts) until a step
has more than `max_failed_share` of its handshakes fail or `max_sockets` are open; then they are
held `hold_s` seconds (the servers' pings keep running) and counted again. Result: held (sockets
still open after the hold), attempted, failed, failures {reason: n}, stopped ("cap" or "failures"),
kib_per_socket (RSS of every server process after the hold minus before the first step, summed, per
held socket), rss_kib {process: KiB} after the hold, seconds.
"""

from __future__ import annotations

import time
from collections import Counter

from bench.poster import Poster
from bench.procs import Sampler
from bench.receivers import ReceiverPool


def idle_capacity(
    target,
    *,
    run: str,
    receivers: int,
    max_sockets: int,
    step: int = 500,
    hold_s: float = 5.0,
    max_failed_share: float = 0.02,
    open_timeout: float = 30.0,
    concurrency: int = 100,
) -> dict:
    started = time.monotonic()
    after = Poster(target.site, run, 1, 0).latest_id()
    attempted, failed, failures, stopped = 0, 0, Counter(), "cap"
    with Sampler(target.processes()) as server:
        rss_before = server.rss()
        with ReceiverPool(target.endpoint, receivers, open_timeout=open_timeout, concurrency=concurrency) as pool:
            while attempted < max_sockets:
                count = min(step, max_sockets - attempted)
                result = pool.connect(count, after)
                attempted += count
                failed += result["failed"]
                failures.update(result["failures"])
                if result["failed"] > max_failed_share * count:
                    stopped = "failures"
                    break
            time.sleep(hold_s)
            held = pool.status()["open"]
            rss_after = server.rss()
    growth = sum(rss_after.values()) - sum(rss_before.values())
    return {
        "server": target.name,
        "held": held,
        "attempted": attempted,
        "failed": failed,
        "failures": dict(failures),
        "stopped": stopped,
        "max_sockets": max_sockets,
        "kib_per_socket": round(growth / held, 1) if held else None,
        "rss_kib": rss_after,
        "seconds": round(time.monotonic() - started, 1),
    }
