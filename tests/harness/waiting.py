"""Bounded waiting, the one helper every tier uses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TimedOut(AssertionError):
    """A bounded wait ran out; the message says what was awaited and what was last seen."""


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call check until it returns a truthy value (returned) or timeout seconds pass (TimedOut).

    Exceptions from check count as "not yet"; the last one (or the last falsy value) is reported on
    timeout.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
        except Exception as exc:  # noqa: BLE001 (any failure of the probe means "not yet")
            value, last = None, exc
        else:
            last = value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimedOut(f"{what}: not within {timeout} s; last seen: {last!r}")
        time.sleep(interval)
