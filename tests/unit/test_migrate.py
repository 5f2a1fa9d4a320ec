"""`manage.py migrate` under its lock (board/management/commands/migrate.py): concurrent deploys
migrate one at a time, on PostgreSQL and on SQLite, with real `manage.py` processes."""

import fcntl
import os
import sqlite3
import subprocess
import sys
import time

import psycopg
from app_processes import APP_DIR, wait_for
from django.conf import settings

from board.management.commands.migrate import MIGRATE_LOCK


def app_env(**env: str) -> dict:
    """The deployed programs' environment: production settings, the test Redis, the given database."""
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {**base, "DJANGO_SETTINGS_MODULE": "config.settings", "REDIS_URL": settings.REDIS_URL, **env}


def start_migrate(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "manage.py", "migrate", "--noinput"],
        cwd=APP_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(runs: list[subprocess.Popen]) -> list[str]:
    """Wait for each run; assert it succeeded; return their outputs."""
    results = [run.communicate(timeout=90) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [stderr for _, stderr in results]
    return [stdout for stdout, _ in results]


def assert_applied_once(outputs: list[str], recorded: list[tuple]) -> None:
    """One run applied the migrations, the other found none to apply; each is recorded once."""
    assert recorded, "no migration recorded"
    assert [row for row in recorded if row[2] != 1] == [], "a migration was recorded more than once"
    applied = [out for out in outputs if "Applying board.0001_initial... OK" in out]
    idle = [out for out in outputs if "No migrations to apply." in out]
    assert (len(applied), len(idle)) == (1, 1), outputs


def test_two_concurrent_migrates_on_one_fresh_postgresql_database_both_succeed_and_apply_once(postgresql_server):
    """Tests that two `migrate` runs that start together on an empty PostgreSQL database (held at
    the lock until both wait on it) both succeed, and every migration is applied exactly once."""
    database_url = postgresql_server.create_database("migrate")
    env = app_env(DATABASE_URL=database_url)
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK])
        runs = [start_migrate(env), start_migrate(env)]
        waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        wait_for(lambda: holder.execute(waiting).fetchone()[0] == 2, 60, "both runs to wait for the lock")
        holder.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK])
    outputs = finish(runs)
    with psycopg.connect(database_url) as conn:
        recorded = conn.execute("SELECT app, name, count(*) FROM django_migrations GROUP BY app, name").fetchall()
    assert_applied_once(outputs, recorded)
    assert all("Another migrate holds the migration lock; waiting for it." in out for out in outputs)


def test_two_concurrent_migrates_on_one_fresh_sqlite_file_both_succeed_and_apply_once(tmp_path):
    """Tests that two `migrate` runs that start together on a new SQLite file both succeed, and
    every migration is applied exactly once (the lock is an flock beside the database)."""
    env = app_env(APP_DATA_DIR=str(tmp_path))
    with open(tmp_path / "db.sqlite3.migrate-lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        runs = [start_migrate(env), start_migrate(env)]
        wait_for(
            lambda: all("waiting for it" in (run.stdout.readline() or "") for run in runs), 60, "both runs to wait"
        )
        fcntl.flock(holder, fcntl.LOCK_UN)
    outputs = finish(runs)
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        recorded = conn.execute("SELECT app, name, count(*) FROM django_migrations GROUP BY app, name").fetchall()
    assert_applied_once(outputs, recorded)


def test_migrate_retries_an_unreachable_database_for_the_time_given_then_fails_clearly():
    """Tests that migrate with --wait-for-database retries a database nobody listens for, says so,
    and then fails with one clear error line instead of a traceback."""
    # Port 1 on loopback: nothing listens there, so each attempt is refused at once.
    env = app_env(DATABASE_URL="postgres://channels:unused@127.0.0.1:1/nowhere")
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "--wait-for-database", "1.5"],
        cwd=APP_DIR, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert "database not reachable yet" in run.stderr
    assert "CommandError: cannot connect to the database" in run.stderr
    assert "Traceback" not in run.stderr
    assert time.monotonic() - started >= 1.5
