"""`python -m bench.transports`: what each transport and each deploy mode costs (issue 14 item 3).

For each mode of --modes (deploy_mode: split, asgi, wsgi) a compose stack in the bench profile
(bench/profile.yml plus `deploy_mode`) is brought up, and for each transport the mode offers
(MODE_TRANSPORTS; --transports narrows them) one run of bench.transport_run: --clients clients,
one update per 1/--rate s for --seconds s. Then transports.json, transports.md and transports.png
in --out (bench.transport_report), and with --readme the README's transports section.

Every figure is also given as a ratio to WebSocket in split measured in the same invocation (the
baseline: the stack as shipped, the transport the page prefers): figures from a shared 2-core
machine move between invocations, their ratios much less.

`make bench-transports` runs it (bench/README.md). With --fresh each mode's stack is brought up and
removed (down -v, logs saved) through the test harness' ComposeTarget, also on failure or Ctrl-C;
without it --project names one running stack, of the single mode --modes gives. A transport the
stack does not serve (long polling before the ASGI view is deployed: 404) is skipped with its
reason in the JSON and the table, not a failure. Exit status: 0 when the runs completed (whatever
they measured), 2 for bad arguments or a stack that could not be brought up or reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests
import yaml

from bench import machine, transport_report
from bench.counters import CounterError
from bench.pollers import LONGPOLL_PATH
from bench.poster import Poster
from bench.procs import Sampler, wait_quiet
from bench.receivers import TRANSPORTS, ReceiverPool, worker_count_default
from bench.targets import ComposeStack, TargetError
from bench.transport_run import transport_run

MODES = ("split", "asgi", "wsgi")
# What each deploy mode serves (docs: /work/briefs/s4-contract.md, issue 14): the long-poll view is
# an async view that only Daphne serves; wsgi runs no Daphne.
MODE_TRANSPORTS = {
    "split": ("websocket", "longpoll", "poll"),
    "asgi": ("websocket", "longpoll", "poll"),
    "wsgi": ("poll",),
}
BASELINE = ("split", "websocket")
ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = ROOT / "deploy" / "defaults.yml"
QUICK = {"clients": 50, "seconds": 10.0, "drain_timeout": 15.0}


def parse_list(text: str, allowed: tuple[str, ...], option: str) -> list[str]:
    """ "split,wsgi" -> ["split", "wsgi"] in `allowed`'s order. Raises ValueError naming the option
    for an empty list or a name not in `allowed`."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        given = ", ".join(unknown) or "nothing"
        raise ValueError(f"{option}: {given} is not one of {', '.join(allowed)}")
    return [n for n in allowed if n in names]


def plan(modes: list[str], transports: list[str]) -> list[tuple[str, str]]:
    """The (mode, transport) runs, in order: each mode's transports that were asked for."""
    return [(mode, t) for mode in modes for t in MODE_TRANSPORTS[mode] if t in transports]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.transports", description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES), help="deploy modes, comma list (default all)")
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="transports, comma list (default all)")
    parser.add_argument("--clients", type=int, help="clients per run (default 1000; --quick 50)")
    parser.add_argument("--seconds", type=float, help="seconds of updates per run (default 60; --quick 10)")
    parser.add_argument("--rate", type=float, default=1.0, help="updates per second (default 1)")
    parser.add_argument("--poll-period", type=float, default=2.0, help="short polling: seconds between polls (2)")
    parser.add_argument("--wait-timeout", type=int, default=25, help="long polling: the server's wait (25 s)")
    parser.add_argument("--drain-timeout", type=float, help="seconds to wait for the last updates (30; --quick 15)")
    parser.add_argument("--quick", action="store_true", help="a smoke: 50 clients, 10 s")
    parser.add_argument("--receivers", type=int, default=worker_count_default(), help="client processes")
    parser.add_argument("--handshakes-in-flight", type=int, default=100, help="connects at once per process")
    parser.add_argument("--open-timeout", type=float, default=30.0, help="seconds a connect or request may take")
    parser.add_argument("--compose", default="docker-compose", help="compose command (default docker-compose)")
    parser.add_argument("--project", required=True, help="compose project (with --fresh: prefix, -<mode> added)")
    parser.add_argument("--fresh", action="store_true", help="bring each mode's stack up first, remove it after")
    parser.add_argument("--http-port", type=int, default=8320, help="--fresh: the stacks' published port")
    parser.add_argument("--https-port", type=int, default=8324, help="--fresh: the stacks' published HTTPS port")
    parser.add_argument("--image-tag", default="bench", help="--fresh: the stacks' image tag (default bench)")
    parser.add_argument("--profile", type=Path, default=Path("bench/profile.yml"), help="--fresh: deploy variables")
    parser.add_argument("--logs", type=Path, default=Path("artifacts"), help="--fresh: where the stacks' logs go")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="output folder")
    parser.add_argument("--readme", type=Path, help="also rewrite this README's transports section")
    args = parser.parse_args(argv)
    try:
        args.modes = parse_list(args.modes, MODES, "--modes")
        args.transports = parse_list(args.transports, TRANSPORTS, "--transports")
    except ValueError as exc:
        parser.error(str(exc))
    for key, value in QUICK.items():
        if getattr(args, key) is None:
            setattr(args, key, value if args.quick else {"clients": 1000, "seconds": 60.0, "drain_timeout": 30.0}[key])
    if args.clients < 1 or args.seconds <= 0 or args.rate <= 0 or args.poll_period <= 0 or args.receivers < 1:
        parser.error("--clients and --receivers must be at least 1; --seconds, --rate, --poll-period above 0")
    if not 1 <= args.wait_timeout <= 55:
        parser.error("--wait-timeout: the long-poll view takes 1 to 55 s")
    if not args.fresh and len(args.modes) != 1:
        parser.error("without --fresh, --modes names the one mode of the running --project stack")
    if not plan(args.modes, args.transports):
        parser.error(f"no mode of {args.modes} offers any of {args.transports}")
    return args


def log(message: str) -> None:
    print(f"bench-transports {datetime.now(UTC):%H:%M:%S} {message}", flush=True)


def mode_vars(profile: Path, mode: str, defaults: Path = DEFAULTS) -> dict:
    """The bench profile's variables plus `deploy_mode: mode`. split is today's stack: the variable is
    left out when deploy/defaults.yml does not define it yet. TargetError for another mode then."""
    variables = yaml.safe_load(profile.read_text()) or {}
    if "deploy_mode" in (yaml.safe_load(defaults.read_text()) or {}):
        variables["deploy_mode"] = mode
    elif mode != "split":
        raise TargetError(f"deploy_mode {mode!r}: deploy/defaults.yml has no deploy_mode (issue 14 item 1) yet")
    return variables


def longpoll_offered(stack: ComposeStack, timeout: float = 10.0) -> str | None:
    """None when the stack answers a long poll (200), else why not ("HTTP 404: <its error>")."""
    url = f"{stack.site.base_url}{LONGPOLL_PATH}?after=0&timeout=1"
    try:
        response = requests.get(url, headers={"Host": stack.site.host}, timeout=timeout)
    except requests.RequestException as exc:
        return type(exc).__name__
    if response.status_code == 200:
        return None
    try:
        detail = response.json().get("error", "")
    except ValueError:
        detail = ""
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


@contextlib.contextmanager
def fresh_stack(args: argparse.Namespace, mode: str):
    """The mode's stack (project <--project>-<mode>) brought up in the bench profile for the block,
    then its logs saved (<project>-compose-logs.txt under --logs) and it removed with its volume;
    yields the project name. TargetError when refused or not healthy."""
    from harness.compose import ComposeTarget  # tests/harness: the tiers' own bring-up

    project = f"{args.project}-{mode}"
    staged = ROOT / "docker" / "vars.local" / f"{project}.yml"
    staged.parent.mkdir(exist_ok=True)
    source = ROOT / "docker" / "vars.local" / f"{project}.in.yml"
    source.write_text(yaml.safe_dump(mode_vars(args.profile, mode), sort_keys=True))
    check = subprocess.run([sys.executable, "docker/vars.py", str(source), str(staged.relative_to(ROOT))], cwd=ROOT)
    if check.returncode != 0:
        raise TargetError(f"deploy_mode {mode}: the bench profile was refused by docker/vars.py")
    stack = ComposeTarget(
        project,
        args.http_port,
        str(staged.relative_to(ROOT)),
        args.image_tag,
        shlex.split(args.compose),
        https_port=args.https_port,
    )
    stack.logs_name = f"{project}-compose-logs.txt"
    try:
        log(f"bringing up {project} (deploy_mode {mode}, bench profile, images :{args.image_tag})")
        try:
            stack.up()
        except RuntimeError as exc:
            raise TargetError(str(exc)) from exc
        yield project
    finally:
        saved = stack.save_logs(args.logs)
        log(f"{project}: logs saved to {', '.join(map(str, saved))}; removing it (down -v)")
        stack.down()


def settle(stack: ComposeStack) -> None:
    with Sampler(stack.processes()) as sampler:
        waited = wait_quiet(sampler)
    log(f"  quiet after {waited} s")


def warm_up(stack: ComposeStack, transport: str, run: str, clients: int = 20, posts: int = 5) -> None:
    """Not recorded: `clients` clients of `transport` and `posts` posts, so the first run does not pay
    for the fresh stack's imports, caches and connection pools."""
    poster = Poster(stack.site, run, 5.0, posts)
    after = poster.latest_id()
    with ReceiverPool(stack.endpoint, 1, transport=transport, poll_period=0.5, wait_timeout=5) as pool:
        pool.connect(clients, after)
        pool.arm(run)
        pool.expect(run, poster.run()["posted"], 10)


def run_mode(args: argparse.Namespace, mode: str, project: str, run_id: str, results: dict) -> None:
    stack = ComposeStack(shlex.split(args.compose), project)
    results["stacks"][mode] = stack.how
    runs = plan([mode], args.transports)
    log(f"{mode}: warm-up, 20 clients of {runs[0][1]} and 5 posts (not recorded)")
    warm_up(stack, runs[0][1], f"{run_id}-{mode}-warmup")
    for _, transport in runs:
        if transport == "longpoll":
            missing = longpoll_offered(stack)
            if missing:
                log(f"{mode}/{transport}: skipped, the stack does not serve {LONGPOLL_PATH} ({missing})")
                results["skipped"].append({"mode": mode, "transport": transport, "reason": missing})
                continue
        settle(stack)
        log(f"{mode}/{transport}: {args.clients} clients, {args.rate:g} update/s for {args.seconds:g} s")
        result = transport_run(
            stack,
            mode,
            transport,
            run=f"{run_id}-{mode}-{transport}",
            clients=args.clients,
            seconds=args.seconds,
            rate=args.rate,
            receivers=args.receivers,
            poll_period=args.poll_period,
            wait_timeout=args.wait_timeout,
            drain_timeout=args.drain_timeout,
            open_timeout=args.open_timeout,
            concurrency=args.handshakes_in_flight,
        )
        results["runs"].append(result)
        log("  " + transport_report.one_line(result))


def run_all(args: argparse.Namespace) -> dict:
    started = time.time()
    run_id = uuid.uuid4().hex[:8]
    results = {
        "schema": 1,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine.describe(),
        "settings": {
            "modes": args.modes,
            "transports": args.transports,
            "clients": args.clients,
            "seconds": args.seconds,
            "rate": args.rate,
            "poll_period_s": args.poll_period,
            "wait_timeout_s": args.wait_timeout,
            "drain_timeout_s": args.drain_timeout,
            "receivers": args.receivers,
            "quick": args.quick,
        },
        "baseline": list(BASELINE),
        "stacks": {},
        "runs": [],
        "skipped": [],
    }
    for mode in args.modes:
        with fresh_stack(args, mode) if args.fresh else contextlib.nullcontext(args.project) as project:
            run_mode(args, mode, project, run_id, results)
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.time() - started, 1)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run_all(args)
    except (TargetError, CounterError) as exc:
        print(f"bench-transports: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "transports.json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    written = transport_report.write_all(results, args.out)
    if args.readme:
        transport_report.update_readme(args.readme, results, args.out)
        written.append(args.readme)
    log(f"done in {results['seconds']} s: {args.out / 'transports.json'}, " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
