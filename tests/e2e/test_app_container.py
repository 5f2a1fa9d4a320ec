"""The app's host (the compose app container, or the VM) seen from inside with testinfra:
supervisord under an init, the programs RUNNING as the app user, their sockets listening, and
supervisor replacing a SIGKILLed process with one that serves again."""

import time

import pytest

from .stack import Supervisor, http_ok_on_host, wait_until

RECOVERY_SECONDS = 10
# After recovery the new PID must stay the same this long: a crash loop would change it.
STABLE_SECONDS = 4


def test_supervisord_runs_as_the_app_user_under_an_init(app_host, target):
    """Tests that supervisord runs as the non-root app user, as PID 1 or as the child of an init."""
    supervisord = app_host.process.get(comm="supervisord")
    init = app_host.process.get(pid=1)

    assert supervisord.user == target.app_user != "root"
    assert supervisord.pid == 1 or (supervisord.ppid == 1 and init.comm in target.init_names), (
        f"supervisord pid {supervisord.pid} ppid {supervisord.ppid}; PID 1 is {init.comm!r}"
    )


# deployed_program and app_port: one test per program and port of the target's deploy variables
# (tests/e2e/conftest.py).
def test_program_is_running_as_the_app_user(app_host, target, deployed_program):
    """Tests that each supervisor program is RUNNING, in a process owned by the app user."""
    status = app_host.supervisor(deployed_program, target.supervisorctl_path, target.supervisord_conf)

    assert status.is_running, f"{deployed_program}: {status.status}"
    assert app_host.process.get(pid=status.pid).user == target.app_user


def test_supervisor_runs_as_many_daphnes_and_workers_as_the_variables_say(target, supervisor):
    """Tests that supervisor runs exactly daphne_processes Daphne programs and the worker programs that
    worker_channels asks for."""
    status = supervisor.status()
    running = {group: sorted(n for n in status if n.startswith(f"{group}:")) for group in ("daphne", "worker")}

    assert running == {
        "daphne": sorted(p for p in target.programs if p.startswith("daphne:")),
        "worker": sorted(target.workers),
    }


def test_program_socket_is_listening(app_host, target, app_port):
    """Tests that Gunicorn and every Daphne process listen on their ports."""
    assert app_host.socket(f"tcp://{target.bind_host}:{app_port}").is_listening


def gunicorn_serves(site, app_host, target, supervisor) -> bool:
    return http_ok_on_host(app_host, target, target.gunicorn_port, "/healthz") and site.get("/").status_code == 200


def daphne_serves(site, app_host, target, supervisor) -> bool:
    return http_ok_on_host(app_host, target, target.daphne_ports[-1], "/ws/healthz")


def make_worker_check():
    """A job posted once; the check is whether it has finished (only the killed worker can run it)."""
    posted = {}

    def worker_serves(site, app_host, target, supervisor) -> bool:
        if "id" not in posted:
            posted["id"] = site.post_job(steps=2)["id"]
        return site.get(f"/api/jobs/{posted['id']}").json()["state"] == "finished"

    return worker_serves


# pick(target) -> (the program killed, the programs stopped first), from the target's variables.
@pytest.mark.parametrize(
    ("pick", "make_check"),
    [
        pytest.param(lambda t: ("gunicorn", []), lambda: gunicorn_serves, id="gunicorn"),
        pytest.param(lambda t: (f"daphne:daphne-{t.daphne_ports[-1]}", []), lambda: daphne_serves, id="daphne"),
        # The other workers are stopped, so the job can only be run by the replaced one.
        pytest.param(lambda t: (t.workers[0], list(t.workers[1:])), make_worker_check, id="worker"),
    ],
)
def test_sigkilled_process_is_replaced_and_serves_again_within_10_s(
    site, app_host, target, supervisor: Supervisor, pick, make_check
):
    """Tests that after SIGKILL supervisor starts a new PID that is RUNNING and serving within 10 s, and stays."""
    program, also_stopped = pick(target)
    for name in also_stopped:
        supervisor.stop(name)
    serves = make_check()
    before = supervisor.status()[program]
    assert before.state == "RUNNING" and before.pid > 0

    killed = app_host.run(f"kill -KILL {before.pid}")
    assert killed.rc == 0, killed.stderr
    start = time.monotonic()
    samples = []  # (seconds since the kill, state, pid, serving)
    recovered_at = None
    while time.monotonic() - start < RECOVERY_SECONDS + STABLE_SECONDS:
        now = supervisor.status()[program]
        serving = now.state == "RUNNING" and serves(site, app_host, target, supervisor)
        samples.append((round(time.monotonic() - start, 1), now.state, now.pid, serving))
        if recovered_at is None and serving and now.pid != before.pid:
            recovered_at = samples[-1][0]
        if recovered_at is not None and samples[-1][0] - recovered_at >= STABLE_SECONDS:
            break
        time.sleep(0.5)

    print(f"{program}: old pid {before.pid}; samples (s, state, pid, serving): {samples}")
    assert recovered_at is not None and recovered_at <= RECOVERY_SECONDS, f"old pid {before.pid}; {samples}"
    after = [(state, pid) for t, state, pid, _ in samples if t >= recovered_at]
    new_pid = after[0][1]
    assert after == [("RUNNING", new_pid)] * len(after), f"not stable after recovery: {samples}"
    assert app_host.process.get(pid=new_pid).user == target.app_user


# The container runtime's restart policy (compose) or systemd (VM) starts supervisord again, and
# supervisord every program; migrate and the programs' startsecs come first.
SUPERVISORD_RECOVERY_SECONDS = 90


def supervisord_identity(app_host) -> tuple[int, str]:
    """supervisord's PID and start time: a restarted container may reuse the PID."""
    pid = app_host.process.get(comm="supervisord").pid
    return pid, app_host.check_output(f"ps -o lstart= -p {pid}")


def test_killed_supervisord_is_brought_back_with_every_program(site, target, app_host, supervisor):
    """Tests that after SIGKILL of supervisord itself the stack comes back: a new supervisord, all programs, site."""
    before = supervisord_identity(app_host)

    killed = app_host.run(f"kill -KILL {before[0]}")
    assert killed.rc == 0, killed.stderr

    wait_until(lambda: supervisord_identity(app_host) != before, SUPERVISORD_RECOVERY_SECONDS, "a new supervisord")
    wait_until(target.all_running, SUPERVISORD_RECOVERY_SECONDS, "every program RUNNING")
    wait_until(site.healthy, SUPERVISORD_RECOVERY_SECONDS, "site healthy through Nginx")
    assert supervisord_identity(app_host)[0] > 0


def test_redis_refuses_clients_without_the_password(app_host, target):
    """Tests that Redis, reached from the app's host, answers a client without the password with NOAUTH."""
    script = f"import redis; redis.Redis(host='{target.redis_host}', socket_timeout=3).ping()"
    result = app_host.run(f'{target.python} -c "{script}"')

    assert result.rc != 0
    assert "Authentication required" in result.stderr, result.stderr[-500:]
