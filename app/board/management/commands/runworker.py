"""`manage.py runworker CHANNEL...`: Channels' command, run with board.worker.LeasedJobWorker."""

from channels.management.commands import runworker

from board.worker import LeasedJobWorker


class Command(runworker.Command):
    worker_class = LeasedJobWorker
