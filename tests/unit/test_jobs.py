"""Background jobs: claiming, leases, progress, and a real `manage.py runworker jobs` process."""

import asyncio
from datetime import timedelta

import pytest
from app_processes import wait_for
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from board.jobs import requeue_expired, run_job
from board.models import Job

# Also run on PostgreSQL (make test-unit: UNIT_DATABASE=postgresql -m postgresql).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


@database_sync_to_async
def make_job(**fields) -> Job:
    fields.setdefault("lease_until", timezone.now() + timedelta(seconds=30))
    return Job.objects.create(**fields)


@database_sync_to_async
def reload(job: Job) -> Job:
    return Job.objects.get(pk=job.pk)


async def test_worker_runs_a_job_to_finished_and_reports_each_step():
    """Tests that running a queued job saves every step and sends progress up to `finished`."""
    job = await make_job(total=3)
    layer = get_channel_layer()
    watcher = await layer.new_channel()
    await layer.group_add(f"job-{job.id}", watcher)
    assert await run_job(job.id) is True
    events = [await asyncio.wait_for(layer.receive(watcher), 5) for _ in range(5)]
    assert [(e["state"], e["done"]) for e in events] == [
        ("running", 0),
        ("running", 1),
        ("running", 2),
        ("running", 3),
        ("finished", 3),
    ]
    job = await reload(job)
    assert (job.state, job.done, job.attempts) == ("finished", 3, 1)


async def test_a_job_claimed_by_two_workers_at_once_finishes_exactly_once():
    """Tests that only one of two concurrent runs of the same job gets to finish it."""
    job = await make_job(total=4)
    results = await asyncio.gather(run_job(job.id), run_job(job.id))
    assert sorted(results) == [False, True]
    assert (await reload(job)).attempts == 1


async def test_a_finished_job_is_not_run_again():
    """Tests that a message for a finished job (a duplicate delivery) changes nothing."""
    job = await make_job(total=2, done=2, state="finished")
    assert await run_job(job.id) is False
    assert (await reload(job)).attempts == 0


async def test_a_running_job_whose_lease_expired_is_resent_and_resumed_from_its_last_step():
    """Tests that a job left running by a dead worker is swept up and finished from where it stopped."""
    past = timezone.now() - timedelta(seconds=1)
    job = await make_job(total=5, done=3, state="running", owner="dead-worker", lease_until=past, attempts=1)
    live = await make_job(total=5, state="running", owner="alive")
    assert await database_sync_to_async(requeue_expired)() == [job.id]
    assert await run_job(job.id) is True
    job = await reload(job)
    assert (job.state, job.done, job.attempts) == ("finished", 5, 2)
    assert (await reload(live)).state == "running"


async def test_a_running_job_with_a_live_lease_is_not_taken_over():
    """Tests that a job whose worker is still renewing its lease is left to that worker."""
    job = await make_job(total=5, done=1, state="running", owner="alive")
    assert await database_sync_to_async(requeue_expired)() == []
    assert await run_job(job.id) is False


def test_a_job_survives_its_runworker_process_being_killed_mid_way(app_processes):
    """Tests that SIGKILL of `runworker jobs` mid-job loses nothing: another worker finishes it once."""
    app = app_processes(settings.REDIS_URL, JOB_LEASE_SECONDS="2", JOB_STEP_SECONDS="0.2", JOB_SWEEP_SECONDS="0.5")
    job_id = app.create_job(15)
    first = app.start_worker()
    wait_for(lambda: app.job(job_id)[1] >= 3, 20, "the first worker to run 3 steps")
    app.kill(first)
    state, done, _, _ = app.job(job_id)
    assert state == "running" and done < 15
    app.start_worker()
    wait_for(lambda: app.job(job_id)[0] == "finished", 30, "the job to finish")
    assert app.job(job_id) == ("finished", 15, 15, 2)
