"""`manage.py pollworker jobs`: the board's worker in deploy_mode wsgi, which has no channel layer.

It polls the database for queued jobs and runs them with the lease of board.jobs (board.poller);
supervisor runs it in place of `runworker jobs` (deploy/defaults.yml worker_poll_command).
"""

import asyncio

from django.core.management.base import BaseCommand, CommandError

from board import services
from board.poller import poll_forever


class Command(BaseCommand):
    help = "Run queued jobs found by polling the database (deploy_mode wsgi: no channel layer)."

    def add_arguments(self, parser):
        parser.add_argument("channel", help=f"the work to do; only {services.JOBS_CHANNEL!r} is known")

    def handle(self, *args, channel: str, **options):
        if channel != services.JOBS_CHANNEL:
            raise CommandError(f"channel {channel!r}: pollworker only knows {services.JOBS_CHANNEL!r}")
        self.stdout.write(f"polling the database for {channel} jobs")
        self.stdout.flush()
        # Stopped by SIGTERM (supervisor): a job in flight is the lease's to recover, as with runworker.
        asyncio.run(poll_forever())
