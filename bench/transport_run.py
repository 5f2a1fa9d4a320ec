"""One run of the transport comparison (issue 14 item 3): `clients` board clients of one transport on
one stack, one poster at `rate` updates/s for `seconds`, and what the server paid for it.

Phases: the poster posts a warm-up message (its id is where the clients start: no backlog); the
clients connect (WebSocket: the handshake and `ready`; polling: a first answered poll); then the
*measured window*: the counters are read, the updates are posted, the clients' deliveries awaited
(every client has every update, or `drain_timeout` s after the last post), the counters read again.

The result (one JSON object) — every server figure over the measured window:
  mode, transport, clients, open, failed, failures {reason: n} (connect phase);
  updates: asked, ok, failed {reason: n};
  window_s;
  requests: total, per_s, by_kind {poll, longpoll, post, websocket, other}, by_status — finished
    requests in the Nginx access log (bench.counters); a WebSocket's line is written at its close,
    after the window, so a WebSocket run counts only its posts;
  client_requests, request_failures {reason: n} — what the polling clients sent (a cross-check);
  bytes: client_rx, client_tx (Nginx's side: received from / sent to the clients), upstream (Nginx ↔
    the app, both directions), per_update_per_client (client_rx + client_tx over updates answered 201
    × open clients), upstream_per_update_per_client — Ethernet frames as the veth counts them, TCP/IP
    headers, ACKs, pings and the posts themselves included;
  cpu_s {container: s}, cpu_s_total — the stack's containers' cgroups (nginx, app, redis);
  latency_ms {n, p50, p99, max} — post sent (time in the text) → the client has the update;
  expected, deliveries, lost, duplicates;
  loadgen: cpu_s_total, busiest_core_share (as bench.scenario: near 1.0 the client set the pace).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from bench import counters, stats
from bench.poster import Poster
from bench.procs import Named, Sampler, cpu_between
from bench.receivers import ReceiverPool


def stack_containers(compose: list[str], project: str) -> dict[str, dict]:
    """{service: {"id", "pid", "address"}} of the project's running containers (address: the first
    network's IPv4)."""
    ids = subprocess.run([*compose, "-p", project, "ps", "-q"], check=True, capture_output=True, text=True).stdout
    found = {}
    for container in ids.split():
        info = json.loads(
            subprocess.run(["docker", "inspect", container], check=True, capture_output=True, text=True).stdout
        )[0]
        service = info["Config"]["Labels"].get("com.docker.compose.service", info["Name"].lstrip("/"))
        addresses = [n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n.get("IPAddress")]
        found[service] = {"id": info["Id"], "pid": info["State"]["Pid"], "address": addresses[0] if addresses else ""}
    return found


class StackCounters:
    """Reads the stack's counters at a moment (bench.counters): CPU seconds per container, Nginx's
    bytes on its interface and the app's bytes on the interface it shares with Nginx."""

    def __init__(self, containers: dict[str, dict]):
        if "nginx" not in containers or "app" not in containers:
            raise counters.CounterError(f"the stack needs an nginx and an app container, found {sorted(containers)}")
        self.containers = containers
        nginx = containers["nginx"]
        self.nginx_iface = counters.iface_towards(nginx["pid"], nginx["address"])
        self.app_iface = counters.iface_towards(containers["app"]["pid"], nginx["address"])

    def read(self) -> dict:
        nginx = counters.net_bytes(self.containers["nginx"]["pid"])[self.nginx_iface]
        app = counters.net_bytes(self.containers["app"]["pid"])[self.app_iface]
        return {
            "time": time.time(),
            "cpu_s": {name: counters.cgroup_cpu_seconds(c["pid"]) for name, c in self.containers.items()},
            "nginx": nginx,
            "app": app,
        }


def difference(before: dict, after: dict) -> dict:
    """Counters between two `StackCounters.read()`s: {"seconds", "cpu_s" {container: s}, "client_rx",
    "client_tx", "upstream"} (bytes; module docstring). Nginx's interface carries the clients' traffic
    and the app's; the app's interface on the same network only the latter (rx + tx, both directions),
    so the clients' share is the difference, direction by direction (Nginx's rx from the app is the
    app's tx)."""
    n_rx = after["nginx"][0] - before["nginx"][0]
    n_tx = after["nginx"][1] - before["nginx"][1]
    a_rx = after["app"][0] - before["app"][0]
    a_tx = after["app"][1] - before["app"][1]
    return {
        "seconds": after["time"] - before["time"],
        "cpu_s": {name: round(after["cpu_s"][name] - before["cpu_s"].get(name, 0.0), 3) for name in after["cpu_s"]},
        "client_rx": n_rx - a_tx,
        "client_tx": n_tx - a_rx,
        "upstream": a_rx + a_tx,
    }


def per_update_per_client(total: int, updates: int, clients: int) -> float | None:
    """Bytes per update per client, one decimal; None without updates or clients."""
    if updates <= 0 or clients <= 0:
        return None
    return round(total / (updates * clients), 1)


def transport_run(
    stack,
    mode: str,
    transport: str,
    *,
    run: str,
    clients: int,
    seconds: float,
    rate: float,
    receivers: int,
    poll_period: float,
    wait_timeout: float,
    drain_timeout: float,
    open_timeout: float = 30.0,
    concurrency: int = 100,
) -> dict:
    """One run (module docstring); `stack` is a bench.targets.ComposeStack."""
    updates = max(1, round(seconds * rate))
    containers = stack_containers(stack.compose, stack.project)
    meter = StackCounters(containers)
    poster = Poster(stack.site, run, rate, updates)
    after = poster.latest_id()
    pool_options = {"transport": transport, "poll_period": poll_period, "wait_timeout": wait_timeout}
    with ReceiverPool(
        stack.endpoint, receivers, open_timeout=open_timeout, concurrency=concurrency, **pool_options
    ) as pool:
        loadgen_procs = [Named(f"receiver#{i + 1}", pid) for i, pid in enumerate(pool.pids)]
        loadgen_procs.append(Named("poster+harness", os.getpid()))
        with Sampler(loadgen_procs, interval=1.0) as loadgen:
            connected = pool.connect(clients, after)
            pool.arm(run)
            load0, before = loadgen.cpu(), meter.read()
            posting = poster.run()
            drained = pool.expect(run, posting["posted"], drain_timeout)
            after_counters, load1 = meter.read(), loadgen.cpu()
    window = difference(before, after_counters)
    log_text = counters.container_log(containers["nginx"]["id"], before["time"] - 1, after_counters["time"] + 1)
    requests = counters.count_requests(log_text, before["time"], after_counters["time"])
    load_cpu = cpu_between(load0, load1)
    receivers_cpu = [v for k, v in load_cpu.items() if k.startswith("receiver")]
    opened, ok_updates = connected["ok"], len(posting["posted"])
    client_total = window["client_rx"] + window["client_tx"]
    return {
        "mode": mode,
        "transport": transport,
        "clients": clients,
        "open": opened,
        "failed": connected["failed"],
        "failures": connected["failures"],
        "updates": {"asked": posting["asked"], "ok": ok_updates, "failed": posting["failed"]},
        "window_s": round(window["seconds"], 2),
        "requests": {**requests, "per_s": stats.rate(requests["total"], window["seconds"])},
        "client_requests": drained["requests"],
        "request_failures": drained["request_failures"],
        "bytes": {
            "client_rx": window["client_rx"],
            "client_tx": window["client_tx"],
            "upstream": window["upstream"],
            "per_update_per_client": per_update_per_client(client_total, ok_updates, opened),
            "upstream_per_update_per_client": per_update_per_client(window["upstream"], ok_updates, opened),
        },
        "cpu_s": window["cpu_s"],
        "cpu_s_total": round(sum(window["cpu_s"].values()), 2),
        "latency_ms": stats.summary_ms(drained["latencies"]),
        "expected": opened * ok_updates,
        "deliveries": drained["deliveries"],
        "lost": drained["lost"],
        "duplicates": drained["duplicates"],
        "loadgen": {
            "processes": receivers,
            "cpu_s_total": round(sum(load_cpu.values()), 2),
            "busiest_core_share": (
                round(max(receivers_cpu) / window["seconds"], 2) if receivers_cpu and window["seconds"] else None
            ),
        },
    }
