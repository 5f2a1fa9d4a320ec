"""Running jobs in the workers, so that each job finishes exactly once even when a worker dies.

Channel delivery is at-most-once, so the database is the source of truth: a worker claims a job by
taking its lease (one conditional UPDATE), renews the lease on every step, and finishes it only
while it still holds it. A job whose lease ran out (its worker died, or its message was lost) is
sent to the workers again by the sweeper, and the next claim resumes from the last saved step.
In deploy_mode wsgi there is no channel to send on: `manage.py pollworker` (board.poller) asks the
database for queued jobs and runs them with the same claim and lease.
"""

import asyncio
import logging
import uuid
from datetime import timedelta

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from . import services
from .models import Job

logger = logging.getLogger(__name__)


def lease_end():
    return timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)


def claim(job_id: int, owner: str) -> Job | None:
    """Take the job's lease if it is queued or its lease has run out; None if another run holds it."""
    now = timezone.now()
    claimable = Q(state=Job.QUEUED) | Q(state=Job.RUNNING, lease_until__lt=now)
    taken = Job.objects.filter(claimable, pk=job_id).update(
        state=Job.RUNNING, owner=owner, lease_until=lease_end(), attempts=F("attempts") + 1
    )
    return Job.objects.get(pk=job_id) if taken else None


def save_step(job_id: int, owner: str, done: int) -> bool:
    """Record a finished step and renew the lease; False if this run no longer holds the job."""
    return bool(
        Job.objects.filter(pk=job_id, owner=owner, state=Job.RUNNING).update(done=done, lease_until=lease_end())
    )


def finish(job_id: int, owner: str) -> bool:
    """Mark the job finished; only the run that holds the lease can, so it happens once."""
    return bool(
        Job.objects.filter(pk=job_id, owner=owner, state=Job.RUNNING).update(
            state=Job.FINISHED, finished=timezone.now(), lease_until=timezone.now()
        )
    )


def requeue_expired() -> list[int]:
    """Put unfinished jobs whose lease ran out back in the queue; return their ids to resend.

    The new lease means each stuck job is resent once per lease, not on every sweep of every
    worker; a run that still thinks it holds the job finds it requeued and stops.
    """
    now = timezone.now()
    stuck = Job.objects.filter(state__in=[Job.QUEUED, Job.RUNNING], lease_until__lt=now)
    ids = list(stuck.values_list("id", flat=True)[:100])
    if ids:
        stuck.filter(pk__in=ids).update(state=Job.QUEUED, owner="", lease_until=lease_end())
    return ids


async def send_progress(job: Job | dict) -> None:
    """Send a job's progress to its group; nothing in deploy_mode wsgi, where watchers poll
    GET /api/jobs/<id> (the saved steps) instead."""
    if not services.uses_channel_layer():
        return
    data = job if isinstance(job, dict) else job.as_json()
    try:
        await get_channel_layer().group_send(services.job_group(data["id"]), {"type": "job.progress", **data})
    except Exception as exc:  # progress is saved; watchers catch up when they reconnect
        logger.warning("progress of job id=%s not sent: %s", data["id"], exc)


async def run_job(job_id: int) -> bool:
    """Run a job's remaining steps if this worker can claim it. True if this run finished it."""
    owner = uuid.uuid4().hex
    job = await database_sync_to_async(claim)(job_id, owner)
    if job is None:
        logger.info("job id=%s not claimed: finished or held by another worker", job_id)
        return False
    logger.info("job id=%s claimed (attempt %s) at step %s/%s", job_id, job.attempts, job.done, job.total)
    await send_progress(job)
    for step in range(job.done + 1, job.total + 1):
        await asyncio.sleep(settings.JOB_STEP_SECONDS)
        if not await database_sync_to_async(save_step)(job_id, owner, step):
            logger.warning("job id=%s lost its lease at step %s; another worker has it", job_id, step)
            return False
        await send_progress({"id": job_id, "state": Job.RUNNING, "done": step, "total": job.total})
    if not await database_sync_to_async(finish)(job_id, owner):
        logger.warning("job id=%s lost its lease before finishing", job_id)
        return False
    logger.info("job id=%s finished", job_id)
    await send_progress({"id": job_id, "state": Job.FINISHED, "done": job.total, "total": job.total})
    return True


class JobRunnerConsumer(AsyncConsumer):
    """Consumes the "jobs" channel in `manage.py runworker jobs`."""

    # Its own channel name comes from the queue layer: that costs no Redis call (a pub/sub channel
    # would subscribe), and progress goes out through the default layer in send_progress.
    channel_layer_alias = services.JOBS_LAYER

    async def dispatch(self, message):
        try:
            await super().dispatch(message)
        except Exception:
            # A crashed consumer would stop the whole worker process; the job's lease expires
            # and another run picks it up instead.
            logger.exception("handling %r failed in this worker", message)
        finally:
            # Let the worker take the next message (see board.worker.LeasedJobWorker).
            release = self.scope.get("release")
            if release is not None:
                release()

    async def job_run(self, message):
        await run_job(int(message["id"]))
