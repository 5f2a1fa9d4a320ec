"""Faults users meet, injected while WebSocket clients are connected and messages are posted at a
steady rate, on every --target (compose, vm). After each: every message answered 201 is shown
exactly once, in order, by every client that stayed or came back, compared with the database.

The tests run in this order on each target. The idle-socket test (8) holds its socket open on the
first Daphne through the tests before it that leave that Daphne and Nginx alone (2, 3, 9, 1, 5), so
its two minutes of idling are not spent waiting.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from e2e.stack import http_ok_on_host
from harness.programs import Watch, app_processes, watch_programs
from harness.target import Target
from harness.waiting import TimedOut, wait_until
from websockets.exceptions import ConnectionClosed

from .report import cell
from .tools import DatabaseLock, PortBlocker
from .traffic import HandshakeProber, JobWatcher, Traffic, board_socket, database_ids

# Issue 5 row 2: HTTP answers again within this long after Gunicorn's master is killed.
HTTP_BACK_SECONDS = 10
# Supervisor restarts a killed program at once; startsecs (3 s) later it is RUNNING.
PROGRAM_BACK_SECONDS = 15
# Nginx's default proxy_read_timeout is 60 s; an idle socket must outlive twice that.
IDLE_SECONDS = 2 * 60 + 5
# deploy/defaults.yml: nginx_worker_shutdown_timeout, gunicorn_graceful_timeout, supervisor_fatal_retry_base.
NGINX_WORKER_SHUTDOWN_TIMEOUT = 30
GUNICORN_GRACEFUL_TIMEOUT = 20
FATAL_RETRY_BASE = 5
REDIS_DOWN_SECONDS = 15
# The board socket sends the backlog in pages of this many (board.consumers.BACKLOG_PAGE).
BACKLOG_PAGE = 200
# A request in flight while the stack stops is let go this long after the stop began: longer than
# `docker stop`'s default 10 s, shorter than Gunicorn's graceful timeout.
HELD_INTO_STOP_SECONDS = 12


def kill(stack: Target, pid: int, signal: str = "KILL") -> None:
    result = stack.app_host().run(f"kill -{signal} {pid}")
    assert result.rc == 0, f"kill -{signal} {pid}: {result.stderr}"


def waiting_in_gunicorn(stack: Target, port: int, already_open: set[str]) -> set[str]:
    """Connections to Gunicorn opened since `already_open` that are still open 0.5 s later: a
    request waiting inside a worker (a health probe comes and goes within milliseconds)."""
    opened = stack.established_connections(port) - already_open
    if not opened:
        return set()
    time.sleep(0.5)
    return opened & stack.established_connections(port)


def assert_recovered(watch: Watch, within: float, what: str) -> None:
    assert watch.recovered_at is not None and watch.recovered_at <= within, (
        f"{what}: not whole within {within} s (recovered at {watch.recovered_at}):\n{watch.summary()}"
    )
    assert watch.stable(), f"{what}: PIDs changed after recovery (crash loop?):\n{watch.summary()}"


def assert_nothing_lost(traffic: Traffic) -> None:
    delivery = traffic.delivery
    assert delivery is not None
    assert delivery.posted > 0, f"no message was answered 201: {traffic.poster.refused[:5]}"
    assert not delivery.problems, "\n".join(delivery.problems)
    assert delivery.lost == 0


# --- 8 (opened first): an idle WebSocket -------------------------------------------------------------


@pytest.fixture(scope="session")
def idle_socket(target):
    """A board socket on the first Daphne that asked for messages after an id far ahead: it gets its
    ready frame and then nothing, ever (every live message has a lower id). No client pings either (a
    browser sends none), so only Daphne's pings can keep it open through Nginx.

    Opened before the tests that leave that Daphne and Nginx alone (2, 3, 9, 1 and 5 kill or block
    the other one), so the two idle minutes of test 8 overlap them."""
    with contextlib.ExitStack() as sockets:

        def open_on_first_daphne():
            socket = sockets.enter_context(board_socket(target, after=2**62, open_timeout=10))
            ready = json.loads(socket.recv(timeout=10))
            return socket if ready["served_by"].endswith(f":{target.daphne_ports[0]}") else None

        # Nginx's least_conn alternates between the Daphne processes; the others stay open until the end.
        idle = wait_until(open_on_first_daphne, 20, f"a socket on daphne-{target.daphne_ports[0]}", 0.1)
        yield idle, time.monotonic()


# --- 2: Gunicorn ---------------------------------------------------------------------------------


def gunicorn_processes(stack: Target) -> list:
    return [p for p in app_processes(stack.app_host()) if "gunicorn" in p.args]


@pytest.mark.usefixtures("idle_socket")
def test_sigkilled_gunicorn_worker_and_master_answer_again_within_10_s_without_orphans(target, stack, fault_record):
    """Tests that after SIGKILL of a Gunicorn worker, then its master, HTTP answers within 10 s and no orphan stays."""
    fault_record.fault = "2 SIGKILL Gunicorn worker, then master"
    fault_record.recovered_when = "new master RUNNING, its workers only, HTTP 200"
    site = stack.site()
    with Traffic(target) as traffic:
        before = stack.program_states()
        master = before["gunicorn"][1]
        workers = sorted(p.pid for p in gunicorn_processes(stack) if p.ppid == master)
        assert len(workers) >= 2, workers

        kill(stack, workers[0])
        wait_until(
            lambda: (
                workers[0] not in {p.pid for p in gunicorn_processes(stack)}
                and len([p for p in gunicorn_processes(stack) if p.ppid == master]) == len(workers)
            ),
            HTTP_BACK_SECONDS,
            "the master replaced its killed worker",
        )
        assert stack.program_states()["gunicorn"][1] == master

        killed_at = time.monotonic()
        kill(stack, master)

        strays_seen: set[int] = set()

        def only_the_new_masters_workers() -> bool:
            new_master = stack.program_states()["gunicorn"][1]
            gunicorns = gunicorn_processes(stack)
            strays = [p for p in gunicorns if p.pid != new_master and p.ppid != new_master]
            strays_seen.update(p.pid for p in strays)
            return not strays and len(gunicorns) == len(workers) + 1 and site.get("/healthz").status_code == 200

        watch = watch_programs(stack, before, {"gunicorn"}, only_the_new_masters_workers, 60, killed_at)
        fault_record.recovery = watch.recovered_at
        fault_record.details.append(f"orphaned workers seen after the master's death: {len(strays_seen)}, all gone")
        traffic.run_for(2)
        fault_record.took(traffic.finish())

    assert_recovered(watch, HTTP_BACK_SECONDS, "gunicorn")
    assert len(watch.replacements("gunicorn")) == 1, f"gunicorn restarted more than once:\n{watch.summary()}"
    assert_nothing_lost(traffic)


# --- 3: a worker in the middle of a job ----------------------------------------------------------


@pytest.mark.usefixtures("idle_socket")
def test_sigkilled_worker_mid_job_the_job_still_finishes_exactly_once(target, stack, fault_record):
    """Tests that when a worker is SIGKILLed mid-job, the job still reaches finished, exactly once."""
    fault_record.fault = "3 SIGKILL a worker mid-job"
    fault_record.recovered_when = "interrupted job finished"
    site = stack.site()
    victim = target.workers[0]
    steps = 40
    with Traffic(target) as traffic:
        before = stack.program_states()
        # One job per worker (each takes one message at a time), so the victim holds one of them.
        jobs = [site.post_job(steps=steps)["id"] for _ in target.workers]
        watchers = [JobWatcher(target, job_id) for job_id in jobs]
        for watcher in watchers:
            watcher.start()

        def all_running() -> bool:
            return all(site.get(f"/api/jobs/{job_id}").json()["done"] >= 3 for job_id in jobs)

        wait_until(all_running, 20, "every job running")
        killed_at = time.monotonic()
        kill(stack, before[victim][1])
        watch = watch_programs(stack, before, {victim}, lambda: True, PROGRAM_BACK_SECONDS, killed_at)

        for watcher in watchers:
            watcher.finished.wait(max(1, 90 - (time.monotonic() - killed_at)))
        fault_record.recovery = time.monotonic() - killed_at if all(w.finished.is_set() for w in watchers) else None
        fault_record.took(traffic.finish())
    fault_record.details.append(f"{len(jobs)} jobs of {steps} steps; {victim} back after {cell(watch.recovered_at)}")

    states = {job_id: site.get(f"/api/jobs/{job_id}").json() for job_id in jobs}
    assert all(s["state"] == "finished" and s["done"] == s["total"] == steps for s in states.values()), states
    for watcher in watchers:
        assert watcher.finished_frames == 1, f"job {watcher.job_id}: {watcher.frames[-5:]}"
        done = [frame["done"] for frame in watcher.frames]
        assert done == sorted(done), f"job {watcher.job_id} progress went backwards: {done}"
    finished_logs = {job_id: stack.app_log_lines(f"job id={job_id} finished") for job_id in jobs}
    assert all(len(lines) == 1 for lines in finished_logs.values()), finished_logs
    resumed = [job_id for job_id in jobs if stack.app_log_lines(f"job id={job_id} claimed (attempt 2)")]
    assert resumed, "no job was taken over after the kill: the kill did not interrupt a job"
    fault_record.details.append(f"job {resumed[0]} resumed by another run, finished once")
    assert_recovered(watch, PROGRAM_BACK_SECONDS, victim)
    assert_nothing_lost(traffic)


# --- 9: offline for more than a backlog page ------------------------------------------------------


@pytest.mark.usefixtures("idle_socket")
def test_client_offline_for_more_than_a_backlog_page_gets_every_message(target, stack, fault_record):
    """Tests that a client offline while more than 200 messages were posted shows every one after it comes back."""
    fault_record.fault = "9 client offline for > 200 messages"
    fault_record.recovered_when = "returning client showed the whole backlog"
    count = BACKLOG_PAGE + 60
    with Traffic(target, clients=3, interval=0.05) as traffic:
        traffic.poster.max_count = count
        away = traffic.clients[0]
        away.go_offline()
        wait_until(lambda: len(traffic.poster.accepted) + len(traffic.poster.refused) >= count, 60, "posts done")
        back_at = time.monotonic()
        away.come_back()
        wait_until(lambda: away.ready.is_set(), 20, "the client is back")
        fault_record.recovery = away.connections[-1].opened - back_at
        fault_record.took(traffic.finish())

    fault_record.details.append(f"backfill of {away.connections[-1].backlog} messages in one reconnect")
    assert away.connections[-1].backlog > BACKLOG_PAGE, [c.backlog for c in away.connections]
    assert_nothing_lost(traffic)


# --- 1: Daphne -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("idle_socket")
def test_sigkilled_daphne_clients_reconnect_and_backfill_while_the_others_see_no_break(target, stack, fault_record):
    """Tests that after SIGKILL of a Daphne its clients reconnect and backfill, others stay, handshakes keep working."""
    fault_record.fault = "1 SIGKILL one Daphne"
    fault_record.recovered_when = "new Daphne serving, its clients back"
    port = target.daphne_ports[-1]
    victim = f"daphne:daphne-{port}"
    with Traffic(target, clients=4, spread=True) as traffic, HandshakeProber(target) as prober:
        before = stack.program_states()
        victims = traffic.clients_on(port)
        others = [client for client in traffic.clients if client not in victims]
        traffic.run_for(2)
        killed_at = time.monotonic()
        kill(stack, before[victim][1])

        def serving_and_clients_back() -> bool:
            back = all(len(client.connections) >= 2 for client in victims)
            return back and http_ok_on_host(stack.app_host(), target, port, "/ws/healthz")

        watch = watch_programs(stack, before, {victim}, serving_and_clients_back, 30, killed_at)
        fault_record.recovery = watch.recovered_at
        traffic.run_for(2)
        broken_others = [(c.name, c.connections) for c in others if len(c.connections) != 1]
        fault_record.took(traffic.finish())
    back = [round(c.connections[1].opened - killed_at, 1) for c in victims if len(c.connections) > 1]
    single = sum(1 for _, ok, _ in prober.results if not ok)
    fault_record.details.append(
        f"{len(victims)} clients of the killed Daphne back after {back} s, {len(others)} others undisturbed; "
        f"{len(prober.results)} new handshakes, {single} needed their one retry"
    )

    assert victims and others
    assert_recovered(watch, PROGRAM_BACK_SECONDS, victim)
    assert len(watch.replacements(victim)) == 1, f"{victim} restarted more than once:\n{watch.summary()}"
    assert not broken_others, f"clients of the other Daphne were disconnected: {broken_others}"
    assert not prober.bursts, f"handshakes failed twice in a row at {prober.bursts} (of {len(prober.results)})"
    assert_nothing_lost(traffic)


# --- 5: a program that crash-loops on start -------------------------------------------------------


@pytest.mark.usefixtures("idle_socket")
def test_program_crash_looping_on_start_is_fatal_reported_and_retried_when_the_cause_is_gone(
    target, stack, fault_record
):
    """Tests that a program dying at every start goes FATAL, /healthz names it, and it is back once its port is free."""
    fault_record.fault = "5 crash loop on start (port taken)"
    fault_record.recovered_when = "port freed -> RUNNING, /healthz 200"
    port = target.daphne_ports[-1]
    victim = f"daphne:daphne-{port}"
    site = stack.site()
    supervisor = stack.supervisor()
    with Traffic(target) as traffic:
        supervisor.stop(victim)
        before = stack.program_states()
        retry_lines = len(stack.app_log_lines(f"{victim} is FATAL; starting it again"))
        with PortBlocker(stack, port) as blocker:
            started = time.monotonic()
            supervisor.start(victim)
            states_seen: list[str] = []

            def fatal() -> bool:
                state = stack.program_states().get(victim, ("?", 0, 0))[0]
                if not states_seen or states_seen[-1] != state:
                    states_seen.append(state)
                return state == "FATAL"

            try:
                wait_until(fatal, 60, f"{victim} FATAL", 0.3)
            except TimedOut:
                fault_record.details.append(f"never FATAL in 60 s: {' -> '.join(states_seen)}")
                raise
            fatal_after = time.monotonic() - started
            health = site.get("/healthz")
            blocker.free()
            freed_at = time.monotonic()
        watch = watch_programs(
            stack,
            before,
            {victim},
            lambda: http_ok_on_host(stack.app_host(), target, port, "/ws/healthz") and site.healthy(),
            60,
            freed_at,
        )
        fault_record.recovery = watch.recovered_at
        retried = stack.app_log_lines(f"{victim} is FATAL; starting it again")[retry_lines:]
        traffic.run_for(2)
        fault_record.took(traffic.finish())
    fault_record.details.append(
        f"{' -> '.join(states_seen)} after {fatal_after:.1f} s ({states_seen.count('STARTING')} starts seen); "
        f"/healthz {health.status_code} {health.json()['checks'].get('programs')!r}"
    )

    assert "BACKOFF" in states_seen, states_seen
    assert health.status_code == 503, health.text
    assert "programs" in health.json()["failing"] and victim in health.json()["checks"]["programs"], health.json()
    assert retried, "fatal-retry logged no retry"
    # The first retry comes FATAL_RETRY_BASE s after FATAL, plus startsecs; allow one more round.
    assert_recovered(watch, 4 * FATAL_RETRY_BASE + 15, victim)
    assert_nothing_lost(traffic)


# --- 8: idle WebSocket -----------------------------------------------------------------------------


def test_idle_websocket_survives_twice_nginx_default_read_timeout(target, idle_socket, fault_record):
    """Tests that a WebSocket with no traffic for over 120 s (2 x Nginx's default timeout) is still open both ways."""
    fault_record.fault = "8 idle WebSocket, 2 x 60 s"
    fault_record.recovered_when = "(no fault: seconds idle)"
    socket, opened = idle_socket
    remaining = IDLE_SECONDS - (time.monotonic() - opened)
    if remaining > 0:
        try:
            frame = socket.recv(timeout=remaining)
        except TimeoutError:
            pass  # nothing arrived, and the socket was not closed: as it should be
        except ConnectionClosed as closed:
            fault_record.details.append(f"closed after {time.monotonic() - opened:.0f} s idle: {closed}")
            raise
        else:
            pytest.fail(f"a frame arrived on a socket that has nothing to say: {frame}")
    idle = time.monotonic() - opened
    socket.send(json.dumps({"type": "hello"}))
    answer = json.loads(socket.recv(timeout=10))
    fault_record.recovery = idle

    fault_record.details.append(f"no frame for {idle:.0f} s, then a frame sent and answered")
    assert idle >= IDLE_SECONDS
    assert answer["type"] == "error", answer  # the board socket answers an unknown frame with an error


# --- 6: Redis --------------------------------------------------------------------------------------


def test_redis_down_15_s_messages_are_stored_and_clients_reconnect_and_backfill(target, stack, fault_record):
    """Tests that with Redis stopped 15 s posts still get 201, /healthz names the channel layer, clients come back."""
    fault_record.fault = "6 Redis stopped 15 s"
    fault_record.recovered_when = "Redis start issued -> healthy, every client back"
    site = stack.site()
    with Traffic(target) as traffic:
        before = stack.program_states()
        traffic.run_for(2)
        stopping_at = time.monotonic()
        stack.stop_redis()
        stopped_at = time.monotonic()
        accepted_before = len(traffic.poster.accepted)
        health_samples = []
        while time.monotonic() - stopped_at < REDIS_DOWN_SECONDS:
            response = site.get("/healthz")
            health_samples.append((response.status_code, response.json().get("failing")))
            time.sleep(1)
        posted_while_down = traffic.poster.accepted[accepted_before:]
        # From the start command on: Redis's own start-up counts towards the recovery.
        started_at = time.monotonic()
        stack.start_redis()

        waiting_on: list[str] = []  # what the last sample that was not whole waited for: the failure says why

        def healthy_and_clients_back() -> bool:
            away = [c.name for c in traffic.clients if not (c.connections and c.connections[-1].opened > started_at)]
            unhealthy = site.unhealthy_probes()
            if away or unhealthy:
                waiting_on[:] = [f"+{time.monotonic() - started_at:.1f}s clients not back {away}, probes {unhealthy}"]
            return not away and not unhealthy

        # Nothing restarted: every program keeps its PID.
        watch = watch_programs(stack, before, set(), healthy_and_clients_back, 60, started_at)
        fault_record.details.extend(waiting_on if watch.recovered_at is None or watch.recovered_at > 30 else [])
        fault_record.recovery = watch.recovered_at
        # Closed by the server (not by the client itself) between the outage and their return.
        closes = {c.name: c.disconnects_between(stopping_at, time.monotonic()) for c in traffic.clients}
        traffic.run_for(2)
        fault_record.took(traffic.finish())

    closed = [name for name, connections in closes.items() if not connections]
    codes = sorted({str(c.close_code) for connections in closes.values() for c in connections})
    logged = stack.app_log_lines("broadcast of message id=")
    failed_broadcasts = [i for i in posted_while_down if any(f"id={i} failed" in line for line in logged)]
    fault_record.details.append(
        f"{len(posted_while_down)} posts answered 201 while Redis was down, {len(failed_broadcasts)} failed "
        f"broadcasts logged; sockets closed with {codes}; /healthz {health_samples[0] if health_samples else '-'}"
    )
    assert health_samples and all(s == (503, ["channel_layer"]) for s in health_samples), health_samples
    assert posted_while_down, "no post was answered 201 while Redis was down"
    assert traffic.poster.refused == [], f"posts not answered 201: {traffic.poster.refused[:10]}"
    assert failed_broadcasts == posted_while_down, "every failed broadcast is logged"
    assert not closed, f"clients never closed or noticed: {closed}"
    assert_recovered(watch, 30, f"redis (last wait: {waiting_on})")
    assert_nothing_lost(traffic)


# --- 7: Nginx reload -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [pytest.param("nginx -s reload", id="signal"), pytest.param("ansible handler", id="handler")]
)
def test_nginx_reload_keeps_open_sockets_and_leaves_no_old_workers(target, stack, method, fault_record):
    """Tests that after a Nginx reload, open sockets keep getting messages and old workers are gone by the timeout."""
    if method not in stack.reload_methods:
        pytest.skip(f"{target.name} has no {method}")
    fault_record.fault = f"7 Nginx reload ({method})"
    fault_record.recovered_when = "old Nginx workers gone"
    with Traffic(target) as traffic:
        old_workers = stack.nginx_workers()
        traffic.run_for(1)
        reloaded_at = time.monotonic()
        stack.reload_nginx(method)
        samples = []

        def old_workers_gone() -> bool:
            workers = stack.nginx_workers()
            samples.append((round(time.monotonic() - reloaded_at, 1), sorted(workers)))
            return workers and not workers & old_workers

        wait_until(old_workers_gone, NGINX_WORKER_SHUTDOWN_TIMEOUT + 20, "old Nginx workers gone", 1)
        gone_at = time.monotonic()
        fault_record.recovery = gone_at - reloaded_at
        traffic.run_for(3)
        fault_record.took(traffic.finish())
    kept = [round((c.connections[0].closed or gone_at) - reloaded_at, 1) for c in traffic.clients if c.connections]
    fault_record.details.append(f"old workers {sorted(old_workers)} gone; open sockets kept for {kept} s after it")

    kept_until = min(gone_at, reloaded_at + NGINX_WORKER_SHUTDOWN_TIMEOUT) - 2
    cut_early = [c.name for c in traffic.clients if c.disconnects_between(reloaded_at, kept_until)]
    silent = [c.name for c in traffic.clients if c.frames_between(reloaded_at + 1, kept_until) == 0]
    assert not cut_early, f"sockets closed before the shutdown timeout: {cut_early}"
    assert not silent, f"open sockets got no messages after the reload: {silent}"
    assert gone_at - reloaded_at <= NGINX_WORKER_SHUTDOWN_TIMEOUT + 10, samples
    assert_nothing_lost(traffic)


# --- 4: supervisord --------------------------------------------------------------------------------


def test_sigkilled_supervisord_is_restarted_with_every_program_and_nothing_lost(target, stack, fault_record):
    """Tests that after SIGKILL of supervisord its keeper restarts it once (count + 1) and every program comes back."""
    fault_record.fault = "4 SIGKILL supervisord"
    fault_record.recovered_when = f"restarted by {stack.supervisord_keeper}, all RUNNING, healthy"
    with Traffic(target) as traffic:
        before = stack.program_states()
        restarts = stack.supervisord_restarts()
        supervisord = stack.supervisord_process()
        old_processes = {(p.pid, p.start) for p in app_processes(stack.app_host())}
        traffic.run_for(2)
        killed_at = time.monotonic()
        kill(stack, supervisord[0])
        watch = watch_programs(stack, before, set(target.programs), lambda: stack.site().healthy(), 120, killed_at)
        fault_record.recovery = watch.recovered_at
        traffic.run_for(2)
        fault_record.took(traffic.finish())

    leftovers = [p for p in app_processes(stack.app_host()) if (p.pid, p.start) in old_processes]
    restarts_after = stack.supervisord_restarts()
    fault_record.details.append(f"restart count {restarts} -> {restarts_after}")
    assert restarts_after == restarts + 1
    assert stack.supervisord_process() != supervisord, "supervisord is still the same process"
    assert_recovered(watch, 90, "every program")
    assert not leftovers, f"processes of the killed supervisord still running: {leftovers}"
    assert_nothing_lost(traffic)


# --- 10: reboot ------------------------------------------------------------------------------------


def test_reboot_brings_everything_back_by_itself(target, stack, fault_record):
    """Tests that after a reboot of the test host / `compose restart` every service and program runs again by
    itself (no Ansible), healthy, nothing lost."""
    fault_record.fault = "10 reboot / compose restart"
    fault_record.recovered_when = "restart command -> all RUNNING, healthy"
    with Traffic(target) as traffic:
        before = stack.program_states()
        traffic.run_for(2)
        started = time.monotonic()
        stack.reboot()
        rebooted_at = time.monotonic()
        watch = watch_programs(stack, before, set(target.programs), lambda: stack.site().healthy(), 150, rebooted_at)
        fault_record.recovery = None if watch.recovered_at is None else watch.recovered_at + rebooted_at - started
        traffic.run_for(2)
        fault_record.took(traffic.finish())
    fault_record.details.append(f"the restart command itself took {rebooted_at - started:.1f} s")

    assert_recovered(watch, 150, "every program")
    assert stack.services_down() == []
    assert_nothing_lost(traffic)


# --- 11: stopping the stack ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        pytest.param("supervisorctl stop all", id="supervisorctl"),
        pytest.param("systemctl stop", id="systemctl"),
        pytest.param("make down", id="make-down"),
    ],
)
def test_stopping_the_stack_waits_for_in_flight_requests_and_leaves_no_process(target, stack, method, fault_record):
    """Tests that stopping the stack lets a request in flight finish (201) and leaves no process behind."""
    if method not in stack.stop_methods:
        pytest.skip(f"{target.name} is not stopped with {method}")
    fault_record.fault = f"11 stop ({method})"
    fault_record.recovered_when = "start command -> all RUNNING, healthy"
    site = stack.site()
    answer: dict = {}

    def post_in_flight() -> None:
        try:
            answer["response"] = site.http.post(
                site.url("/api/messages"),
                json={"text": f"in flight {traffic.tag}"},
                headers=site.csrf_headers(),
                timeout=HELD_INTO_STOP_SECONDS + 60,
            )
            answer["at"] = time.monotonic()
        except Exception as exc:  # noqa: BLE001 (reported by the assert below)
            answer["error"] = repr(exc)

    with Traffic(target) as traffic:
        before = stack.program_states()
        traffic.run_for(1)
        with contextlib.ExitStack() as held:
            # The poster waits (before the lock, so none of its posts is caught by it) while the
            # request is sent: the only new connection to Gunicorn that stays open is then that
            # request's, waiting for the lock inside a worker.
            with traffic.poster.paused():
                lock = held.enter_context(DatabaseLock(stack))
                already_open = stack.established_connections(target.gunicorn_port)
                poster = threading.Thread(target=post_in_flight, daemon=True)
                poster.start()
                waiting = wait_until(
                    lambda: waiting_in_gunicorn(stack, target.gunicorn_port, already_open),
                    20,
                    "the POST waiting in a Gunicorn worker",
                    0.1,
                )
            in_flight = poster.is_alive() and bool(waiting)
            # Let the request go on purpose, well into the stop: past `docker stop`'s 10 s default.
            release = threading.Timer(HELD_INTO_STOP_SECONDS, lock.release)
            stop_started = time.monotonic()
            release.start()
            try:
                stack.stop_stack(method)
            finally:
                release.cancel()
        stopped_at = time.monotonic()
        poster.join(30)
        leftovers = stack.leftovers(method)
        start_began = time.monotonic()
        stack.start_stack(method)
        watch = watch_programs(stack, before, set(target.programs), site.healthy, 180, start_began)
        fault_record.recovery = watch.recovered_at
        traffic.run_for(2)
        fault_record.took(traffic.finish())
    stop_took = stopped_at - stop_started
    released = lock.released_at - stop_started
    answered = f"{answer['at'] - stop_started:.1f} s" if "at" in answer else f"never ({answer.get('error')})"
    fault_record.details.append(
        f"stop took {stop_took:.1f} s; the request in flight (held by a write lock until {released:.1f} s into "
        f"the stop) was answered {getattr(answer.get('response'), 'status_code', '-')} {answered} after the "
        "stop began"
    )

    response = answer.get("response")
    assert in_flight, "the request was not in flight when the stop began"
    assert response is not None and response.status_code == 201, answer
    assert answer["at"] >= lock.released_at, "answered before the lock was released"
    assert response.json()["id"] in database_ids(site, response.json()["id"] - 1)
    # `make down` stops Nginx first, and Nginx's graceful stop also waits for open WebSockets, up to
    # worker_shutdown_timeout; the programs themselves get Gunicorn's graceful timeout.
    longest = GUNICORN_GRACEFUL_TIMEOUT + 15 + (NGINX_WORKER_SHUTDOWN_TIMEOUT if method == "make down" else 0)
    assert released >= HELD_INTO_STOP_SECONDS and released - 1 <= stop_took <= longest, (released, stop_took)
    assert not leftovers, f"left behind after {method}: {leftovers}"
    assert watch.recovered_at is not None, watch.summary()
    assert_nothing_lost(traffic)
