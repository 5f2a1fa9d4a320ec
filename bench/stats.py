"""Percentiles and the summaries the report shows. Pure functions: lists in, dicts of floats out."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).

    None for no values. Raises ValueError for q outside 0..100.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not within 0..100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Iterable[float]) -> dict:
    """{"n", "p50", "p99", "max"} of durations given in seconds, reported in milliseconds (None when empty)."""
    values = sorted(seconds)
    if not values:
        return {"n": 0, "p50": None, "p99": None, "max": None}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50) * 1000, 2),
        "p99": round(percentile(values, 99) * 1000, 2),
        "max": round(values[-1] * 1000, 2),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline rounded to 2 decimals; None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return round(value / baseline, 2)


def rate(count: int, seconds: float | None) -> float | None:
    """count per second; None for an empty or zero-length interval."""
    if not seconds or seconds <= 0:
        return None
    return round(count / seconds, 1)


def fanout_completion(per_message: dict[int, float], posted: Iterable[int]) -> list[float]:
    """Seconds from each posted message's send to its last delivery, for the messages delivered at all.

    `per_message` maps a message's seq to the largest latency any socket saw for it.
    """
    return [per_message[seq] for seq in posted if seq in per_message]
