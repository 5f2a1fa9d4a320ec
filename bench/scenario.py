"""One fan-out run: `size` board sockets on one server, `posts` posts at `rate`, every delivery timed.

Phases: the poster posts a warm-up message (its id is where the sockets start, so no backlog is
sent); the receivers open `size` sockets (handshake phase); then the poster posts and the receivers
wait until every open socket has every post or `drain_timeout` s pass (fan-out phase).

The result (one JSON object; times in ms, CPU in s, memory in KiB):
  server, sockets, how;
  handshakes: ok, failed, failures {reason: n}, per_s, ms {n, p50, p99, max};
  posts: asked, ok, failed {reason: n}, ms {...};
  delivery_ms {...} (post sent -> frame read, every delivery); fanout_ms {...} (post sent -> its
  last delivery, per post); expected, deliveries, lost, duplicates, closed_during_run,
  deliveries_per_s (from the first post to the last delivery);
  server: cpu_s {process: s} and cpu_s_total for the fan-out phase, cpu_connect_s_total for the
  handshake phase, peak_rss_kib {process: KiB} and peak_rss_kib_total, kib_per_socket (RSS of
  every process with the sockets open minus `baseline_rss_kib`, the server's total RSS just after
  its warm-up, per open socket: heaps do not shrink, so with sizes run in ascending order this is
  the cost per socket at the largest size so far; without a baseline, the growth within this run);
  loadgen: cpu_s {process: s}, cpu_s_total, busiest_core_share (the busiest load process's CPU
  over the fan-out phase's wall time; near 1.0 means the client, not the server, set the pace).
"""

from __future__ import annotations

import os
import time

from bench import stats
from bench.poster import Poster
from bench.procs import Named, Sampler, cpu_between
from bench.receivers import ReceiverPool


def fanout(
    target,
    size: int,
    *,
    run: str,
    receivers: int,
    rate: float,
    posts: int,
    drain_timeout: float,
    open_timeout: float = 30.0,
    concurrency: int = 100,
    baseline_rss_kib: int | None = None,
) -> dict:
    poster = Poster(target.site, run, rate, posts)
    after = poster.latest_id()
    with Sampler(target.processes()) as server:
        rss_before = server.rss()
        with ReceiverPool(target.endpoint, receivers, open_timeout=open_timeout, concurrency=concurrency) as pool:
            loadgen_procs = [Named(f"receiver#{i + 1}", pid) for i, pid in enumerate(pool.pids)]
            loadgen_procs.append(Named("poster+harness", os.getpid()))
            with Sampler(loadgen_procs, interval=1.0) as loadgen:
                cpu0 = server.cpu()
                handshakes = pool.connect(size, after)
                cpu1, load1 = server.cpu(), loadgen.cpu()
                rss_connected = server.rss()
                pool.arm(run)
                phase_start = time.monotonic()
                posting = poster.run()
                drained = pool.expect(run, posting["posted"], drain_timeout)
                phase_s = time.monotonic() - phase_start
                cpu2, load2 = server.cpu(), loadgen.cpu()
    open_sockets = handshakes["ok"]
    fanout_s = stats.fanout_completion(drained["per_seq_max"], posting["posted"])
    cpu_fanout = cpu_between(cpu1, cpu2)
    load_cpu = cpu_between(load1, load2)
    receivers_cpu = [v for k, v in load_cpu.items() if k.startswith("receiver")]
    connect_s = (handshakes["last_ready"] - handshakes["first_attempt"]) if handshakes["last_ready"] else None
    delivery_window = (drained["last_delivery"] - posting["started"]) if drained["last_delivery"] else None
    baseline = sum(rss_before.values()) if baseline_rss_kib is None else baseline_rss_kib
    rss_growth = sum(rss_connected.values()) - baseline
    return {
        "server": target.name,
        "sockets": size,
        "how": target.how,
        "handshakes": {
            "ok": handshakes["ok"],
            "failed": handshakes["failed"],
            "failures": handshakes["failures"],
            "per_s": stats.rate(handshakes["ok"], connect_s),
            "ms": stats.summary_ms(handshakes["handshake_s"]),
        },
        "posts": {
            "asked": posts,
            "ok": len(posting["posted"]),
            "failed": posting["failed"],
            "ms": stats.summary_ms(posting["post_s"]),
        },
        "delivery_ms": stats.summary_ms(drained["latencies"]),
        "fanout_ms": stats.summary_ms(fanout_s),
        "expected": open_sockets * len(posting["posted"]),
        "deliveries": drained["deliveries"],
        "lost": drained["lost"],
        "duplicates": drained["duplicates"],
        "closed_during_run": drained["closed_during_run"],
        "deliveries_per_s": stats.rate(drained["deliveries"], delivery_window),
        "fanout_phase_s": round(phase_s, 2),
        "server_usage": {
            "cpu_s": cpu_fanout,
            "cpu_s_total": round(sum(cpu_fanout.values()), 2),
            "cpu_connect_s_total": round(sum(cpu_between(cpu0, cpu1).values()), 2),
            "peak_rss_kib": dict(server.peak_rss),
            "peak_rss_kib_total": sum(server.peak_rss.values()),
            "kib_per_socket": round(rss_growth / open_sockets, 1) if open_sockets else None,
        },
        "loadgen": {
            "processes": receivers,
            "cpu_s": load_cpu,
            "cpu_s_total": round(sum(load_cpu.values()), 2),
            "busiest_core_share": round(max(receivers_cpu) / phase_s, 2) if receivers_cpu and phase_s else None,
        },
    }
