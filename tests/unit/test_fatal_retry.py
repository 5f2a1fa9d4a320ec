"""The FATAL-retry event listener and the health check's view of FATAL programs, on a real supervisord."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervisor import childutils

from board import views
from ops.fatal_retry import retry_delay

APP_DIR = Path(__file__).resolve().parents[2] / "app"


@pytest.mark.parametrize(("attempt", "delay"), [(0, 5), (1, 10), (3, 40), (10, 300)])
def test_retry_delay_doubles_from_base_up_to_the_maximum(attempt, delay):
    """Tests the backoff: base, 2 x base, 4 x base ... never more than the maximum."""
    assert retry_delay(attempt, 5, 300) == delay


@pytest.fixture
def supervisord(tmp_path):
    """A real supervisord with a program that crash-loops until a flag file exists, and the listener."""
    flag = tmp_path / "cause-is-gone"
    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"""
[unix_http_server]
file = {tmp_path}/supervisor.sock
[supervisord]
nodaemon = true
logfile = {tmp_path}/supervisord.log
pidfile = {tmp_path}/supervisord.pid
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:flaky]
command = /bin/sh -c 'test -f {flag} && exec sleep 600; exit 1'
startsecs = 1
startretries = 1
autorestart = true
[eventlistener:fatal-retry]
command = {sys.executable} -m ops.fatal_retry --base 1 --max 2
directory = {APP_DIR}
events = PROCESS_STATE_FATAL,PROCESS_STATE_RUNNING
stderr_logfile = {tmp_path}/fatal-retry.log
"""
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "supervisord"), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {"SUPERVISOR_SERVER_URL": f"unix://{tmp_path}/supervisor.sock"}
    yield env, flag, tmp_path
    process.terminate()
    process.wait(timeout=20)


def state_of(env: dict, name: str) -> str:
    try:
        return childutils.getRPCInterface(env).supervisor.getProcessInfo(name)["statename"]
    except OSError:
        return "NO SUPERVISOR YET"


def wait_for_state(env: dict, name: str, wanted: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (state := state_of(env, name)) != wanted:
        if time.monotonic() > deadline:
            pytest.fail(f"{name} is {state}, not {wanted}, after {timeout} s")
        time.sleep(0.1)


def test_a_fatal_program_is_reported_by_the_health_check_and_restarted_once_its_cause_is_gone(supervisord, monkeypatch):
    """Tests that FATAL shows in /healthz's checks, and that the listener brings the program back."""
    env, flag, tmp_path = supervisord
    wait_for_state(env, "flaky", "FATAL", 20)
    monkeypatch.setattr(os, "environ", {**os.environ, **env})
    with pytest.raises(RuntimeError, match="FATAL: flaky:flaky"):
        views.check_programs()
    flag.touch()
    wait_for_state(env, "flaky", "RUNNING", 20)
    assert views.check_programs() == "ok"
    log = tmp_path / "fatal-retry.log"
    deadline = time.monotonic() + 5  # the listener handles the RUNNING event just after the state changes
    while "flaky:flaky is RUNNING again" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "flaky:flaky is FATAL; starting it again" in log.read_text()
    assert "flaky:flaky is RUNNING again" in log.read_text()
