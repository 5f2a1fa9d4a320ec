"""The units' sandboxes on the provisioned test host (issue 12): `systemd-analyze security` of each unit
the stack installs, as systemd loaded it with every drop-in (the test host's own too), is at most 2.0,
and Nginx runs with no process as root. The rest of the VM tier runs the stack under them."""

import re

import pytest
from harness.deploy import vm_vars

DEPLOY = vm_vars()
UNIT = f"{DEPLOY['app_name']}.service"

MAX_EXPOSURE = 2.0


@pytest.mark.parametrize("unit", [UNIT, "nginx.service", "redis-server.service"])
def test_unit_exposure_is_at_most_2_as_loaded(host, unit):
    """Tests that the running unit, with its drop-ins, scores 2.0 or less in `systemd-analyze security`."""
    result = host.run(f"systemd-analyze security --no-pager {unit}")
    found = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    failing = "\n".join(line for line in result.stdout.splitlines() if line.startswith("✗"))
    assert float(found.group(1)) <= MAX_EXPOSURE, failing


def test_no_nginx_process_runs_as_root(host):
    """Tests that the Nginx master, not only its workers, runs as www-data, listening all the same."""
    users = host.check_output("ps -o user= -C nginx").split()
    assert users and set(users) == {"www-data"}, users
    assert host.socket(f"tcp://0.0.0.0:{DEPLOY['nginx_listen_port']}").is_listening


def test_nginx_master_has_only_the_capability_to_bind_port_80(host):
    """Tests the master's effective and bounding capability sets: cap_net_bind_service and nothing else."""
    pid = host.check_output("cat /run/nginx.pid")
    status = host.file(f"/proc/{pid}/status").content_string
    caps = {name: int(value, 16) for name, value in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.MULTILINE)}
    net_bind_service = 1 << 10
    assert caps["CapEff"] == net_bind_service and caps["CapBnd"] == net_bind_service, caps
