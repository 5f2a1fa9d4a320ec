"""The app in deploy_mode wsgi (settings.DEPLOY_MODE, README "Deploy modes"): no channel layer is used,
messages are stored for polling clients, jobs wait in the database for `manage.py pollworker`, and the
health probe does not ask Redis. The channel layer stays configured in these tests, with a real Redis
behind it, so that "nothing was sent" is observed, not assumed."""

import asyncio
from datetime import timedelta

import pytest
from app_processes import wait_for
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.test import AsyncClient, override_settings
from django.utils import timezone

from board import services
from board.models import Job
from board.poller import poll_once

# Also run on PostgreSQL (make test-unit: UNIT_DATABASE=postgresql -m postgresql).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

wsgi_mode = override_settings(DEPLOY_MODE="wsgi")


@wsgi_mode
async def test_posted_message_is_stored_and_readable_after_but_not_broadcast():
    """Tests that in wsgi a post answers 201, GET ?after= returns it, and the board group gets nothing."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("board", channel)
    client = AsyncClient()
    response = await client.post("/api/messages", {"text": "polled, not pushed"}, content_type="application/json")
    assert response.status_code == 201
    message = response.json()
    listed = (await client.get("/api/messages", {"after": message["id"] - 1})).json()
    assert listed == {"messages": [message], "has_more": False}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), 1)


@wsgi_mode
def test_created_job_stays_queued_in_the_database_and_is_not_sent_to_a_channel(api, redis_server):
    """Tests that in wsgi POST /api/jobs stores a queued job and writes nothing to Redis (no jobs channel)."""
    response = api.post("/api/jobs", {"steps": 2})
    assert response.status_code == 202
    assert Job.objects.get(pk=response.json()["id"]).state == "queued"
    assert redis_server.keys("*") == []


@wsgi_mode
def test_health_probe_checks_the_database_only(client):
    """Tests that /healthz in wsgi is 200 without a channel_layer check (Redis is not part of the mode)."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


@wsgi_mode
async def test_a_queued_job_is_claimed_once_and_finished_by_two_polling_workers_racing():
    """Tests that two pollers racing for one queued job finish it once: one claim, every step saved."""
    job = await database_sync_to_async(services.create_job)(3)
    first, second = await asyncio.gather(poll_once(), poll_once())
    assert sorted([first, second], key=str) == [job.id, None]
    job = await database_sync_to_async(Job.objects.get)(pk=job.pk)
    assert (job.state, job.done, job.attempts) == ("finished", 3, 1)


@wsgi_mode
def test_pollers_take_over_a_job_whose_lease_ran_out():
    """Tests that a running job whose worker went silent is requeued by the next poll and finished there."""
    job = Job.objects.create(total=2, done=1, state="running", owner="gone", lease_until=timezone.now() - timedelta(1))
    assert async_to_sync(poll_once)() == job.id
    job.refresh_from_db()
    assert (job.state, job.done, job.owner != "gone") == ("finished", 2, True)


def test_two_pollworker_processes_finish_every_job_exactly_once(app_processes):
    """Tests real `manage.py pollworker jobs` processes in wsgi: 6 jobs, 2 workers, each job claimed once."""
    app = app_processes(
        "redis://nowhere.invalid:1/0", DEPLOY_MODE="wsgi", JOB_STEP_SECONDS="0.05", JOB_POLL_SECONDS="0.2"
    )
    jobs = [app.create_job(4) for _ in range(6)]
    workers = [app.start_worker("pollworker", "jobs") for _ in range(2)]
    wait_for(lambda: all(app.job(job)[0] == "finished" for job in jobs), 60, "every job finished")
    assert [app.job(job) for job in jobs] == [("finished", 4, 4, 1)] * 6
    assert all(worker.poll() is None for worker in workers)


def test_a_killed_pollworker_job_is_finished_by_the_other_after_its_lease(app_processes):
    """Tests that SIGKILL of a pollworker mid-job loses nothing: the other takes it over once its lease ends."""
    app = app_processes(
        "redis://nowhere.invalid:1/0",
        DEPLOY_MODE="wsgi",
        JOB_LEASE_SECONDS="2",
        JOB_STEP_SECONDS="0.2",
        JOB_POLL_SECONDS="0.2",
    )
    job = app.create_job(15)
    first = app.start_worker("pollworker", "jobs")
    wait_for(lambda: app.job(job)[1] >= 3, 20, "the first worker to run 3 steps")
    app.kill(first)
    assert app.job(job)[0] == "running"
    app.start_worker("pollworker", "jobs")
    wait_for(lambda: app.job(job)[0] == "finished", 30, "the job to finish")
    assert app.job(job) == ("finished", 15, 15, 2)


def test_pollworker_refuses_a_channel_it_does_not_know(app_processes):
    """Tests that `manage.py pollworker thumbnails` stops with an error naming the channel it knows."""
    app = app_processes("redis://nowhere.invalid:1/0", DEPLOY_MODE="wsgi")
    worker = app.start_worker("pollworker", "thumbnails")
    assert worker.wait(timeout=60) != 0
    assert "pollworker only knows 'jobs'" in worker.communicate(timeout=10)[1]


def test_settings_have_no_channel_layer_in_wsgi(app_processes):
    """Tests that with DEPLOY_MODE=wsgi the app's settings configure no channel layer at all."""
    app = app_processes(settings.REDIS_URL, DEPLOY_MODE="wsgi")
    script = "from django.conf import settings; print(settings.DEPLOY_MODE, settings.CHANNEL_LAYERS)"
    assert app.manage("shell", "-v", "0", "-c", script).split() == ["wsgi", "{}"]
