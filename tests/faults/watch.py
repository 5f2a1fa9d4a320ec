"""PID samples over time after a fault: one look at `is_running` can hide a crash loop (RUNNING,
dead, RUNNING again with another PID), so the programs are sampled until they have been RUNNING
with the same PIDs for a while."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .stacks import Stack

# After recovery the PIDs must not change for this long.
STABLE_SECONDS = 5
SAMPLE_INTERVAL = 0.5


@dataclass
class Watch:
    """Samples of the supervisor programs after a fault, and when they were whole again."""

    start: float
    before: dict[str, tuple[str, int, int]]
    # (seconds since start, {program: (state, pid, start ticks)}, whole)
    samples: list[tuple[float, dict[str, tuple[str, int, int]], bool]] = field(default_factory=list)
    recovered_at: float | None = None

    def stable(self) -> bool:
        """Every sample since recovery shows the same PIDs, all RUNNING."""
        if self.recovered_at is None:
            return False
        after = [(states, whole) for t, states, whole in self.samples if t >= self.recovered_at]
        first = after[0][0]
        return all(states == first and whole for states, whole in after)

    def replacements(self, name: str) -> list[tuple[int, int]]:
        """Processes (pid, start) the program had after the fault other than the one before, in
        order: one after a clean restart, many in a crash loop."""
        old = self.before.get(name, ("", 0, 0))[1:]
        seen: list[tuple[int, int]] = []
        for _, states, _ in self.samples:
            state = states.get(name)
            if state and state[1] and state[1:] != old and state[1:] not in seen:
                seen.append(state[1:])
        return seen

    def summary(self, limit: int = 40) -> str:
        lines = []
        previous = None
        for t, states, whole in self.samples:
            compact = " ".join(
                f"{name.split(':')[-1]}={state}/{pid}" for name, (state, pid, _) in sorted(states.items())
            )
            if compact != previous:
                lines.append(f"  +{t:5.1f}s whole={whole} {compact or 'supervisord not answering'}")
                previous = compact
        return "\n".join(lines[-limit:])


def watch_programs(
    stack: Stack,
    before: dict[str, tuple[str, int, int]],
    replaced: set[str],
    serving: Callable[[], bool],
    timeout: float,
    start: float | None = None,
    stable_seconds: float = STABLE_SECONDS,
) -> Watch:
    """Sample the programs until they are whole and stay so for stable_seconds (or timeout passes).

    Whole: every program RUNNING; those in `replaced` as another process than before; the others
    as the very process they were before (nothing else was restarted); and serving() true.
    """
    watch = Watch(start=start if start is not None else time.monotonic(), before=before)
    programs = stack.target.programs
    while True:
        now = time.monotonic() - watch.start
        states = stack.program_states()
        states = {name: states[name] for name in programs if name in states}
        whole = len(states) == len(programs) and all(
            state[0] == "RUNNING" and (state[1:] != before.get(name, ("", 0, 0))[1:]) == (name in replaced)
            for name, state in states.items()
        )
        if whole:
            try:
                whole = bool(serving())
            except Exception:  # noqa: BLE001 (not serving yet)
                whole = False
        watch.samples.append((now, states, whole))
        if whole and watch.recovered_at is None:
            watch.recovered_at = now
        elif not whole and watch.recovered_at is not None:
            watch.recovered_at = None  # it fell over again: a crash loop, not a recovery
        if watch.recovered_at is not None and now - watch.recovered_at >= stable_seconds:
            return watch
        if now >= timeout + stable_seconds:
            return watch
        time.sleep(SAMPLE_INTERVAL)
