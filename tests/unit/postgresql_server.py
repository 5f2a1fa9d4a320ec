"""A throwaway PostgreSQL cluster for the unit tier: Debian's server binaries, initdb'd in a temp dir.

Like the redis-server fixture (conftest.py), it is the real server, not a mock: the tests that
matter run against it (ordering, concurrent migrate, and with UNIT_DATABASE=postgresql the app's
database tests). PostgreSQL refuses to run as root, and CI runs as root: the cluster then runs as
the `postgres` system user of Debian's package (or `nobody`), in a directory it owns.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

# The superuser the fixture uses to create roles and databases; the app connects as APP_ROLE.
SUPERUSER = "postgres"
APP_ROLE = "channels"


def server_binaries() -> Path:
    """Directory of initdb and pg_ctl: Debian keeps them out of PATH, under /usr/lib/postgresql/<major>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    pytest.fail("PostgreSQL's server is not installed (apt-get install postgresql)")


def run_as() -> str | None:
    """The user to run the server as: None when not root, else Debian's `postgres` (or `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.fail("running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL")


class PostgresServer:
    """A running cluster on 127.0.0.1:port; `create_database()` gives each test a fresh database."""

    def __init__(self, port: int, password: str):
        self.port = port
        self.password = password
        self.user = run_as()
        self.bin = server_binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="unit-postgresql-"))
        self.data = self.dir / "data"
        self._names = itertools.count(1)
        if self.user:
            os.chown(self.dir, pwd.getpwnam(self.user).pw_uid, pwd.getpwnam(self.user).pw_gid)

    def run(self, *argv: str) -> None:
        result = subprocess.run(argv, user=self.user, capture_output=True, text=True, cwd=self.dir)
        if result.returncode != 0:
            pytest.fail(f"{' '.join(argv[:2])} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        pwfile = self.dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            os.chown(pwfile, pwd.getpwnam(self.user).pw_uid, -1)
        self.run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        # Throwaway data: no fsync. The socket goes to our own directory, not /run/postgresql.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c full_page_writes=off"
        self.run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-o", options, "start"
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with self.admin() as conn:
                    # Utility statements take no bound parameters: the password is quoted as a literal.
                    conn.execute(
                        sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                            sql.Identifier(APP_ROLE), sql.Literal(self.password)
                        )
                    )
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server if it runs (also after a failed start) and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def admin(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(database, SUPERUSER), autocommit=True)

    def url(self, database: str, user: str = APP_ROLE) -> str:
        return f"postgres://{user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "scratch") -> str:
        """Create an empty database owned by the app's role; return its DATABASE_URL."""
        name = f"{prefix}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {APP_ROLE}")
        return self.url(name)

    def log(self) -> str:
        return (self.dir / "log").read_text(errors="replace")
