"""Every WebSocket holds descriptors in an Nginx worker (client and upstream) and in a Daphne process:
the open-file limits the configs ask for must be the ones the running processes got, on both targets
(a container's processes cannot raise their hard limit, so docker-compose.yml's `ulimits` must allow
them; on a VM nginx.service's own limits must)."""

import re

import testinfra

# Each Nginx worker's "Max open files" line of /proc/PID/limits; the image has no procps.
NGINX_WORKER_LIMITS = (
    "for d in /proc/[0-9]*; do "
    'case "$(tr "\\000" " " < "$d/cmdline" 2>/dev/null)" in '
    '"nginx: worker process"*) grep "^Max open files" "$d/limits" ;; esac; done'
)


def configured(text: str, name: str) -> int:
    """The number an installed config sets `name` to (`name 123;` or `name = 123`)."""
    (value,) = re.findall(rf"^\s*{name}\s*=?\s*(\d+);?\s*$", text, flags=re.MULTILINE)
    return int(value)


def soft_and_hard(limits_line: str) -> tuple[int, int]:
    """(soft, hard) of a "Max open files  20000  20000  files" line."""
    soft, hard = limits_line.split()[3:5]
    return int(soft), int(hard)


def test_nginx_workers_run_with_the_open_file_limit_nginx_conf_sets(target):
    """Tests that every Nginx worker got worker_rlimit_nofile as its soft and hard limit (its setrlimit
    worked: the container's or the unit's hard limit allowed it)."""
    host = testinfra.get_host((target.nginx_host_spec or target.host_spec)())
    wanted = configured(host.file("/etc/nginx/nginx.conf").content_string, "worker_rlimit_nofile")
    lines = host.check_output(NGINX_WORKER_LIMITS).splitlines()
    assert lines, "no nginx worker process found"
    assert {soft_and_hard(line) for line in lines} == {(wanted, wanted)}


def test_daphne_may_open_as_many_files_as_supervisord_asks_for(app_host, target, supervisor, daphne_port):
    """Tests that each Daphne process's soft and hard open-file limits reach supervisord's minfds
    (app_max_open_files)."""
    port = daphne_port  # one run per Daphne process of the target (tests/e2e/conftest.py PER_TARGET)
    wanted = configured(app_host.file(target.supervisord_conf).content_string, "minfds")
    pid = supervisor.status()[f"daphne:daphne-{port}"].pid
    limits = app_host.file(f"/proc/{pid}/limits").content_string
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft, hard = soft_and_hard(line)
    assert soft >= wanted and hard >= wanted, f"daphne-{port}: {soft}:{hard} < minfds {wanted}"
