"""The texts the poster sends and what a receiver reads back.

A posted text is ``bench <run> <seq> <sent>``: `run` tells this invocation's messages from any
other's, `seq` counts posts from 0, `sent` is time.time() (seconds since the epoch, float) taken
just before the post was sent. The poster and the receivers run on one host, so a receiver's
time.time() minus `sent` is the delivery's latency without clock skew.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

PREFIX = "bench"


def make_text(run: str, seq: int, sent: float | None = None) -> str:
    """The text of post `seq` of run `run`; `sent` defaults to now."""
    if not run or " " in run:
        raise ValueError(f"run tag must be one word, got {run!r}")
    return f"{PREFIX} {run} {seq} {time.time() if sent is None else sent:.6f}"


@dataclass(frozen=True)
class BenchText:
    run: str
    seq: int
    sent: float


def parse_text(text: str) -> BenchText | None:
    """The parts of a bench text, or None for any other text (a user's message, another format)."""
    parts = text.split(" ")
    if len(parts) != 4 or parts[0] != PREFIX:
        return None
    try:
        return BenchText(parts[1], int(parts[2]), float(parts[3]))
    except ValueError:
        return None


@dataclass(frozen=True)
class Frame:
    """A board frame as a receiver needs it: kind "message" (with id and text), "ready" (with last_id and
    served_by, the Daphne's "host:port"), or other."""

    kind: str
    id: int | None = None
    text: str | None = None
    last_id: int | None = None
    served_by: str | None = None


def parse_frame(raw: str | bytes) -> Frame:
    """Read one board frame (README, WS /ws/board/). Raises ValueError for anything not a JSON object."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError(f"frame is not a JSON object: {raw[:80]!r}")
    kind = data.get("type")
    if kind == "message":
        return Frame("message", id=int(data["id"]), text=str(data.get("text", "")))
    if kind == "ready":
        return Frame("ready", last_id=int(data.get("last_id") or 0), served_by=str(data.get("served_by") or ""))
    return Frame(str(kind))
