"""What runs on a target's app host: processes read from /proc, supervisor's programs, and the one
sampler that tells a recovery from a crash loop.

One parser of `supervisorctl status` (parse_status). testinfra's `host.supervisor(name, path, conf)`
is used for single programs (tests/e2e, tests/vm); its `get_services` is not used for the whole list
because it requires exit status 0, and supervisorctl exits 3 whenever one program is not RUNNING,
which is exactly when the faults suite looks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

# supervisor's process states (supervisor.states.ProcessStates).
SUPERVISOR_STATES = {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}
# Programs of the app that must not outlive a stop (matched in their command lines).
APP_PROCESS_MARKERS = ("gunicorn", "daphne", "runworker", "ops.fatal_retry")
# Fields of /proc/<pid>/stat after "pid (comm) ", which may itself hold spaces: 2 = ppid, 20 = starttime.
STAT_FIELDS = 'sed "s/.*) //" "/proc/$pid/stat" 2>/dev/null | cut -d" " -f2,20'


@dataclass(frozen=True)
class Process:
    """One process: pid, parent, owner uid, start time in clock ticks since the kernel booted (with the
    pid it names a process even across container restarts, where the same pids come back), and its
    command line."""

    pid: int
    ppid: int
    uid: int
    start: int
    args: str


def processes(host) -> list[Process]:
    """Every process on a testinfra host, read from /proc (the Nginx image has no ps)."""
    script = (
        "for d in /proc/[0-9]*; do pid=${d#/proc/}; "
        f"stat=$({STAT_FIELDS}); "
        'uid=$(awk "/^Uid:/ {print \\$2}" "$d/status" 2>/dev/null); '
        'args=$(tr "\\0" " " < "$d/cmdline" 2>/dev/null); '
        '[ -n "$args" ] && [ -n "$stat" ] && printf "%s %s %s %s\\n" "$pid" "$stat" "$uid" "$args"; '
        "done; true"
    )
    found = []
    for line in host.run(script).stdout.splitlines():
        pid, ppid, start, uid, args = line.split(" ", 4)
        found.append(Process(int(pid), int(ppid), int(uid), int(start), args.strip()))
    return found


def app_processes(host) -> list[Process]:
    """The app's program processes (Gunicorn, Daphne, workers, the fatal-retry listener)."""
    return [p for p in processes(host) if any(marker in p.args for marker in APP_PROCESS_MARKERS)]


class ProgramState(NamedTuple):
    """A supervisor program's state, its pid (0 unless it has one) and that process' start ticks (0 when
    not read). A tuple, so two samples compare equal only when the same processes run."""

    state: str
    pid: int
    start: int = 0


def parse_status(output: str) -> dict[str, ProgramState]:
    """group:name -> ProgramState from `supervisorctl status` output; lines that are no program's
    status (supervisord not answering) are skipped, so {} means "no answer"."""
    states = {}
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[1] not in SUPERVISOR_STATES:
            continue
        pid = int(fields[3].rstrip(",")) if len(fields) > 3 and fields[2] == "pid" else 0
        states[fields[0]] = ProgramState(fields[1], pid)
    return states


class Supervisor:
    """supervisorctl on a target's app host (a testinfra host), as the user the host runs commands as."""

    def __init__(self, host, supervisorctl: str):
        self.host = host
        self.supervisorctl = supervisorctl

    def ctl(self, *args: str):
        """Runs `supervisorctl ARGS`; testinfra's CommandResult (rc, stdout, stderr)."""
        return self.host.run(f"{self.supervisorctl} {' '.join(args)}")

    def status(self) -> dict[str, ProgramState]:
        """group:name -> ProgramState; AssertionError when supervisord does not answer."""
        result = self.ctl("status")
        states = parse_status(result.stdout)
        if not states:
            raise AssertionError(f"supervisorctl status said nothing useful: {result.stdout!r} {result.stderr!r}")
        return states

    def states_with_starts(self) -> dict[str, ProgramState]:
        """Like status() with each pid's start ticks, in one command; {} while supervisord does not answer.

        The start time tells a restarted program from the old one even where pids repeat (a restarted
        container numbers its processes from 1 again).
        """
        script = (
            f'out=$({self.supervisorctl} status); printf "%s\\n---\\n" "$out"; '
            'echo "$out" | awk \'$3 == "pid" { sub(",", "", $4); print $4 }\' | '
            f'while read -r pid; do printf "%s %s\\n" "$pid" "$({STAT_FIELDS} | cut -d" " -f2)"; done'
        )
        status, _, starts = self.host.run(script).stdout.partition("\n---\n")
        start_of = {}
        for line in starts.splitlines():
            pid, _, start = line.partition(" ")
            start_of[int(pid)] = int(start) if start.strip().isdigit() else 0
        return {name: state._replace(start=start_of.get(state.pid, 0)) for name, state in parse_status(status).items()}

    def stop(self, name: str) -> None:
        """Stops a program (or group:*); AssertionError when supervisorctl fails."""
        result = self.ctl("stop", name)
        assert result.rc == 0, f"supervisorctl stop {name}: {result.stdout} {result.stderr}"

    def start(self, *names: str) -> None:
        """Starts programs; "already started" exits non-zero, so callers check the state they need."""
        self.ctl("start", *names)


# After recovery the PIDs must not change for this long.
STABLE_SECONDS = 5
SAMPLE_INTERVAL = 0.5


@dataclass
class Watch:
    """Samples of the supervisor programs after a fault, and when they were whole again."""

    start: float
    before: dict[str, ProgramState]
    # (seconds since start, {program: ProgramState}, whole)
    samples: list[tuple[float, dict[str, ProgramState], bool]] = field(default_factory=list)
    recovered_at: float | None = None

    def stable(self) -> bool:
        """Every sample since recovery shows the same processes, all RUNNING and whole."""
        if self.recovered_at is None:
            return False
        after = [(states, whole) for t, states, whole in self.samples if t >= self.recovered_at]
        first = after[0][0]
        return all(states == first and whole for states, whole in after)

    def replacements(self, name: str) -> list[tuple[int, int]]:
        """Processes (pid, start) the program had after the fault other than the one before, in
        order: one after a clean restart, many in a crash loop."""
        old = tuple(self.before.get(name, ("", 0, 0))[1:])
        seen: list[tuple[int, int]] = []
        for _, states, _ in self.samples:
            state = states.get(name)
            if state and state[1] and tuple(state[1:]) != old and tuple(state[1:]) not in seen:
                seen.append(tuple(state[1:]))
        return seen

    def summary(self, limit: int = 40) -> str:
        """The samples where something changed, one line each."""
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
    target,
    before: dict[str, ProgramState],
    replaced: set[str],
    serving: Callable[[], bool],
    timeout: float,
    start: float | None = None,
    stable_seconds: float = STABLE_SECONDS,
) -> Watch:
    """Sample target's programs until they are whole and stay so for stable_seconds (or timeout passes).

    Whole: every program RUNNING; those in `replaced` as another process than before; the others
    as the very process they were before (nothing else was restarted); and serving() true. A sample
    where it falls over again resets the recovery: a crash loop is not a recovery.
    """
    watch = Watch(start=start if start is not None else time.monotonic(), before=before)
    programs = target.programs
    while True:
        now = time.monotonic() - watch.start
        states = target.program_states()
        states = {name: states[name] for name in programs if name in states}
        whole = len(states) == len(programs) and all(
            state[0] == "RUNNING"
            and (tuple(state[1:]) != tuple(before.get(name, ("", 0, 0))[1:])) == (name in replaced)
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
            watch.recovered_at = None
        if watch.recovered_at is not None and now - watch.recovered_at >= stable_seconds:
            return watch
        if now >= timeout + stable_seconds:
            return watch
        time.sleep(SAMPLE_INTERVAL)
