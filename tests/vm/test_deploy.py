"""The playbook on an already provisioned host: a second run changes nothing, and a run with a new
app version deploys it as a new release and restarts every program on it."""

import json
import shutil
import uuid

import pytest
import requests
from harness.deploy import vm_vars
from harness.session import ARTIFACTS
from harness.tls import verify, ws_ssl
from harness.waiting import wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

DEPLOY = vm_vars()
CURRENT = DEPLOY["app_code_dir"].removesuffix("/app")


def record_timing(what: str, seconds: float) -> None:
    """Appends a measured wall time to artifacts/vm-timings.txt, beside the bring-up's."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "vm-timings.txt").open("a") as timings:
        timings.write(f"vm: {what} took {seconds:.0f} s\n")


def test_second_playbook_run_changes_nothing(vm):
    """Tests that the playbook run again on the provisioned host reports changed=0 (idempotence)."""
    run = vm.run_playbook()
    record_timing("the playbook's idempotent second run", run.seconds)

    assert run.returncode == 0, run.output[-3000:]
    assert run.recap["changed"] == 0, f"changed tasks: {run.changed_tasks}"


def open_board_socket(target, after: int = 0):
    """A board WebSocket through Nginx, read up to its ready frame; returns (socket, backlog texts, last id)."""
    url = target.ws_url + f"/ws/board/?after={after}"
    socket = connect(url, origin=target.base_url, open_timeout=10, close_timeout=2, ssl=ws_ssl(url))
    backlog = []
    while (frame := json.loads(socket.recv(timeout=10)))["type"] != "ready":
        backlog.append(frame["text"])
    return socket, backlog, frame["last_id"]


def post_message(base_url: str, text: str) -> None:
    """Posts a message through Nginx as the board page does (CSRF cookie, header and origin)."""
    session = requests.Session()
    session.verify = verify(base_url)
    # Else REQUESTS_CA_BUNDLE in the environment wins over the session's verify (as in harness.site).
    session.trust_env = False
    session.get(base_url + "/", timeout=10).raise_for_status()
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Origin": base_url, "Referer": base_url + "/"}
    response = session.post(base_url + "/api/messages", json={"text": text}, headers=headers, timeout=10)
    assert response.status_code == 201, response.text


@pytest.fixture
def new_version(tmp_path, vm):
    """A copy of the deployed app/ and requirements.txt with one file more: a new app version."""
    source = tmp_path / "checkout"
    shutil.copytree(vm.app_source / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(vm.app_source / "requirements.txt", source / "requirements.txt")
    (source / "app" / "RELEASE").write_text(f"test release {uuid.uuid4()}\n")
    return source


def test_new_app_version_is_deployed_and_every_program_restarts_on_it(host, vm, new_version):
    """Tests that a run with a new app version links a new release, restarts every program on it and
    closes the WebSockets open on the old processes, whose clients reconnect and catch up."""
    before_pids = vm.program_pids()
    assert before_pids, "not every program RUNNING before the deploy"
    before_release = host.file(CURRENT).linked_to
    socket, _, last_id = open_board_socket(vm)

    run = vm.run_playbook("--extra-vars", f"app_source_dir={new_version}")
    record_timing("the playbook run with a new release", run.seconds)

    assert run.returncode == 0, run.output[-3000:]
    release = host.file(CURRENT).linked_to
    assert release != before_release and host.file(before_release).is_directory  # the old one kept for rollback
    assert host.file(f"{release}/app/RELEASE").content_string == (new_version / "app" / "RELEASE").read_text()
    after_pids = wait_until(vm.program_pids, 30, "every program RUNNING")
    assert sorted(after_pids) == sorted(before_pids)
    assert [name for name, pid in after_pids.items() if pid == before_pids[name]] == [], "programs not restarted"
    # /proc/<pid>/cwd of another user's process: only that user may read it (root lacks CAP_SYS_PTRACE here).
    cwd = host.run(f"sudo -u {DEPLOY['app_user']} readlink /proc/{after_pids['gunicorn']}/cwd").stdout.strip()
    assert cwd == f"{release}/app"
    with pytest.raises(ConnectionClosed):
        socket.recv(timeout=10)
    missed = f"posted while reconnecting {uuid.uuid4().hex[:8]}"
    post_message(vm.base_url, missed)
    reconnected, backlog, _ = open_board_socket(vm, after=last_id)
    reconnected.close()
    assert backlog == [missed]
    assert vm.healthy()
