"""`manage.py migrate`: Django's command, run under a lock so two hosts or containers never migrate at once.

Every deploy runs it (the Ansible app role on each app host, the compose app image's entrypoint in
each replica), and Ansible's run_once cannot stop two playbooks, or `--scale app=3` containers
starting together, from migrating the same database at the same moment, where both try to apply
the same migration and one fails half way (issue 11, item 1). This command replaces Django's
(board comes first in INSTALLED_APPS) so that no caller can forget the lock: the first run applies
the migrations, the others wait, then find nothing to apply.

The lock: on PostgreSQL a session advisory lock (`pg_advisory_lock`) on a connection of its own,
released when the command ends or its process dies (the server drops a dead client's session);
on SQLite an flock on a file beside the database, released the same way. An in-memory SQLite
database is private to its process and takes no lock.
"""

import fcntl
import time
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import CommandError
from django.core.management.commands.migrate import Command as DjangoMigrateCommand
from django.db import OperationalError, connections

# Key of the advisory lock (b"migrate1" as a 64-bit integer); board.ordering.MESSAGE_ID_LOCK is the other one.
MIGRATE_LOCK = 0x6D69_6772_6174_6531


class Command(DjangoMigrateCommand):
    help = DjangoMigrateCommand.help + " Runs under a lock: concurrent runs wait for each other."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--wait-for-database",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Retry connecting to an unreachable database for up to this long (a database "
            "container or host still starting); 0: fail at once.",
        )

    def handle(self, *args, **options):
        with self.migration_lock(options["database"], options["wait_for_database"]):
            return super().handle(*args, **options)

    @contextmanager
    def migration_lock(self, alias: str, wait_for_database: float):
        """Hold the database's migration lock (blocking until it is free) for the with-block."""
        connection = connections.create_connection(alias)
        try:
            if connection.vendor == "postgresql":
                self.connect(connection, wait_for_database)
                with self.advisory_lock(connection):
                    yield
            elif connection.vendor == "sqlite" and not connection.is_in_memory_db():
                with self.file_lock(Path(f"{connection.settings_dict['NAME']}.migrate-lock")):
                    yield
            else:
                yield
        finally:
            connection.close()

    def connect(self, connection, wait_for_database: float) -> None:
        deadline = time.monotonic() + wait_for_database
        while True:
            try:
                connection.ensure_connection()
                return
            except OperationalError as exc:
                if time.monotonic() >= deadline:
                    raise CommandError(f"cannot connect to the database: {exc}".strip()) from exc
                self.stderr.write(f"database not reachable yet ({str(exc).strip()}); retrying")
                time.sleep(1)

    @contextmanager
    def advisory_lock(self, connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK])
            if not cursor.fetchone()[0]:
                self.stdout.write("Another migrate holds the migration lock; waiting for it.")
                cursor.execute("SELECT pg_advisory_lock(%s)", [MIGRATE_LOCK])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK])

    @contextmanager
    def file_lock(self, path: Path):
        with open(path, "a") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.stdout.write("Another migrate holds the migration lock; waiting for it.")
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            yield
