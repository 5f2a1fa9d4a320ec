"""What the figures were measured on: CPU model, cores, memory, kernel, versions, load at start."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import psutil
import websockets

ROOT = Path(__file__).resolve().parent.parent
PINNED = ("django", "channels", "channels-redis", "daphne", "gunicorn", "twisted", "redis")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pinned_versions(lock: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """Versions of the stack's packages from the lock file the images install."""
    found = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ \\]+)", line)
        if match and match.group(1).lower() in PINNED:
            found[match.group(1).lower()] = match.group(2)
    return found


def _command(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe() -> dict:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "websockets": websockets.__version__,
        "stack": pinned_versions(),
        "docker": _command(["docker", "version", "--format", "{{.Server.Version}}"]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "commit": _command(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }
