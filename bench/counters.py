"""Server-side counters of the transport comparison, read from the host: a container's network bytes
(its own namespace), its cgroup's CPU time, and the Nginx access log's requests.

- **Bytes**: `/proc/<pid>/net/dev` of a process inside the container lists the interfaces of the
  container's network namespace with the same counters as its `/sys/class/net/<iface>/statistics`
  (rx_bytes, tx_bytes: whole Ethernet frames, headers included, as the kernel's veth counts them).
  The Nginx container has one interface (the compose `edge` network) that carries both the clients'
  traffic and Nginx's to the app; the app container's interface on that network carries only the
  latter, so the clients' share is their difference (`client_bytes`).
- **CPU**: the container's cgroup, from `/proc/<pid>/cgroup`: cgroup v1 `cpuacct.usage`
  (nanoseconds) or v2 `cpu.stat` `usage_usec`; every process of the container, the ones started by
  `docker exec` included, user and system time.
- **Requests**: the compose Nginx writes its access log to the container's stdout
  (docker/deploy-vars.yml `nginx_access_log: /dev/stdout`); `docker logs --timestamps` gives each
  line with the time Docker read it, i.e. when Nginx finished the request. A WebSocket's line is
  written when it closes.

Parsing functions are pure (text in, numbers out) and unit-tested; the readers take a host PID.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class CounterError(Exception):
    """A counter that cannot be read; the message says which and why."""


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """{interface: (rx_bytes, tx_bytes)} from the text of /proc/net/dev (two header lines, then
    `iface: rx_bytes rx_packets ... tx_bytes ...`: 8 receive columns, then 8 transmit). Raises
    CounterError for a line that is not of that form."""
    found = {}
    for line in text.splitlines()[2:]:
        if not line.strip():
            continue
        name, _, columns = line.partition(":")
        values = columns.split()
        if not _ or len(values) < 16 or not all(v.isdigit() for v in values):
            raise CounterError(f"not a /proc/net/dev line: {line!r}")
        found[name.strip()] = (int(values[0]), int(values[8]))
    return found


def _hex_ipv4(value: str) -> ipaddress.IPv4Address:
    # /proc/net/route writes addresses as the kernel holds them: little-endian hex.
    return ipaddress.IPv4Address(bytes.fromhex(value)[::-1])


def interface_towards(route_text: str, address: str) -> str:
    """The interface of the directly connected route (no gateway) whose network holds `address`,
    from the text of /proc/net/route. Raises CounterError when none does."""
    target = ipaddress.IPv4Address(address)
    for line in route_text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        iface, destination, gateway, mask = fields[0], fields[1], fields[2], fields[7]
        if int(gateway, 16) != 0:
            continue
        network = ipaddress.IPv4Network(f"{_hex_ipv4(destination)}/{_hex_ipv4(mask)}", strict=False)
        if network.prefixlen > 0 and target in network:
            return iface
    raise CounterError(f"no directly connected route towards {address}")


def parse_cgroup_cpu_path(cgroup_text: str) -> tuple[str, str]:
    """("v1", path) from a `N:cpuacct...:/path` line of /proc/<pid>/cgroup, else ("v2", path) from
    its `0::/path` line. Raises CounterError when there is neither."""
    unified = None
    for line in cgroup_text.splitlines():
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if "cpuacct" in controllers.split(","):
            return "v1", path
        if number == "0" and controllers == "":
            unified = path
    if unified is None:
        raise CounterError("no cpuacct (v1) or unified (v2) line in /proc/<pid>/cgroup")
    return "v2", unified


def parse_cpu_stat_usec(text: str) -> int:
    """usage_usec of a cgroup v2 cpu.stat. Raises CounterError without one."""
    match = re.search(r"^usage_usec (\d+)$", text, re.MULTILINE)
    if not match:
        raise CounterError("cpu.stat has no usage_usec")
    return int(match.group(1))


def cgroup_cpu_seconds(pid: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> float:
    """CPU seconds (user + system) used so far by the cgroup of host process `pid`."""
    version, path = parse_cgroup_cpu_path((proc / str(pid) / "cgroup").read_text())
    relative = path.lstrip("/")
    if version == "v1":
        for mount in ("cpuacct", "cpu,cpuacct"):
            usage = root / mount / relative / "cpuacct.usage"
            if usage.exists():
                return int(usage.read_text()) / 1e9
        raise CounterError(f"no cpuacct.usage for cgroup {path}")
    return parse_cpu_stat_usec((root / relative / "cpu.stat").read_text()) / 1e6


def net_bytes(pid: int, proc: Path = PROC) -> dict[str, tuple[int, int]]:
    """{interface: (rx_bytes, tx_bytes)} in the network namespace of host process `pid`."""
    return parse_net_dev((proc / str(pid) / "net" / "dev").read_text())


def iface_towards(pid: int, address: str, proc: Path = PROC) -> str:
    """The interface of host process `pid`'s namespace on the network that holds `address`."""
    return interface_towards((proc / str(pid) / "net" / "route").read_text(), address)


# The request kinds the comparison tells apart, by the access log's "$request" (method and URI).
REQUEST_KINDS = (
    ("longpoll", re.compile(r"^GET /api/messages/wait[?\s]")),
    ("poll", re.compile(r"^GET /api/messages[?\s]")),
    ("post", re.compile(r"^POST /api/messages[?\s]")),
    ("websocket", re.compile(r"^GET /ws/board/[?\s]")),
)
_LOG_LINE = re.compile(r'^(\S+) - \[[^]]*\] "([^"]*)" (\d{3}) ')


def parse_docker_time(stamp: str) -> float:
    """Seconds since the epoch of a `docker logs --timestamps` stamp (RFC 3339, nanoseconds, Z)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not match:
        raise CounterError(f"not a docker log timestamp: {stamp!r}")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    whole = datetime.fromisoformat(match.group(1) + zone).timestamp()
    return whole + float(match.group(2) or 0)


def count_requests(log_text: str, start: float, end: float) -> dict:
    """Requests in an access log (`docker logs --timestamps` of the Nginx container: the stamp, then
    the line of deploy/nginx/nginx.conf.j2's `main` format) finished within [start, end] (epoch
    seconds): {"total", "by_kind": {kind: n} (REQUEST_KINDS, "other"), "by_status": {status: n}}.
    Lines that are not access log lines (the error log, the upstream watcher) are skipped, and so are
    requests from loopback: the container's own health probe (docker/nginx/healthcheck.sh), no client's."""
    kinds: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for line in log_text.splitlines():
        stamp, _, rest = line.partition(" ")
        match = _LOG_LINE.match(rest)
        if not match:
            continue
        try:
            when = parse_docker_time(stamp)
        except CounterError:
            continue
        if not start <= when <= end or match.group(1).startswith("127."):
            continue
        request = match.group(2)
        kind = next((name for name, pattern in REQUEST_KINDS if pattern.match(request + " ")), "other")
        kinds[kind] += 1
        statuses[match.group(3)] += 1
    return {"total": sum(kinds.values()), "by_kind": dict(kinds), "by_status": dict(statuses)}


def container_log(container: str, since: float, until: float) -> str:
    """`docker logs --timestamps` of `container` between two epoch times (stdout and stderr)."""
    result = subprocess.run(
        ["docker", "logs", "--timestamps", "--since", f"{since:.3f}", "--until", f"{until:.3f}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CounterError(f"docker logs {container}: {result.stderr.strip()}")
    return result.stdout + result.stderr
