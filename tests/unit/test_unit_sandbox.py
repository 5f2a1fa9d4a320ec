"""`systemd-analyze security` of every unit the stack installs, as rendered (issue 12: exposure at
most 2.0): channels-stack.service, and Debian's nginx.service and redis-server.service with the drop-ins
the ansible roles add (the units as shipped by this machine's nginx and redis-server packages, the
VM's Debian 12 ones). Offline, on a scratch root; the VM tier runs the stack under them."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]
MAX_EXPOSURE = 2.0
DEBIAN_UNITS = Path("/lib/systemd/system")
# The test host's own drop-in (docker/test-host): PrivateUsers off for Redis inside Docker.
TEST_HOST_REDIS_DROPIN = REPO / "docker" / "test-host" / "redis-server.service.d" / "test-host.conf"


def exposure(root: Path, unit: str) -> tuple[float, str]:
    """(overall exposure, full report) of `unit` under root, with its drop-ins."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed (apt-get install systemd)")
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1)), result.stdout


def failing(report: str) -> str:
    """The report's lines of settings that count against the unit, for an assertion message."""
    return "\n".join(line for line in report.splitlines() if line.startswith("✗"))


@pytest.fixture
def root(tmp_path):
    """A scratch root with every deploy template rendered (drop-ins included)."""
    subprocess.run([*RENDER, "--root", str(tmp_path)], check=True)
    return tmp_path


def with_debian_unit(root: Path, unit: str) -> None:
    """Copy the distribution's unit file under root, where its drop-ins find it."""
    shipped = DEBIAN_UNITS / unit
    if not shipped.exists():
        pytest.fail(f"{shipped} is missing: install the package that ships it (nginx, redis-server)")
    (root / "lib/systemd/system").mkdir(parents=True, exist_ok=True)
    shutil.copy(shipped, root / "lib/systemd/system" / unit)


def test_channels_stack_service_exposure_is_at_most_2(root):
    """Tests that the rendered channels-stack.service scores 2.0 or less (it was 6.4)."""
    score, report = exposure(root, "channels-stack.service")
    assert score <= MAX_EXPOSURE, failing(report)


@pytest.mark.parametrize("unit", ["nginx.service", "redis-server.service"])
def test_debian_unit_with_the_stack_drop_in_has_exposure_at_most_2(root, unit):
    """Tests that Debian's unit with the drop-in the role installs scores 2.0 or less."""
    assert (root / f"etc/systemd/system/{unit}.d/channels-stack.conf").exists()
    with_debian_unit(root, unit)
    score, report = exposure(root, unit)
    assert score <= MAX_EXPOSURE, failing(report)


def test_redis_exposure_stays_at_most_2_on_the_test_host(root):
    """Tests that Redis stays within 2.0 with the test host's drop-in too (PrivateUsers off in Docker)."""
    with_debian_unit(root, "redis-server.service")
    shutil.copy(TEST_HOST_REDIS_DROPIN, root / "etc/systemd/system/redis-server.service.d/test-host.conf")
    score, report = exposure(root, "redis-server.service")
    assert score <= MAX_EXPOSURE, failing(report)


def test_drop_ins_without_them_debian_nginx_is_unsafe(tmp_path):
    """Tests that the measurement can fail: Debian's nginx.service alone scores above 2.0 (9.6)."""
    with_debian_unit(tmp_path, "nginx.service")
    score, _ = exposure(tmp_path, "nginx.service")
    assert score > MAX_EXPOSURE


def test_nginx_drop_in_runs_the_master_unprivileged_with_the_pid_file_nginx_conf_names(root):
    """Tests that nginx.service starts Nginx as www-data with only CAP_NET_BIND_SERVICE, and gives
    www-data the pid file nginx.conf names before Nginx's own check opens it."""
    drop_in = (root / "etc/systemd/system/nginx.service.d/channels-stack.conf").read_text().splitlines()
    pid_lines = [line for line in (root / "etc/nginx/nginx.conf").read_text().splitlines() if line.startswith("pid ")]
    (pid_file,) = [line.removeprefix("pid ").rstrip(";") for line in pid_lines]
    assert "User=www-data" in drop_in
    assert "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" in drop_in
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in drop_in
    pre = [line for line in drop_in if line.startswith("ExecStartPre=")]
    assert pre[0] == "ExecStartPre="  # Debian's check is replaced, so it runs after the pid file is made
    assert pre[1:3] == [
        f"ExecStartPre=+/usr/bin/truncate --size=0 {pid_file}",
        f"ExecStartPre=+/bin/chown www-data:www-data {pid_file}",
    ]
    assert pre[3].startswith("ExecStartPre=/usr/sbin/nginx -t")
