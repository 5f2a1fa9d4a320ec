"""Supervisor event listener that brings FATAL programs back, with exponential backoff.

supervisor gives up on a program that dies within `startsecs` more than `startretries` times in a
row and marks it FATAL, a state it never leaves by itself. A bad start is often caused by something
outside the program (a port still taken, Redis or the disk briefly gone), so this listener starts a
FATAL program again after base, 2 x base, 4 x base ... seconds (capped at max), and forgets the
count once the program reaches RUNNING.

    [eventlistener:fatal-retry]
    command = python -m ops.fatal_retry --base 5 --max 300
    events = PROCESS_STATE_FATAL,PROCESS_STATE_RUNNING
"""

import argparse
import os
import sys
import threading
import time

from supervisor import childutils


def log(message: str) -> None:
    # stdout is the event protocol's channel; everything human goes to stderr.
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} fatal-retry {message}", file=sys.stderr, flush=True)


def retry_delay(attempt: int, base: float, maximum: float) -> float:
    """Seconds to wait before restart number `attempt` (0-based)."""
    return min(maximum, base * 2**attempt)


def start_program(name: str) -> None:
    try:
        # A fresh proxy per call: these run on timer threads, and ServerProxy is not thread-safe.
        childutils.getRPCInterface(os.environ).supervisor.startProcess(name, False)
        log(f"started {name} again")
    except Exception as exc:  # already running, removed from the config, supervisor restarting
        log(f"starting {name} failed: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Restart FATAL supervisor programs with backoff.")
    parser.add_argument("--base", type=float, default=5.0, help="first delay in seconds")
    parser.add_argument("--max", type=float, default=300.0, help="longest delay in seconds")
    args = parser.parse_args(argv)
    attempts: dict[str, int] = {}
    while True:
        headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)
        event = headers.get("eventname", "")
        fields = childutils.get_headers(payload.split("\n", 1)[0])
        name = f"{fields.get('groupname')}:{fields.get('processname')}"
        if event == "PROCESS_STATE_FATAL":
            attempt = attempts.get(name, 0)
            attempts[name] = attempt + 1
            delay = retry_delay(attempt, args.base, args.max)
            log(f"{name} is FATAL; starting it again in {delay:g} s (retry {attempt + 1})")
            timer = threading.Timer(delay, start_program, args=(name,))
            timer.daemon = True
            timer.start()
        elif event == "PROCESS_STATE_RUNNING" and attempts.pop(name, None) is not None:
            log(f"{name} is RUNNING again")
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
