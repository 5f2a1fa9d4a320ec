"""The app run as separate `manage.py` processes on a scratch database, as the deployed programs run.

The database is a SQLite file in a temp dir, or, when the session runs on PostgreSQL
(UNIT_DATABASE=postgresql) or a test passes database_url, a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

APP_DIR = Path(__file__).resolve().parents[2] / "app"


def wait_for(predicate, timeout: float, what: str):
    """Return predicate()'s first truthy value, polling; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class AppProcesses:
    def __init__(self, data_dir: Path, redis_url: str, database_url: str | None = None, **env: str):
        self.db = data_dir / "db.sqlite3"
        self.database_url = database_url
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
            "APP_DATA_DIR": str(data_dir),
            "REDIS_URL": redis_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            **({"DATABASE_URL": database_url} if database_url else {}),
            **env,
        }
        self.workers: list[subprocess.Popen] = []
        self.manage("migrate", "--noinput", "-v0")

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=APP_DIR, env=self.env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def create_job(self, steps: int) -> int:
        script = f"from board.services import create_job; print(create_job({steps}).id)"
        return int(self.manage("shell", "-v", "0", "-c", script).split()[-1])

    def job(self, job_id: int) -> tuple[str, int, int, int]:
        """(state, done, total, attempts), read straight from the database."""
        if self.database_url:
            with psycopg.connect(self.database_url) as conn:
                query = "SELECT state, done, total, attempts FROM board_job WHERE id=%s"
                return conn.execute(query, (job_id,)).fetchone()
        with sqlite3.connect(self.db, timeout=20) as conn:
            return conn.execute("SELECT state, done, total, attempts FROM board_job WHERE id=?", (job_id,)).fetchone()

    def start_worker(self, *command: str) -> subprocess.Popen:
        """Starts `manage.py <command>` (default: runworker jobs) in a process group of its own."""
        worker = subprocess.Popen(
            [sys.executable, "manage.py", *(command or ("runworker", "jobs"))],
            cwd=APP_DIR,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.workers.append(worker)
        return worker

    @staticmethod
    def kill(process: subprocess.Popen) -> str:
        """SIGKILL the process and its group; return what it wrote to stderr."""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        return process.communicate(timeout=10)[1]

    def close(self) -> None:
        for worker in self.workers:
            self.kill(worker)


@pytest.fixture
def app_processes(tmp_path, request):
    """Factory for AppProcesses on tmp_path (or a fresh PostgreSQL database when the session runs on
    PostgreSQL); every worker it started is killed afterwards."""
    made: list[AppProcesses] = []

    def make(redis_url: str, database_url: str | None = None, **env: str) -> AppProcesses:
        if database_url is None and settings.UNIT_DATABASE == "postgresql":
            database_url = request.getfixturevalue("postgresql_database")
        made.append(AppProcesses(tmp_path, redis_url, database_url, **env))
        return made[-1]

    yield make
    for processes in made:
        processes.close()
