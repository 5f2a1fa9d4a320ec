"""Tools the faults suite uses on a target's app host beyond the harness' own faults
(tests/harness/target.py): SQLite's write lock held from outside the app, and a stray process
holding a program's port."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
import threading
import time

from harness.target import Target
from harness.waiting import wait_until

DATABASE = "/var/lib/channels-stack/db.sqlite3"  # app_data_dir of deploy/defaults.yml
# The lock holder lets go by itself after this long, whatever happens to the test.
LOCK_LIMIT_SECONDS = 120
# The holder's script: it says "held" only once BEGIN IMMEDIATE has returned, and lets go when the
# test writes a line to its stdin or closes it (or the test, and so `docker exec`, dies).
LOCK_SCRIPT = """
import signal, sqlite3, sys
signal.alarm({limit})
connection = sqlite3.connect({database!r}, isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
print("released", flush=True)
"""


class DatabaseLock:
    """Holds SQLite's write lock on the app host from `with` until release(): a request that writes
    meanwhile waits inside its Gunicorn worker (busy timeout 20 s), in flight for as long as the
    test chooses (a long write transaction elsewhere: a migration, a bulk import).

    The holder itself says when it holds the lock, on its stdout. Issue 15: the lock used to be
    inferred from a probe failing with "database is locked", which the poster's own writes also
    caused, so the probe could pass before `docker exec` had even started the holder, and the
    request meant to be in flight was answered at once.
    Raises TimedOut when the holder does not hold the lock within `timeout` seconds.
    """

    def __init__(self, stack: Target, timeout: float = 30):
        self.stack = stack
        self.timeout = timeout
        self.held_at: float | None = None
        self.released_at: float | None = None
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []

    def __enter__(self) -> DatabaseLock:
        script = LOCK_SCRIPT.format(limit=LOCK_LIMIT_SECONDS, database=DATABASE)
        command = f"{self.stack.as_app_user}{self.stack.python} -c {shlex.quote(script)}"
        self.process = subprocess.Popen(
            [*self.stack.exec_prefix(), "sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        reader = threading.Thread(target=self._read, name="database-lock-output", daemon=True)
        reader.start()
        try:
            wait_until(lambda: "held" in self.output, self.timeout, "the lock holder says it holds the lock", 0.05)
        except BaseException:
            self.release()
            raise
        self.held_at = time.monotonic()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.strip())

    def release(self) -> None:
        """Let go of the lock (idempotent); waits until the holder has rolled back and exited."""
        if self.process is None or self.released_at is not None:
            return
        # From here on a waiting request may go on: stamped before the holder is told.
        self.released_at = time.monotonic()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __exit__(self, *exc_info) -> None:
        self.release()


class PortBlocker:
    """A stray process of the app user listening on a program's port, so the program cannot bind
    it and dies at every start (a crash loop with a cause outside the program). Exits by itself
    after `seconds` at the latest."""

    def __init__(self, stack: Target, port: int, seconds: int = 180):
        self.stack = stack
        self.port = port
        self.seconds = seconds
        self.pid: int | None = None

    def __enter__(self) -> PortBlocker:
        script = (
            "import socket, time; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(({self.stack.bind_host!r}, {self.port})); s.listen(); time.sleep({self.seconds})"
        )
        inner = f"nohup {self.stack.python} -c {shlex.quote(script)} >/dev/null 2>&1 & echo $!"
        result = self.stack.run_as_app_user(f"sh -c {shlex.quote(inner)}")
        assert result.rc == 0, result.stderr
        self.pid = int(result.stdout.strip())
        wait_until(self.listening, 10, f"blocker listening on {self.port}", 0.2)
        return self

    def listening(self) -> bool:
        return self.stack.app_host().socket(f"tcp://{self.stack.bind_host}:{self.port}").is_listening

    def free(self) -> None:
        if self.pid is not None:
            self.stack.app_host().run(f"kill {self.pid}")
            self.pid = None

    def __exit__(self, *exc_info) -> None:
        self.free()
