"""ClusterTarget: five systemd test hosts on one private Docker network (issue 11), provisioned by
ansible/site.yml with the local-cluster inventory, whose host groups place each component:

    lb     Nginx, the load balancer (published on 127.0.0.1:http_port for `make cluster`)
    app1   Gunicorn, Daphne x daphne_processes, workers (supervisor)
    app2   the same
    redis  the Redis primary; a Sentinel
    db     PostgreSQL; the Redis replica; a Sentinel      (the third Sentinel is on lb)

Each host is VmTarget's test host (harness.vm.start_test_host) given a fixed address on the network,
so the inventory's private addresses are known before the hosts exist. The tests talk to lb's
private address, not the published port: Docker's userland proxy would make every client the
bridge gateway. The Target methods that act on "the app host" act on app1; the others are
reached by name (host(), supervisor_on(), ...).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import testinfra

from . import deploy
from .programs import Supervisor
from .site import healthy
from .target import Target, run
from .vm import (
    BOOT_SECONDS,
    booted,
    build_test_host_image,
    container_exists,
    run_playbook,
    snapshot_source,
    start_test_host,
)
from .waiting import wait_until

INVENTORY = deploy.REPO / "ansible" / "inventories" / "local-cluster"
# Host name -> last octet of its address on the network (ansible/inventories/local-cluster/hosts.yml).
HOSTS = {"lb": 10, "app1": 11, "app2": 12, "redis": 13, "db": 14}
APP_HOSTS = ("app1", "app2")
# The drop-in kill_redis_primary() leaves on the host (under /run: gone at the next boot too).
KEPT_DOWN = Path("/run/systemd/system/redis-server.service.d/kept-down.conf")


class ClusterTarget(Target):
    """The cluster `name` (containers <name>-lb, <name>-app1, ...; network <name>) on the network
    <net>.0/24 (net: its first three octets, e.g. "10.82.82"), lb published on 127.0.0.1:http_port,
    deployed with the deploy variables file vars_file (--extra-vars; None: the inventory's)."""

    kind = "cluster"
    as_app_user = "runuser -u channels -- "
    supervisord_keeper = "systemd Restart=always"
    start_hint = "make cluster"

    def __init__(self, name: str, net: str, http_port: int, vars_file: str | None = None):
        super().__init__(http_port, deploy.cluster_vars(vars_file))
        self.cluster = name
        self.net = net
        self.vars_file = vars_file
        self.app_source: Path = deploy.REPO
        self.service = self.variables["app_name"]

    def __repr__(self) -> str:
        return f"<ClusterTarget {self.cluster} {self.net}.0/24 port {self.http_port}>"

    # --- names ------------------------------------------------------------------------------------
    def container(self, host: str) -> str:
        return f"{self.cluster}-{host}"

    def address(self, host: str) -> str:
        """The host's private address, e.g. 10.82.82.11 for app1."""
        return f"{self.net}.{HOSTS[host]}"

    def host_of(self, address: str) -> str:
        """The host name ("app1") of a private address; ValueError for another one."""
        for host in HOSTS:
            if self.address(host) == address:
                return host
        raise ValueError(f"{address} is no host of {self.cluster}")

    @property
    def base_url(self) -> str:
        return f"http://{self.address('lb')}"

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # --- life -------------------------------------------------------------------------------------
    def up(self) -> None:
        self.down()
        self.app_source = snapshot_source(self.cluster, self.variables)
        self.provision()

    def provision(self) -> None:
        started = time.monotonic()
        build_test_host_image()
        self.create_network()
        for host in HOSTS:
            publish = [f"127.0.0.1:{self.http_port}:80"] if host == "lb" else []
            start_test_host(self.container(host), publish, self.cluster, self.address(host), wait=False)
        self.wait_booted()
        self._timings = {"creating the five hosts": time.monotonic() - started}
        result = self.run_playbook()
        self._timings["the playbook's first run"] = result.seconds
        if result.returncode != 0:
            raise RuntimeError(f"the playbook failed on {self.cluster}:\n{result.output[-6000:]}")

    def create_network(self) -> None:
        if not run(["docker", "network", "ls", "--quiet", "--filter", f"name=^{self.cluster}$"]):
            run(["docker", "network", "create", "--subnet", f"{self.net}.0/24", self.cluster])

    def wait_booted(self, hosts=tuple(HOSTS)) -> None:
        for host in hosts:
            container = self.container(host)
            wait_until(lambda c=container: booted(c), BOOT_SECONDS, f"{container}: systemd booted", 1)

    def run_playbook(self, *args: str, playbook: str = "site.yml", app_source: Path | None = None):
        """Runs ansible/<playbook> over the cluster with the release app_source (default: the one it
        was brought up with); harness.vm.PlaybookRun, whose recap is lb's."""
        env = {"CLUSTER_NAME": self.cluster, "CLUSTER_NET": self.net}
        source = app_source or self.app_source
        return run_playbook(INVENTORY, env, source, self.vars_file, args, "lb", playbook)

    def down(self) -> None:
        containers = [self.container(host) for host in HOSTS if container_exists(self.container(host))]
        if containers:
            run(["docker", "rm", "--force", "--volumes", *containers])
        if run(["docker", "network", "ls", "--quiet", "--filter", f"name=^{self.cluster}$"]):
            run(["docker", "network", "rm", self.cluster])

    def is_up(self) -> bool:
        running = run(["docker", "ps", "--quiet", "--filter", f"name=^{self.cluster}-"]).split()
        return len(running) == len(HOSTS) and healthy(self.base_url)

    def save_logs(self, directory: Path) -> list[Path]:
        saved = []
        directory.mkdir(parents=True, exist_ok=True)
        for host in HOSTS:
            container = self.container(host)
            if not container_exists(container) or not self.host_running(host):
                continue
            path = directory / f"{container}-journal.txt"
            path.write_text(self.host(host).run("journalctl --no-pager -o short-precise").stdout)
            saved.append(path)
            logs = directory / f"{container}-logs.txt"
            logs.write_text(
                self.host(host)
                .run("tail -n +1 /var/log/channels-stack/*.log /var/log/nginx/error.log /var/log/redis/*.log 2>&1")
                .stdout
            )
            saved.append(logs)
        return saved

    # --- inspection -------------------------------------------------------------------------------
    def host_spec(self, host: str = "app1") -> str:
        return f"docker://{self.container(host)}"

    def nginx_host_spec(self) -> str:
        return self.host_spec("lb")

    def host(self, name: str):
        """testinfra host of one of the five hosts."""
        return testinfra.get_host(self.host_spec(name))

    def host_running(self, host: str) -> bool:
        return bool(run(["docker", "ps", "--quiet", "--filter", f"name=^{self.container(host)}$"]))

    def supervisor_on(self, host: str) -> Supervisor:
        return Supervisor(self.host(host), self.supervisorctl)

    def whole(self) -> bool:
        """Every program RUNNING on both app hosts and both tiers healthy through the load balancer."""
        for host in APP_HOSTS:
            try:
                status = self.supervisor_on(host).status()
            except Exception:  # noqa: BLE001 (a host still booting: not whole yet)
                return False
            if any(name not in status or status[name].state != "RUNNING" for name in self.programs):
                return False
        return self.healthy()

    def app_log_streams(self) -> dict[str, list[str]]:
        streams = {}
        for host in APP_HOSTS:
            if not self.host_running(host):
                continue
            machine = self.host(host)
            for name in machine.run(f"ls {self.variables['app_log_dir']}/*.log").stdout.split():
                streams[f"{host}:{name}"] = machine.file(name).content_string.splitlines()
        return streams

    def nginx_access_lines(self) -> list[str]:
        return self.host("lb").file(self.variables["nginx_access_log"]).content_string.splitlines()

    def redis_cli(self, host: str, *command: str, port: int | None = None, sentinel: bool = False) -> str:
        """redis-cli on `host` as the Sentinels' ACL user on a data node (sentinel=False) or against its
        Sentinel (sentinel=True), passwords read on the host from the files that hold them; its stdout."""
        if sentinel:
            port = port or self.variables["redis_sentinel_port"]
            auth = "REDISCLI_AUTH=$(awk '$1 == \"requirepass\" {print $2}' /etc/redis/channels-stack-sentinel.conf)"
            user = ""
        else:
            port = port or self.variables["redis_port"]
            monitor = "channels-stack-sentinel"  # the redis role's redis_monitor_user
            password = f"awk '$2 == \"{monitor}\" {{print substr($NF, 2)}}' /etc/redis/channels-stack-auth.conf"
            auth = f"REDISCLI_AUTH=$({password})"
            user = f"--user {monitor} "
        result = self.host(host).run(f"{auth} redis-cli {user}-p {port} {' '.join(command)}")
        assert result.rc == 0, f"redis-cli on {host}: {result.stderr}"
        return result.stdout.strip()

    # --- faults -----------------------------------------------------------------------------------
    def stop_host(self, host: str, seconds: int = 30) -> None:
        """Shuts the host down (docker stop: systemd stops every service in order, as a VM's poweroff)."""
        run(["docker", "stop", "--time", str(seconds), self.container(host)], timeout=seconds + 60)

    def start_host(self, host: str) -> None:
        """Boots a stopped host again; returns once systemd has booted (not yet healthy)."""
        run(["docker", "start", self.container(host)])
        self.wait_booted((host,))

    def kill_redis_primary(self, host: str = "redis") -> None:
        """SIGKILLs the Redis on `host` and keeps it down (systemd would restart it at once, and the
        primary would be back before Sentinel's down-after time): a runtime drop-in turns Restart off."""
        result = self.host(host).run(
            f"mkdir -p {KEPT_DOWN.parent} && printf '[Service]\\nRestart=no\\n' > {KEPT_DOWN}"
            " && systemctl daemon-reload && systemctl kill --signal=SIGKILL redis-server"
        )
        assert result.rc == 0, result.stderr

    def restore(self) -> None:
        stopped = [host for host in HOSTS if not self.host_running(host)]
        for host in stopped:
            run(["docker", "start", self.container(host)])
        self.wait_booted(stopped)
        for host in ("redis", "db"):
            # A killed primary comes back; Sentinel makes it a replica of the one it promoted.
            unit = subprocess.run(
                ["docker", "exec", self.container(host), "sh", "-c",
                 f"rm -f {KEPT_DOWN} && systemctl daemon-reload && systemctl start redis-server"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            assert unit.returncode == 0, unit.stderr
        self.wait_whole()
