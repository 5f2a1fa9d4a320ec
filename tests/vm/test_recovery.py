"""Recovery without Ansible: systemd restarts a killed supervisord with every program, and a reboot
of the host brings the whole stack back. The reboot test comes last: it restarts the container."""

import subprocess
import time

from harness.waiting import wait_until

# systemd restarts supervisord RestartSec (2 s) after it died; its programs need startsecs (3 s).
SUPERVISORD_RECOVERY_SECONDS = 30
# After recovery the PIDs must stay the same this long: a crash loop would change them.
STABLE_SECONDS = 5
BOOT_SECONDS = 120


def unit_state(vm, host) -> tuple[int, int]:
    """(NRestarts, MainPID) of the app's unit."""
    properties = host.service(vm.unit).systemd_properties
    return int(properties["NRestarts"]), int(properties["MainPID"])


def test_sigkilled_supervisord_is_restarted_by_systemd_with_every_program(host, vm):
    """Tests that after SIGKILL of supervisord systemd starts a new one (NRestarts grows) and every
    program is RUNNING again with a new PID, and the site serves."""
    restarts, main_pid = unit_state(vm, host)
    before = vm.program_pids()
    assert before and main_pid > 0

    assert host.run(f"kill -KILL {main_pid}").rc == 0
    start = time.monotonic()
    wait_until(lambda: unit_state(vm, host)[0] == restarts + 1, SUPERVISORD_RECOVERY_SECONDS, "NRestarts + 1")
    after = wait_until(vm.program_pids, SUPERVISORD_RECOVERY_SECONDS, "every program RUNNING")
    wait_until(vm.healthy, SUPERVISORD_RECOVERY_SECONDS, "site healthy through Nginx")
    print(f"supervisord killed: stack back in {time.monotonic() - start:.1f} s")

    samples = vm.pid_samples(STABLE_SECONDS)

    assert unit_state(vm, host)[1] not in (0, main_pid)
    assert sorted(after) == sorted(before)
    assert [name for name in before if after[name] == before[name]] == [], "program PIDs unchanged"
    assert samples == [after] * len(samples), f"not stable after recovery: {after} then {samples}"


def test_reboot_brings_the_stack_back_without_ansible(host, vm):
    """Tests that after a reboot of the host (container restart, systemd booting again) Redis, the
    programs and Nginx start by themselves and the site serves."""
    start = time.monotonic()
    subprocess.run(["docker", "restart", "--time", "60", vm.container], check=True, capture_output=True, timeout=180)

    wait_until(vm.healthy, BOOT_SECONDS, "site healthy through Nginx after the reboot")
    after = wait_until(vm.program_pids, BOOT_SECONDS, "every program RUNNING")
    print(f"reboot: site healthy {time.monotonic() - start:.1f} s after `docker restart` began")

    # PIDs start over in a rebooted container, so PID 1's age is what shows the reboot happened.
    assert int(host.run("ps -o etimes= -p 1").stdout) <= time.monotonic() - start
    assert [name for name in ("redis-server", "nginx", vm.unit) if not host.service(name).is_running] == []
    samples = vm.pid_samples(STABLE_SECONDS)
    assert samples == [after] * len(samples), f"not stable after the reboot: {after} then {samples}"
