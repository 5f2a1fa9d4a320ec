"""`python -m bench`: fan-out at each size on the compose stack and on the bare server, a reconnect
storm on the stack, idle capacity of both, then results.json, results.md and the plots in --out.
`make bench` runs it (bench/README.md).

With --fresh the stack of --project is brought up first in the bench profile (bench/profile.yml, its
own image tag and port) and removed afterwards with its logs saved to --logs, also on failure or
Ctrl-C, through the test harness' ComposeTarget (tests/harness; tests/ on PYTHONPATH, as bench/bench.mk
sets it). Without --project only the bare server is measured (for developing the harness). Exit status: 0
when the runs completed (whatever they measured: this is a benchmark, not a test), 2 for bad
arguments or a server that could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bench import machine, report
from bench.idle import idle_capacity
from bench.procs import Sampler, wait_quiet
from bench.receivers import worker_count_default
from bench.scenario import fanout
from bench.storm import storm
from bench.targets import BareServer, ComposeStack, TargetError

FULL_SIZES = [100, 1000, 2000, 5000]
QUICK_SIZES = [100, 1000]
# Sockets of the reconnect storm, all Daphne processes together: Nginx's least_conn spreads them
# evenly, so the killed one of 2 holds about 1,000, the case (bench/README.md).
STORM_SOCKETS = 2000
QUICK_STORM_SOCKETS = 200
# Posts per second through the storm: a rate the stack carries at STORM_SOCKETS (2,000 deliveries/s;
# the fan-out rows show it falls behind near 5,000-8,000/s on 2 cores), so the storm measures the
# way back, not the overload the fan-out rows already show. At 10/s the survivor and the returning
# clients never caught up (2026-11-29: 318 of 1,000 back in 60 s, backlog replies timed out).
STORM_RATE = 1.0
WARMUP_SOCKETS = 20
WARMUP_POSTS = 5


def parse_sizes(text: str) -> list[int]:
    """ "100,1000" -> [100, 1000]. Raises ValueError for anything but positive integers."""
    sizes = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part.isdigit() or int(part) <= 0:
            raise ValueError(f"--sizes: {part!r} is not a positive number of sockets")
        sizes.append(int(part))
    if not sizes:
        raise ValueError("--sizes: no size given")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", help=f"sockets per run, comma list (default {FULL_SIZES}; --quick {QUICK_SIZES})")
    parser.add_argument("--quick", action="store_true", help="smaller run for smoke tests: fits in ~2 minutes")
    parser.add_argument("--rate", type=float, default=10.0, help="posts per second (default 10)")
    parser.add_argument("--posts", type=int, help="posts per run (default 50; --quick 30)")
    parser.add_argument("--receivers", type=int, default=worker_count_default(), help="receiver processes")
    parser.add_argument("--drain-timeout", type=float, help="seconds to wait for deliveries (default 120; --quick 20)")
    parser.add_argument("--idle-max", type=int, help="idle capacity: most sockets tried (default 12000; --quick 1000)")
    parser.add_argument("--idle-step", type=int, default=500, help="idle capacity: sockets per step")
    parser.add_argument("--no-idle", action="store_true", help="skip the idle capacity probe")
    parser.add_argument(
        "--storm-sockets",
        type=int,
        help=f"reconnect storm: sockets, all Daphnes together (default {STORM_SOCKETS}; --quick {QUICK_STORM_SOCKETS})",
    )
    parser.add_argument(
        "--storm-timeout",
        type=float,
        default=60.0,
        help="reconnect storm: seconds to wait for all clients (default 60)",
    )
    parser.add_argument(
        "--storm-rate",
        type=float,
        default=STORM_RATE,
        help=f"reconnect storm: posts per second before, during and after the kill (default {STORM_RATE:g})",
    )
    parser.add_argument("--no-storm", action="store_true", help="skip the reconnect storm")
    parser.add_argument(
        "--handshakes-in-flight", type=int, default=100, help="handshakes at once per receiver process (default 100)"
    )
    parser.add_argument("--open-timeout", type=float, default=30.0, help="seconds a handshake may take (default 30)")
    parser.add_argument("--compose", default="docker-compose", help="compose command (default docker-compose)")
    parser.add_argument("--project", help="compose project of the running stack; without it: bare server only")
    parser.add_argument(
        "--fresh", action="store_true", help="bring the --project stack up in the bench profile first, remove it after"
    )
    parser.add_argument("--http-port", type=int, default=8197, help="--fresh: the stack's published port")
    # Published though unused (the bench profile turns TLS off): compose publishes both ports.
    parser.add_argument("--https-port", type=int, default=8196, help="--fresh: the stack's published HTTPS port")
    parser.add_argument("--image-tag", default="bench", help="--fresh: the stack's image tag (default bench)")
    parser.add_argument("--profile", type=Path, default=Path("bench/profile.yml"), help="--fresh: deploy variables")
    parser.add_argument("--logs", type=Path, default=Path("artifacts"), help="--fresh: where its logs go")
    parser.add_argument(
        "--bare-ws-port", type=int, default=0, help="bare server's WebSocket port (default: a free one)"
    )
    parser.add_argument("--bare-http-port", type=int, default=0, help="bare server's HTTP port (default: a free one)")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder")
    args = parser.parse_args(argv)
    try:
        args.sizes = sorted(set(parse_sizes(args.sizes))) if args.sizes else (QUICK_SIZES if args.quick else FULL_SIZES)
    except ValueError as exc:
        parser.error(str(exc))
    args.posts = args.posts if args.posts is not None else (30 if args.quick else 50)
    args.drain_timeout = args.drain_timeout if args.drain_timeout is not None else (20.0 if args.quick else 120.0)
    args.idle_max = args.idle_max if args.idle_max is not None else (1000 if args.quick else 12000)
    if args.storm_sockets is None:
        args.storm_sockets = QUICK_STORM_SOCKETS if args.quick else STORM_SOCKETS
    if args.receivers < 1 or args.posts < 1 or args.rate <= 0:
        parser.error("--receivers and --posts must be at least 1, --rate above 0")
    if args.storm_sockets < 2 or args.storm_timeout <= 0 or args.storm_rate <= 0:
        parser.error("--storm-sockets must be at least 2, --storm-timeout and --storm-rate above 0")
    return args


def log(message: str) -> None:
    print(f"bench {datetime.now(UTC):%H:%M:%S} {message}", flush=True)


def settle(target) -> None:
    with Sampler(target.processes()) as sampler:
        waited = wait_quiet(sampler)
    log(f"  {target.name}: quiet after {waited} s")


def run_all(args: argparse.Namespace) -> dict:
    started = time.time()
    run_id = uuid.uuid4().hex[:8]
    results = {
        "schema": 1,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "settings": {
            "sizes": args.sizes,
            "rate": args.rate,
            "posts": args.posts,
            "receivers": args.receivers,
            "drain_timeout_s": args.drain_timeout,
            "handshakes_in_flight": args.handshakes_in_flight,
            "open_timeout_s": args.open_timeout,
            "quick": args.quick,
            "storm_sockets": None if args.no_storm else args.storm_sockets,
            "storm_rate": None if args.no_storm else args.storm_rate,
        },
        "targets": {},
        "fanout": [],
        "storm": [],
        "idle": [],
    }
    stack = ComposeStack(shlex.split(args.compose), args.project) if args.project else None
    with BareServer(args.bare_ws_port, args.bare_http_port) as bare:
        targets = [t for t in (stack, bare) if t is not None]
        results["targets"] = {t.name: t.how for t in targets}
        baseline = {}
        for target in targets:
            # Not recorded: the first sockets and posts of a fresh server pay for imports, caches and
            # connection pools that every later run finds ready.
            log(f"warm-up: {WARMUP_SOCKETS} sockets on {target.name}")
            fanout(
                target,
                WARMUP_SOCKETS,
                run=f"{run_id}-{target.name}-warmup",
                receivers=1,
                rate=args.rate,
                posts=WARMUP_POSTS,
                drain_timeout=10,
            )
            with Sampler(target.processes()) as sampler:
                wait_quiet(sampler)
                baseline[target.name] = sum(sampler.rss().values())
        for size in args.sizes:
            for target in targets:
                settle(target)
                log(f"fan-out: {size} sockets on {target.name}")
                result = fanout(
                    target,
                    size,
                    run=f"{run_id}-{target.name}-{size}",
                    receivers=args.receivers,
                    rate=args.rate,
                    posts=args.posts,
                    drain_timeout=args.drain_timeout,
                    open_timeout=args.open_timeout,
                    concurrency=args.handshakes_in_flight,
                    baseline_rss_kib=baseline[target.name],
                )
                results["fanout"].append(result)
                log("  " + report.one_line(result))
        if stack is not None and not args.no_storm:
            settle(stack)
            log(
                f"reconnect storm: {args.storm_sockets} sockets on the stack, {args.storm_rate:g} posts/s, "
                "SIGKILL of the busiest Daphne"
            )
            result = storm(
                stack,
                args.storm_sockets,
                run=f"{run_id}-storm",
                receivers=args.receivers,
                rate=args.storm_rate,
                drain_timeout=args.drain_timeout,
                timeout_s=args.storm_timeout,
                open_timeout=args.open_timeout,
                concurrency=args.handshakes_in_flight,
            )
            results["storm"].append(result)
            log("  " + report.storm_line(result))
        if not args.no_idle:
            for target in targets:
                log(f"idle capacity of {target.name}: restarted first, then up to {args.idle_max} sockets")
                target.restart()
                settle(target)
                result = idle_capacity(
                    target,
                    run=f"{run_id}-{target.name}-idle",
                    receivers=args.receivers,
                    max_sockets=args.idle_max,
                    step=args.idle_step,
                    open_timeout=args.open_timeout,
                    concurrency=args.handshakes_in_flight,
                )
                results["idle"].append(result)
                log(f"  held {result['held']} ({result['stopped']}), {result['kib_per_socket']} KiB per socket")
    results["seconds"] = round(time.time() - started, 1)
    return results


@contextlib.contextmanager
def fresh_stack(args: argparse.Namespace):
    """The --project stack brought up afresh in the bench profile for the block, then its logs saved
    (bench-compose-logs.txt under --logs) and it removed with its volume. TargetError when the
    profile is refused or the stack does not come up."""
    from harness.compose import ComposeTarget  # tests/harness: the tiers' own bring-up

    # docker/vars.py checks the profile and stages it inside the build context, as `make up VARS=` does.
    staged = f"docker/vars.local/{args.project}.yml"
    check = subprocess.run([sys.executable, "docker/vars.py", str(args.profile), staged], check=False)
    if check.returncode != 0:
        raise TargetError(f"{args.profile}: refused by docker/vars.py")
    stack = ComposeTarget(
        args.project, args.http_port, staged, args.image_tag, shlex.split(args.compose), https_port=args.https_port
    )
    stack.logs_name = "bench-compose-logs.txt"
    try:
        log(f"bringing up compose project {args.project} (bench profile, images :{args.image_tag})")
        try:
            stack.up()
        except RuntimeError as exc:
            raise TargetError(str(exc)) from exc
        yield
    finally:
        saved = stack.save_logs(args.logs)
        log(f"container logs saved to {', '.join(map(str, saved))}; removing the bench stack (down -v)")
        stack.down()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with fresh_stack(args) if args.fresh and args.project else contextlib.nullcontext():
            results = run_all(args)
    except TargetError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    written = report.write_all(results, args.out)
    log(f"done in {results['seconds']} s: {args.out / 'results.json'}, " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
