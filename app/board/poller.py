"""Jobs without a channel layer (deploy_mode wsgi): workers that poll the database for queued jobs.

In split and asgi a job is sent to the "jobs" channel and `runworker jobs` takes it. In wsgi there is
no channel layer (README "Deploy modes"), so `manage.py pollworker jobs` asks the database instead:
every JOB_POLL_SECONDS while idle it puts jobs whose lease ran out back in the queue
(board.jobs.requeue_expired, the sweeper of the channel workers), then claims the oldest queued job
with the same lease (board.jobs.claim, inside board.jobs.run_job) and runs it. The claim is one
conditional UPDATE, so any number of pollers may race for a job: one wins, the others find it taken
and try the next. Progress is the saved steps, read by GET /api/jobs/<id>.
"""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from django.conf import settings

from .jobs import requeue_expired, run_job
from .models import Job

logger = logging.getLogger(__name__)

# Queued jobs one poll looks at: enough that a few workers racing for the oldest still find one each.
CANDIDATES = 10


def queued_job_ids(limit: int = CANDIDATES) -> list[int]:
    """Ids of the oldest queued jobs, at most `limit`, oldest first."""
    return list(Job.objects.filter(state=Job.QUEUED).order_by("id").values_list("id", flat=True)[:limit])


async def poll_once() -> int | None:
    """Requeue jobs whose lease ran out, then run the oldest queued job this worker can claim to its
    end. The id of the job it finished, or None when there was none to claim (or it lost the lease)."""
    for job_id in await database_sync_to_async(requeue_expired)():
        logger.info("job id=%s lease expired; queued again", job_id)
    for job_id in await database_sync_to_async(queued_job_ids)():
        claimed_and_finished = await run_job(job_id)
        if claimed_and_finished:
            return job_id
        # Not claimed (another worker was first) or lost: the next candidate, or the next poll.
    return None


async def poll_forever() -> None:
    """poll_once until stopped, waiting JOB_POLL_SECONDS after a poll that found nothing; a database
    error is logged and retried after the same wait instead of ending the process."""
    while True:
        try:
            finished = await poll_once()
        except Exception as exc:  # noqa: BLE001 (the database may be restarting: keep polling)
            logger.warning("polling for jobs failed (%s); next try in %s s", exc, settings.JOB_POLL_SECONDS)
            finished = None
        if finished is None:
            await asyncio.sleep(settings.JOB_POLL_SECONDS)
