"""CPU and memory of named processes, read from the host with psutil.

A container's processes are ordinary host processes: `container_processes` walks the process tree
under each container's init PID (``docker inspect``) and names each process by its service and
program (``app/daphne:8100``, ``nginx/worker``, ``redis/redis-server``). Reading another user's
/proc entries needs root, which `make bench` has where Docker runs.

`Sampler` polls resident memory (RSS) every `interval` seconds in a thread, keeping each process's
peak; `cpu()` and `rss()` read the current CPU seconds (user + system) and RSS of each. Units: CPU
in seconds, memory in KiB. A process that has exited reads as its last known values.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Named:
    name: str
    pid: int


def program_name(proc: psutil.Process) -> str:
    """A short name for a stack process: its program and, for Daphne, its port."""
    try:
        cmdline = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "?"
    if not cmdline:
        return proc.name()
    joined = " ".join(cmdline)
    if cmdline[0].endswith("/tini"):
        return "tini"
    if "daphne" in joined and "--port" in cmdline:
        return f"daphne:{cmdline[cmdline.index('--port') + 1]}"
    if "gunicorn" in joined:
        parent = proc.parent()
        is_worker = parent is not None and "gunicorn" in " ".join(parent.cmdline())
        return "gunicorn-worker" if is_worker else "gunicorn-master"
    if "runworker" in joined:
        return "runworker"
    if "supervisord" in joined:
        return "supervisord"
    if "fatal_retry" in joined:
        return "fatal-retry"
    if joined.startswith("nginx: "):
        return "nginx-" + joined.removeprefix("nginx: ").split()[0]
    return proc.name()


def container_pids(compose: list[str], project: str) -> dict[str, int]:
    """{service: init PID on the host} of a compose project's running containers."""
    ids = subprocess.run([*compose, "-p", project, "ps", "-q"], check=True, capture_output=True, text=True).stdout
    pids = {}
    for container in ids.split():
        info = json.loads(
            subprocess.run(["docker", "inspect", container], check=True, capture_output=True, text=True).stdout
        )[0]
        service = info["Config"]["Labels"].get("com.docker.compose.service", info["Name"].lstrip("/"))
        pids[service] = info["State"]["Pid"]
    return pids


def tree(root_pid: int, prefix: str) -> list[Named]:
    """`root_pid` and its descendants, named prefix/program (numbered when a name repeats)."""
    root = psutil.Process(root_pid)
    procs = [root, *root.children(recursive=True)]
    names = [f"{prefix}/{program_name(p)}" for p in procs]
    counts, seen = Counter(names), Counter()
    named = []
    for proc, name in zip(procs, names, strict=True):
        if counts[name] > 1:
            seen[name] += 1
            name = f"{name}#{seen[name]}"
        named.append(Named(name, proc.pid))
    return named


def container_processes(compose: list[str], project: str) -> list[Named]:
    """Every process of every container of the project (see the module docstring)."""
    found: list[Named] = []
    for service, pid in sorted(container_pids(compose, project).items()):
        found.extend(tree(pid, service))
    return found


class Sampler:
    """Peak RSS of `procs` sampled in a thread; current CPU and RSS on demand (module docstring)."""

    def __init__(self, procs: list[Named], interval: float = 0.2):
        self.procs = procs
        self.interval = interval
        self._handles = {}
        for named in procs:
            try:
                self._handles[named.name] = psutil.Process(named.pid)
            except psutil.NoSuchProcess:
                continue
        self._last_cpu = {name: 0.0 for name in self._handles}
        self._last_rss = {name: 0 for name in self._handles}
        self.peak_rss = {name: 0 for name in self._handles}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def _read(self) -> None:
        for name, proc in self._handles.items():
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss // 1024
            except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                continue
            self._last_cpu[name] = times.user + times.system
            self._last_rss[name] = rss
            self.peak_rss[name] = max(self.peak_rss[name], rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def start(self) -> Sampler:
        self._read()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._read()

    def cpu(self) -> dict[str, float]:
        """{name: CPU seconds so far}."""
        self._read()
        return dict(self._last_cpu)

    def rss(self) -> dict[str, int]:
        """{name: RSS in KiB now}."""
        self._read()
        return dict(self._last_rss)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two `Sampler.cpu()` readings."""
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def wait_quiet(sampler: Sampler, threshold: float = 0.25, seconds: float = 1.0, timeout: float = 20.0) -> float:
    """Wait until the processes together use under `threshold` cores over `seconds`; return the wait.

    Used between runs so the next one does not start while the last is still being cleaned up.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        before = sampler.cpu()
        time.sleep(seconds)
        used = sum(cpu_between(before, sampler.cpu()).values())
        if used < threshold * seconds:
            break
    return round(time.monotonic() - started, 1)
