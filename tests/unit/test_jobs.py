"""Background jobs: claiming, leases, progress, and a real `manage.py runworker jobs` process."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from board.jobs import requeue_expired, run_job
from board.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

APP_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "app")


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


def start_worker(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "runworker", "jobs"],
        cwd=APP_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def read_job(db: str, job_id: int) -> tuple:
    with sqlite3.connect(db, timeout=20) as conn:
        return conn.execute("SELECT state, done, total, attempts FROM board_job WHERE id=?", (job_id,)).fetchone()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def test_a_job_survives_its_runworker_process_being_killed_mid_way(tmp_path):
    """Tests that SIGKILL of `runworker jobs` mid-job loses nothing: another worker finishes it once."""
    env = {
        **os.environ,
        "APP_DATA_DIR": str(tmp_path),
        "JOB_LEASE_SECONDS": "2",
        "JOB_STEP_SECONDS": "0.2",
        "JOB_SWEEP_SECONDS": "0.5",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], cwd=APP_DIR, env=env, check=True)
    created = subprocess.run(
        [*manage, "shell", "-v", "0", "-c", "from board.services import create_job; print(create_job(15).id)"],
        cwd=APP_DIR,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    job_id = int(created.stdout.strip().splitlines()[-1])
    db = str(tmp_path / "db.sqlite3")

    first = start_worker(env)
    try:
        wait_for(lambda: read_job(db, job_id)[1] >= 3, 20, "the first worker to run 3 steps")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        killed_at = read_job(db, job_id)
        assert killed_at[0] == "running" and killed_at[1] < 15
        second = start_worker(env)
        try:
            state = wait_for(lambda: (r := read_job(db, job_id))[0] == "finished" and r, 30, "the job to finish")
        finally:
            second.kill()
            second.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert state == ("finished", 15, 15, 2)
