"""Reconnect storm: SIGKILL the Daphne holding most of `size` board sockets while posts go on, time
every client's way back, and check that every post answered 201 reached every client exactly once.

Only against the compose stack: the bare server is one process, so killing it is killing the
service (and its messages, which live in its memory); there is no second process to come back to.
Phases:

1. `size` clients connect after a warm-up post, as in a fan-out run, with reconnect on
   (bench.receivers: board.js's ``?after=<last id shown>`` and jittered backoff, 0.25-0.5 s after a
   close). Each ``ready`` frame names the Daphne that holds the socket (served_by ``host:port``).
2. The poster starts at `rate` posts/s. `lead_s` later (posts are flowing, and the site's handshake
   bucket has drained what the connect left in it) the Daphne with the most ready clients is sent
   SIGKILL from the host: a container's processes are host processes, its PID comes from
   bench.procs. supervisor starts a new one.
3. Posting goes on until every client that was on the killed Daphne is ready again (or `timeout_s`
   after the kill), then `tail_s` more; then the receivers wait until every client has every post
   answered 201, or `drain_timeout` s (the fan-out run's accounting).

The result (one JSON object; `_ms` keys in milliseconds, `_s` keys in seconds, times from the kill):
  server, sockets, how, limits {stage: {rate_per_s, delay, burst}} (the Nginx handshake stages the
  stack was built with), predicted_nginx_wait_s (the slowest stage's wait for `held` handshakes
  at once: README "Handshake limits"), predicted_all_back_s (that plus the clients' first backoff,
  at most 0.5 s: when the last client would be ready if only the backoff and Nginx's pacing took
  time; the rest of the measured figure is the servers');
  handshakes: the first connect of all sockets (ok, failed, failures, per_s, ms, seconds);
  killed: process, pid, port, held (ready clients it held), others (ready clients on the other
  Daphne processes); restarted_s (a new process of the same program seen; None: not within the wait);
  reconnect: held, back, not_back, others_closed (clients of the other processes that lost their
  socket: should be 0), back_on {port: clients}, noticed_ms {n, p50, p99, max} (kill -> the client
  saw its close), reconnect_ms {...} (kill -> ready again, backlog included), all_back_s (the last
  one; None unless all came back), reconnect_s [sorted, per client], failed_attempts and failures
  {reason: n} (every failed handshake attempt from the kill on, retries included);
  posts: asked, ok, failed {reason: n}, ms; posting_s; expected, deliveries, lost, duplicates,
  delivery_ms (post sent -> frame read, backfilled frames included);
  loadgen: cpu_s_total, busiest_core_share over the storm (kill -> all back or the wait's end).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

from bench import stats
from bench.poster import Poster
from bench.procs import Named, Sampler, container_pids, cpu_between, tree
from bench.receivers import BACKOFF_START, ReceiverPool
from bench.targets import ROOT, TargetError
from deploy import render

# One client's events as bench.receivers records them: ("ready", time, served_by) / ("closed", time, "").
Events = Sequence[tuple[str, float, str]]

STAGES = {
    "per address": ("nginx_ws_rate", "nginx_ws_delay", "nginx_ws_burst"),
    "site": ("nginx_ws_site_rate", "nginx_ws_site_delay", "nginx_ws_site_burst"),
}


def port_of(served_by: str) -> str:
    """The port of a ready frame's served_by ("0.0.0.0:8100" -> "8100"; "" for none)."""
    return served_by.rsplit(":", 1)[-1] if served_by else ""


def live_port(events: Events, at: float) -> str | None:
    """The port of the Daphne holding the client's socket at time `at`, or None when it had none then
    (never ready yet, or its last event before `at` is a close)."""
    port = None
    for kind, when, served_by in events:
        if when > at:
            break
        port = port_of(served_by) if kind == "ready" else None
    return port


def busiest(clients: Iterable[Events], at: float) -> tuple[str, int]:
    """(port, clients) of the Daphne holding the most ready clients at `at`; the lowest port on a tie.
    Raises ValueError when no client is ready."""
    counts = Counter(p for p in (live_port(e, at) for e in clients) if p is not None)
    if not counts:
        raise ValueError("no client was ready")
    port = min(counts, key=lambda p: (-counts[p], int(p) if p.isdigit() else p))
    return port, counts[port]


def reconnects(clients: Iterable[Events], killed_at: float, port: str) -> dict:
    """How the clients of the Daphne on `port`, killed at `killed_at` (time.time()), came back.

    Returns {"held", "back", "not_back", "others", "others_closed", "back_on": {port: n},
    "noticed_s": [s], "reconnect_s": [s]} where a held client's noticed_s is kill -> its first close
    after the kill and reconnect_s kill -> its first ready after that close (sorted, seconds)."""
    held = back = others = others_closed = 0
    back_on: Counter[str] = Counter()
    noticed, reconnect = [], []
    for events in clients:
        was_on = live_port(events, killed_at)
        if was_on is None:
            continue
        later = [(kind, when, served_by) for kind, when, served_by in events if when > killed_at]
        closed_at = next((when for kind, when, _ in later if kind == "closed"), None)
        if was_on != port:
            others += 1
            others_closed += closed_at is not None
            continue
        held += 1
        if closed_at is None:
            continue
        noticed.append(closed_at - killed_at)
        ready = next(((when, sb) for kind, when, sb in later if kind == "ready" and when >= closed_at), None)
        if ready is not None:
            back += 1
            reconnect.append(ready[0] - killed_at)
            back_on[port_of(ready[1])] += 1
    return {
        "held": held,
        "back": back,
        "not_back": held - back,
        "others": others,
        "others_closed": others_closed,
        "back_on": dict(sorted(back_on.items())),
        "noticed_s": sorted(noticed),
        "reconnect_s": sorted(reconnect),
    }


def failures_since(attempt_failures: Iterable[tuple[float, str]], since: float) -> dict[str, int]:
    """{reason: failed handshake attempts at or after `since`} (times are time.time())."""
    return dict(sorted(Counter(reason for when, reason in attempt_failures if when >= since).items()))


def parse_rate(text: str) -> float:
    """Nginx's limit_req rate ("200r/s", "30r/m") in requests per second. Raises ValueError otherwise."""
    number, _, unit = str(text).partition("r/")
    if unit not in ("s", "m") or not number.isdigit():
        raise ValueError(f"not an Nginx rate: {text!r}")
    return int(number) / (1 if unit == "s" else 60)


def handshake_stages(variables: dict) -> dict:
    """{stage: {"rate_per_s", "delay", "burst"}} of the `limit_req` stages of `location /ws/`, from
    deploy variables (deploy/defaults.yml's names)."""
    return {
        stage: {"rate_per_s": parse_rate(variables[r]), "delay": int(variables[d]), "burst": int(variables[b])}
        for stage, (r, d, b) in STAGES.items()
    }


def predicted_wait_s(handshakes: int, stages: dict) -> float:
    """Seconds until the last of `handshakes` arriving at once (empty buckets) is passed: each stage
    holds handshake k for (k - delay) / rate, the longest stage counts (README "Handshake limits").
    Handshakes past a stage's burst are refused, not waited for: the wait is capped at its burst."""
    waits = [(min(handshakes, s["burst"]) - s["delay"]) / s["rate_per_s"] for s in stages.values()]
    return round(max(0.0, *waits), 2)


def stack_limits(profile: Path = ROOT / "bench" / "profile.yml") -> dict:
    """The handshake stages of the stack `make bench` builds, read with deploy/render.py's loader
    from the files its images are rendered with: deploy/defaults.yml, docker/deploy-vars.yml, then
    the bench profile (`python -m bench --fresh` stages it as EXTRA_VARS)."""
    return handshake_stages(render.load_vars([ROOT / "docker" / "deploy-vars.yml", profile]))


def _daphne(app_pid: int, port: str) -> Named | None:
    try:
        return next((p for p in tree(app_pid, "app") if p.name == f"app/daphne:{port}"), None)
    except psutil.Error:
        return None


def storm(
    stack,
    size: int,
    *,
    run: str,
    receivers: int,
    rate: float,
    drain_timeout: float,
    lead_s: float = 5.0,
    timeout_s: float = 60.0,
    tail_s: float = 2.0,
    open_timeout: float = 30.0,
    concurrency: int = 100,
) -> dict:
    """One reconnect storm on `stack` (bench.targets.ComposeStack) with `size` sockets; see the module
    docstring for the phases and the result. Raises TargetError when no Daphne can be found or killed."""
    app_pid = container_pids(stack.compose, stack.project).get("app")
    if app_pid is None:
        raise TargetError(f"compose project {stack.project!r} has no app container")
    most_posts = int(rate * (lead_s + timeout_s + tail_s)) + 1
    poster = Poster(stack.site, run, rate, most_posts)
    after = poster.latest_id()
    stop_posting = threading.Event()
    posting: dict = {}
    with ReceiverPool(
        stack.endpoint, receivers, reconnect=True, open_timeout=open_timeout, concurrency=concurrency
    ) as pool:
        loadgen = [Named(f"receiver#{i + 1}", pid) for i, pid in enumerate(pool.pids)]
        loadgen.append(Named("poster+harness", os.getpid()))
        handshakes = pool.connect(size, after)
        pool.arm(run)

        def post() -> None:
            try:
                posting.update(poster.run(stop_posting))
            except Exception as exc:  # reported below, after the clients are drained
                posting["error"] = exc

        poster_thread = threading.Thread(target=post, name="poster")
        poster_thread.start()
        try:
            time.sleep(lead_s)
            port, _ = busiest(pool.timelines()["clients"], time.time())
            victim = _daphne(app_pid, port)
            if victim is None:
                raise TargetError(f"no app/daphne:{port} process under the app container (PID {app_pid})")
            with Sampler(loadgen, interval=1.0) as load:
                load0 = load.cpu()
                killed_at = time.time()
                try:
                    os.kill(victim.pid, signal.SIGKILL)
                except PermissionError as exc:
                    raise TargetError(f"cannot kill {victim.name} (PID {victim.pid}): run as root") from exc
                restarted_at, deadline = None, time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    if restarted_at is None:
                        new = _daphne(app_pid, port)
                        if new is not None and new.pid != victim.pid:
                            restarted_at = time.time()
                    back = reconnects(pool.timelines()["clients"], killed_at, port)
                    if back["not_back"] == 0 and restarted_at is not None:
                        break
                    time.sleep(0.25)
                storm_s = time.time() - killed_at
                load_cpu = cpu_between(load0, load.cpu())
            time.sleep(tail_s)
        finally:
            stop_posting.set()
            poster_thread.join()
        if "error" in posting:
            raise TargetError(f"the poster failed during the storm: {posting['error']}") from posting["error"]
        drained = pool.expect(run, posting["posted"], drain_timeout)
        timelines = pool.timelines()
    back = reconnects(timelines["clients"], killed_at, port)
    failures = failures_since(timelines["attempt_failures"], killed_at)
    limits = stack_limits()
    receivers_cpu = [v for k, v in load_cpu.items() if k.startswith("receiver")]
    connect_s = (handshakes["last_ready"] - handshakes["first_attempt"]) if handshakes["last_ready"] else None
    return {
        "server": stack.name,
        "sockets": size,
        "how": stack.how,
        "limits": limits,
        "predicted_nginx_wait_s": predicted_wait_s(back["held"], limits),
        "predicted_all_back_s": round(BACKOFF_START + predicted_wait_s(back["held"], limits), 2),
        "handshakes": {
            "ok": handshakes["ok"],
            "failed": handshakes["failed"],
            "failures": handshakes["failures"],
            "per_s": stats.rate(handshakes["ok"], connect_s),
            "ms": stats.summary_ms(handshakes["handshake_s"]),
            "seconds": round(connect_s, 2) if connect_s else None,
        },
        "killed": {
            "process": victim.name,
            "pid": victim.pid,
            "port": port,
            "held": back["held"],
            "others": back["others"],
        },
        "restarted_s": round(restarted_at - killed_at, 2) if restarted_at else None,
        "reconnect": {
            "held": back["held"],
            "back": back["back"],
            "not_back": back["not_back"],
            "others_closed": back["others_closed"],
            "back_on": back["back_on"],
            "noticed_ms": stats.summary_ms(back["noticed_s"]),
            "reconnect_ms": stats.summary_ms(back["reconnect_s"]),
            "all_back_s": round(back["reconnect_s"][-1], 2) if back["reconnect_s"] and not back["not_back"] else None,
            "reconnect_s": [round(s, 3) for s in back["reconnect_s"]],
            "failed_attempts": sum(failures.values()),
            "failures": failures,
        },
        "posts": {
            "asked": posting["asked"],
            "ok": len(posting["posted"]),
            "failed": posting["failed"],
            "ms": stats.summary_ms(posting["post_s"]),
        },
        "posting_s": round(posting["ended"] - posting["started"], 1),
        "expected": handshakes["ok"] * len(posting["posted"]),
        "deliveries": drained["deliveries"],
        "lost": drained["lost"],
        "duplicates": drained["duplicates"],
        "delivery_ms": stats.summary_ms(drained["latencies"]),
        "loadgen": {
            "processes": receivers,
            "cpu_s_total": round(sum(load_cpu.values()), 2),
            "busiest_core_share": round(max(receivers_cpu) / storm_s, 2) if receivers_cpu and storm_s else None,
        },
    }
