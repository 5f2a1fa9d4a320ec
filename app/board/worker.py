"""The process behind `manage.py runworker`: Channels' Worker, plus what a job queue needs.

- One message at a time per process: the stock Worker keeps reading from Redis while a consumer is
  busy, piling messages up in memory where a crash loses them. Here a process takes the next
  message only after the last one is handled, so idle workers get the work.
- A sweeper that resends jobs whose lease ran out (see board.jobs).
- Redis outages are waited out with backoff instead of killing the process.
"""

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.worker import Worker
from django.conf import settings

from . import services
from .jobs import requeue_expired

logger = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 10


class LeasedJobWorker(Worker):
    async def handle(self):
        sweeper = asyncio.ensure_future(self.sweep_forever())
        try:
            await super().handle()
        finally:
            sweeper.cancel()

    async def listener(self, channel):
        slot = asyncio.Semaphore(1)
        delay = 0.5
        while True:
            await slot.acquire()
            try:
                message = await self.channel_layer.receive(channel)
            except Exception as exc:
                slot.release()
                logger.warning("receiving from channel %s failed (%s); retrying in %.1f s", channel, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = 0.5
            if not message.get("type"):
                slot.release()
                logger.error("dropped a message with no type on channel %s", channel)
                continue
            scope = {"type": "channel", "channel": channel, "release": slot.release}
            await self.get_or_create_application_instance(channel, scope).put(message)

    async def sweep_forever(self):
        while True:
            await asyncio.sleep(settings.JOB_SWEEP_SECONDS)
            try:
                for job_id in await database_sync_to_async(requeue_expired)():
                    logger.info("job id=%s lease expired; sending it to the workers again", job_id)
                    await self.channel_layer.send(services.JOBS_CHANNEL, {"type": "job.run", "id": job_id})
            except Exception as exc:
                logger.warning("job sweep failed (%s); next try in %s s", exc, settings.JOB_SWEEP_SECONDS)
