"""Each deploy mode on each target (README "Deploy modes"): the programs the mode runs and no others,
Nginx's routing, the page, posting and reading back, live updates the mode's way (WebSocket where
Daphne runs, short polling in wsgi), long polling where Daphne runs (404 in wsgi), and a job run to
the end by the mode's workers. test_modes_browser.py: the page itself in Chromium.

`make test-modes` runs this once per mode (asgi, wsgi) against fresh stacks; split is the e2e tiers'
(`make test-compose`, `make test-vm`), and these tests hold for it too (`--target compose` on `make up`).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from harness.programs import processes
from harness.target import run
from harness.waiting import wait_until
from websockets.exceptions import InvalidStatus

# The page's short polling period in wsgi (issue 14: every 2 s).
POLL_SECONDS = 2
JOB_SECONDS = 60


def test_the_mode_runs_its_programs_and_no_others(target):
    """Tests that supervisor runs exactly the mode's programs (plus the fatal-retry listener), all RUNNING."""
    status = target.supervisor().status()
    assert sorted(status) == sorted([*target.programs, "fatal-retry"]), status
    assert {state.state for state in status.values()} == {"RUNNING"}, status
    names = {name.split(":")[0] for name in status}
    assert ("gunicorn" in names) == (target.mode != "asgi")
    assert ("daphne" in names) == (target.mode != "wsgi")


def test_no_server_of_another_mode_runs_on_the_app_host(target):
    """Tests that no Gunicorn process runs in asgi and no Daphne process in wsgi (not just no program)."""
    commands = [p.args for p in processes(target.app_host())]
    gunicorn = [c for c in commands if "/bin/gunicorn" in c]
    daphne = [c for c in commands if "/bin/daphne" in c]
    assert bool(gunicorn) == (target.mode != "asgi"), gunicorn
    assert bool(daphne) == (target.mode != "wsgi"), daphne


def test_health_probes_of_the_mode_answer_ok_from_the_interface_the_mode_says(site, target):
    """Tests /healthz's "interface" (Daphne's "asgi" in asgi, Gunicorn's "wsgi" otherwise) and /ws/healthz."""
    assert target.unhealthy_probes() == {}
    health = site.get(target.variables["app_health_path"]).json()
    assert health["interface"] == target.http_interface
    ws_health = site.get(target.variables["app_ws_health_path"])
    if target.mode == "wsgi":
        assert ws_health.status_code == 404
        assert "channel_layer" not in health["checks"], health
    else:
        assert ws_health.status_code == 200 and ws_health.json()["interface"] == "asgi"
        assert health["checks"]["channel_layer"] == "ok", health


def test_websocket_is_refused_with_404_in_wsgi_and_served_elsewhere(site, target):
    """Tests that /ws/ has no server in wsgi (Nginx answers 404 to a handshake) and opens a socket otherwise."""
    if target.mode == "wsgi":
        assert site.get("/ws/board/").status_code == 404
        with pytest.raises(InvalidStatus) as refused:
            site.websocket("/ws/board/")
        assert refused.value.response.status_code == 404
    else:
        with site.websocket("/ws/board/") as socket:
            assert _until_ready(socket)["type"] == "ready"


def test_the_page_loads_with_the_board(site):
    """Tests that GET / answers the board page (200, HTML with the post form) and sets the CSRF cookie."""
    response = site.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["Content-Type"]
    assert '<ol id="messages"' in response.text and '<form id="post-form"' in response.text
    assert site.csrf_token


def test_a_posted_message_is_readable_after_its_predecessor(site):
    """Tests that POST /api/messages answers 201 and GET /api/messages?after=<id - 1> returns it."""
    message = site.post_message(f"modes {uuid.uuid4().hex[:8]}")
    listed = site.get(f"/api/messages?after={message['id'] - 1}").json()
    assert listed["messages"][0] == message


def test_updates_arrive_the_way_the_mode_offers(site, target):
    """Tests live updates: over a board WebSocket where Daphne runs, by short polling ?after= in wsgi."""
    # Everything up to here is what the client already has.
    last_id = site.post_message(f"before {uuid.uuid4().hex[:8]}")["id"]
    text = f"update {uuid.uuid4().hex[:8]}"
    if target.mode == "wsgi":
        # A second browser polls every POLL_SECONDS from the last id it has, as the page does.
        reader = target.site()
        posted = site.post_message(text)
        seen = wait_until(
            lambda: [m for m in reader.get(f"/api/messages?after={last_id}").json()["messages"] if m["text"] == text],
            4 * POLL_SECONDS,
            "the message in a poll",
            interval=POLL_SECONDS,
        )
        assert seen == [posted]
        return
    with site.websocket(f"/ws/board/?after={last_id}") as socket:
        _until_ready(socket)
        posted = site.post_message(text)
        frame = json.loads(socket.recv(timeout=10))
    assert frame == {"type": "message", **posted}


def test_a_job_runs_to_finished(site, target):
    """Tests that a job is run to its end by the mode's workers (runworker, or pollworker in wsgi), with
    its progress over WebSocket where Daphne runs and by GET /api/jobs/<id> in every mode."""
    job = site.post_job(steps=3)
    if target.mode != "wsgi":
        frames = []
        with site.websocket(f"/ws/jobs/{job['id']}/") as socket:
            deadline = time.monotonic() + JOB_SECONDS
            while not frames or frames[-1]["state"] != "finished":
                assert time.monotonic() < deadline, f"job not finished within {JOB_SECONDS} s: {frames}"
                frames.append(json.loads(socket.recv(timeout=deadline - time.monotonic())))
        assert (frames[-1]["done"], frames[-1]["total"]) == (3, 3)
    finished = wait_until(
        lambda: (body := site.get(f"/api/jobs/{job['id']}").json())["state"] == "finished" and body,
        JOB_SECONDS,
        f"job {job['id']} finished",
        interval=0.5,
    )
    assert (finished["done"], finished["total"]) == (3, 3)


def test_redis_is_only_where_the_mode_uses_it(target):
    """Tests that the test host has no Redis in wsgi (the redis role skipped) and runs it otherwise."""
    if target.kind != "vm":
        pytest.skip("compose runs its redis service in every mode (README 'Deploy modes')")
    host = target.app_host()
    assert host.package("redis-server").is_installed == (target.mode != "wsgi")


def test_compose_healthcheck_follows_the_mode(target):
    """Tests that Docker reports the app container healthy: its healthcheck probes only the mode's servers."""
    if target.kind != "compose":
        pytest.skip("the app container's healthcheck is compose's")
    state = run(["docker", "inspect", "--format", "{{.State.Health.Status}}", target.container("app")])
    assert state == "healthy"


def _until_ready(socket) -> dict:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        frame = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame["type"] == "ready":
            return frame
    raise AssertionError("no ready frame within 10 s")


def test_long_polling_is_answered_by_daphne_and_refused_in_wsgi(site, target):
    """Tests GET /api/messages/wait: where Daphne runs it waits and answers with no messages after its
    timeout; in wsgi (Gunicorn only) it answers 404 with the contract's error at once."""
    last_id = site.post_message(f"before the wait {uuid.uuid4().hex[:8]}")["id"]
    started = time.monotonic()
    response = site.get(f"/api/messages/wait?after={last_id}&timeout=1")
    waited = time.monotonic() - started
    if target.mode == "wsgi":
        assert response.status_code == 404
        assert response.json() == {"error": "long polling needs the ASGI server (deploy_mode split or asgi)"}
    else:
        assert response.status_code == 200, response.text
        assert response.json() == {"messages": [], "has_more": False}
        assert waited >= 1, f"answered after {waited:.2f} s, before its 1 s timeout"
