"""`manage.py runworker CHANNEL...`: Channels' command, run with board.worker.LeasedJobWorker on the
job queue's channel layer (services.JOBS_LAYER) unless --layer says otherwise."""

from channels.management.commands import runworker

from board import services
from board.worker import LeasedJobWorker


class Command(runworker.Command):
    worker_class = LeasedJobWorker

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(layer=services.JOBS_LAYER)
