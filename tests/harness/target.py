"""Target: one deployed stack under test, whatever its kind. Subclasses: ComposeTarget, VmTarget.

A target owns its whole life in the tests: bring-up (up) and removal (down), its logs (save_logs),
inspection (programs from the deploy variables, PIDs, logs, testinfra hosts) and the faults the faults
suite does to it (stop Redis, reload Nginx, reboot, stop and start the stack, leftovers, restore).
Subclasses say how for their kind; what the tests assert is the same for every kind.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import testinfra

from . import deploy
from .programs import STAT_FIELDS, ProgramState, Supervisor, app_processes, parse_status, processes
from .site import Site, unhealthy_probes
from .waiting import wait_until

# Every program RUNNING and the site healthy again (a reboot, a stack brought up again).
WHOLE_SECONDS = 180
# Commands run on the hosts (docker exec) or on this machine.
COMMAND_SECONDS = 120


def run(command: list[str], timeout: float = COMMAND_SECONDS, env: dict | None = None, cwd: Path = deploy.REPO) -> str:
    """Runs a command on this machine from the repository root; its stdout, or RuntimeError with its stderr."""
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


class Target:
    """A deployed stack: its Nginx on 127.0.0.1:https_port (HTTPS, when the variables' nginx_tls is on)
    and 127.0.0.1:http_port (plain HTTP: the health probes, else a redirect to HTTPS), and its deploy
    variables.

    Class attributes a subclass sets: kind ("compose", "vm"), bind_host (where Gunicorn and Daphne
    listen on the app host), redis_host (Redis as the app host reaches it), reload_methods and
    stop_methods (the ways the faults suite reloads Nginx and stops the stack), as_app_user (command
    prefix that runs as the app user on the app host), supervisord_keeper (what restarts supervisord,
    for the faults table).
    """

    kind = ""
    bind_host = "127.0.0.1"
    redis_host = "127.0.0.1"
    # PID 1 names that count as a proper init for supervisord to run under.
    init_names: tuple[str, ...] = ("tini", "docker-init", "systemd", "init")
    reload_methods: tuple[str, ...] = ("nginx -s reload",)
    stop_methods: tuple[str, ...] = ("supervisorctl stop all",)
    as_app_user = ""
    supervisord_keeper = ""
    # How a developer starts this kind by hand.
    start_hint = ""
    # compose only: the compose command with its project; () elsewhere.
    compose: tuple[str, ...] = ()

    def __init__(self, http_port: int, variables: dict, https_port: int | None = None):
        self.http_port = http_port
        self.https_port = https_port
        # The deploy variables the stack is rendered with (harness.deploy).
        self.variables = variables

    @property
    def name(self) -> str:
        """The --target name of this kind."""
        return self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.base_url}>"

    # --- life -------------------------------------------------------------------------------------
    def up(self) -> None:
        """Creates the stack afresh (removing a leftover of an earlier run) and returns once it serves."""
        self.down()
        self.provision()

    def provision(self) -> None:
        """Brings the stack up, keeping what exists (`make up`, `make vm`); RuntimeError when it fails.
        Records the steps' wall times (timings())."""
        raise NotImplementedError

    def down(self) -> None:
        """Removes the stack and its data; no error when there is none."""
        raise NotImplementedError

    def save_logs(self, directory: Path) -> list[Path]:
        """Writes the stack's logs under directory; the files written (none when the stack is gone)."""
        raise NotImplementedError

    def is_up(self) -> bool:
        """True when the stack exists and its Nginx answers."""
        raise NotImplementedError

    def attach(self) -> None:
        """Uses the running stack as it is; RuntimeError naming how to start it when it is not up."""
        if not self.is_up():
            raise RuntimeError(
                f"{self!r} is not running: start it with `{self.start_hint}`, or run the tests with --fresh"
            )

    def timings(self) -> dict[str, float]:
        """Wall times (seconds) of the steps of the last up(), by step."""
        return getattr(self, "_timings", {})

    # --- what it is -------------------------------------------------------------------------------
    @property
    def tls(self) -> bool:
        """Whether Nginx serves the site over HTTPS (nginx_tls of the deploy variables)."""
        return bool(self.variables.get("nginx_tls"))

    @property
    def base_url(self) -> str:
        """The site on this machine as a browser opens it, e.g. https://127.0.0.1:8443, or
        http://127.0.0.1:8080 without TLS (no trailing slash). Clients trust harness.tls.ca_file()."""
        if self.tls:
            return f"https://127.0.0.1:{self.https_port}"
        return self.http_url

    @property
    def http_url(self) -> str:
        """Nginx's plain-HTTP port on this machine, e.g. http://127.0.0.1:8080: the health probes, and
        with TLS a redirect to base_url for everything else."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def public_url(self) -> str:
        """Where a developer's browser reaches the stack (`make up`, `make vm`, `make cluster` print it)."""
        return self.base_url

    @property
    def ws_url(self) -> str:
        """base_url with the WebSocket scheme (wss:// with TLS)."""
        scheme, _, rest = self.base_url.partition("://")
        return ("wss" if scheme == "https" else "ws") + "://" + rest

    @property
    def host_origin(self) -> str:
        """The Origin a browser on this site sends."""
        return self.base_url

    @property
    def mode(self) -> str:
        """deploy_mode of the variables: "split", "asgi" or "wsgi" (which servers run)."""
        return deploy.mode(self.variables)

    @property
    def http_interface(self) -> str:
        """Which interface answers pages, the API and app_health_path: "asgi" or "wsgi" (harness.deploy)."""
        return deploy.http_interface(self.variables)

    @property
    def app_user(self) -> str:
        return self.variables["app_user"]

    @property
    def app_venv(self) -> str:
        return self.variables["app_venv"]

    @property
    def app_config_dir(self) -> str:
        return self.variables["app_config_dir"]

    @property
    def gunicorn_port(self) -> int:
        return self.variables["gunicorn_port"]

    @property
    def daphne_ports(self) -> tuple[int, ...]:
        return deploy.daphne_ports(self.variables)

    @property
    def workers(self) -> tuple[str, ...]:
        return deploy.workers(self.variables)

    @property
    def programs(self) -> tuple[str, ...]:
        """Every supervisor program (group:name) the stack runs."""
        return deploy.programs(self.variables)

    @property
    def python(self) -> str:
        return f"{self.app_venv}/bin/python"

    @property
    def supervisorctl_path(self) -> str:
        return f"{self.app_venv}/bin/supervisorctl"

    @property
    def supervisord_conf(self) -> str:
        return f"{self.app_config_dir}/supervisord.conf"

    @property
    def supervisorctl(self) -> str:
        """The command line that controls the programs, run on the app host."""
        return f"{self.supervisorctl_path} -c {self.supervisord_conf}"

    # --- inspection -------------------------------------------------------------------------------
    def host_spec(self) -> str:
        """testinfra host spec of the machine or container running supervisord, e.g. docker://<id>
        (asked each time: restarting a compose stack recreates its containers)."""
        raise NotImplementedError

    def nginx_host_spec(self) -> str:
        """testinfra host spec of where Nginx runs."""
        return self.host_spec()

    def app_host(self):
        """A fresh testinfra host of the app (a restarted stack may have new containers)."""
        return testinfra.get_host(self.host_spec())

    def nginx_host(self):
        return testinfra.get_host(self.nginx_host_spec())

    def supervisor(self) -> Supervisor:
        return Supervisor(self.app_host(), self.supervisorctl)

    def site(self) -> Site:
        return Site(self)

    def healthy(self) -> bool:
        """Every health path of the mode healthy through Nginx (harness.deploy.health_paths)."""
        return not self.unhealthy_probes()

    def unhealthy_probes(self) -> dict[str, str]:
        """The variables' health paths that do not answer 200 "ok" through Nginx, each with its answer."""
        return unhealthy_probes(self.base_url, paths=deploy.health_paths(self.variables))

    def program_states(self) -> dict[str, ProgramState]:
        """name -> ProgramState (state, pid, start ticks); {} while supervisord does not answer."""
        try:
            return self.supervisor().states_with_starts()
        except Exception:  # noqa: BLE001 (container gone or restarting: "no answer")
            return {}

    def program_pids(self) -> dict[str, int]:
        """group:name -> PID of every supervisor program, once each one is RUNNING and self.programs are
        among them (the stack may run more, e.g. an event listener); {} until then."""
        states = parse_status(self.supervisor().ctl("status").stdout)
        ok = states and all(s.state == "RUNNING" for s in states.values()) and set(self.programs) <= set(states)
        return {name: state.pid for name, state in states.items()} if ok else {}

    def all_running(self) -> bool:
        """Every program of self.programs RUNNING."""
        status = self.supervisor().status()
        return all(name in status and status[name].state == "RUNNING" for name in self.programs)

    def restore_programs(self, timeout: float) -> None:
        """After a test that stopped or killed programs: start every program of self.programs that is
        not RUNNING, then wait (up to `timeout` seconds each) until all are RUNNING and both tiers are
        healthy through Nginx; TimedOut otherwise."""
        supervisor = self.supervisor()
        status = supervisor.status()
        stopped = [name for name in self.programs if name not in status or status[name].state != "RUNNING"]
        if stopped:
            supervisor.start(*stopped)
        wait_until(self.all_running, timeout, "every program RUNNING after the test")
        wait_until(self.healthy, timeout, "site healthy through Nginx after the test")

    def whole(self) -> bool:
        """Every program RUNNING and both tiers healthy through Nginx."""
        states = self.program_states()
        if not states or any(states.get(name, ("MISSING", 0))[0] != "RUNNING" for name in self.programs):
            return False
        return self.healthy()

    def wait_whole(self, timeout: float = WHOLE_SECONDS) -> None:
        wait_until(self.whole, timeout, f"{self.name}: every program RUNNING and the site healthy", 1)

    def app_log_streams(self) -> dict[str, list[str]]:
        """The app's programs' log streams (Gunicorn, Daphne, workers) so far, by name; a stream only grows."""
        raise NotImplementedError

    def app_log_lines(self, needle: str) -> list[str]:
        """Lines of the programs' logs (since the host was made) that contain needle."""
        return [line for lines in self.app_log_streams().values() for line in lines if needle in line]

    def nginx_access_lines(self) -> list[str]:
        """Nginx's access log so far (nginx_access_log of the deploy variables)."""
        raise NotImplementedError

    def run_as_app_user(self, command: str):
        return self.app_host().run(f"{self.as_app_user}{command}")

    def exec_prefix(self) -> list[str]:
        """The command line that runs a command on the app host with its stdin and stdout kept open to
        this machine (testinfra's run() waits for the end)."""
        spec = self.host_spec()
        assert spec.startswith("docker://"), spec
        return ["docker", "exec", "--interactive", spec.removeprefix("docker://")]

    def established_connections(self, port: int) -> set[str]:
        """The peers ("hex address:hex port", as the kernel lists them) of every established TCP
        connection to `port` on the app host, from /proc/net/tcp and tcp6 (no ss in the images)."""
        result = self.app_host().run("cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; true")
        peers = set()
        for line in result.stdout.splitlines():
            fields = line.split()
            # sl local_address rem_address st ...; state 01 is ESTABLISHED.
            if len(fields) > 3 and fields[3] == "01" and fields[1].rpartition(":")[2] == f"{port:04X}":
                peers.add(fields[2])
        return peers

    # --- faults -----------------------------------------------------------------------------------
    def restart_stack(self) -> None:
        """Stops and starts the whole stack, data kept; returns when it is healthy again."""
        raise NotImplementedError

    def stop_redis(self) -> None:
        raise NotImplementedError

    def start_redis(self) -> None:
        raise NotImplementedError

    def nginx_workers(self) -> set[int]:
        return {p.pid for p in processes(self.nginx_host()) if p.args.startswith("nginx: worker process")}

    def reload_nginx(self, method: str) -> None:
        """Tells Nginx to reload its configuration by `method` (one of reload_methods)."""
        if method != "nginx -s reload":
            raise ValueError(method)
        result = self.nginx_host().run("nginx -s reload")
        assert result.rc == 0, result.stderr

    def supervisord_pid(self) -> int:
        return int(self.supervisor().ctl("pid").stdout.strip())

    def supervisord_process(self) -> tuple[int, int]:
        """supervisord's (pid, start ticks): a restarted container may give it the same pid again."""
        pid = self.supervisord_pid()
        result = self.app_host().run(STAT_FIELDS.replace("$pid", str(pid)) + ' | cut -d" " -f2')
        return pid, int(result.stdout.strip() or 0)

    def supervisord_restarts(self) -> int:
        """How often the keeper of supervisord (systemd, the container runtime) restarted it."""
        raise NotImplementedError

    def reboot(self) -> None:
        """Restarts the machine / every container; returns when they run again (not yet healthy)."""
        raise NotImplementedError

    def stop_stack(self, method: str) -> None:
        """Stops every program (or the whole stack) by `method` (one of stop_methods)."""
        if method != "supervisorctl stop all":
            raise ValueError(method)
        result = self.supervisor().ctl("stop", "all")
        assert result.rc == 0, result.stdout + result.stderr

    def start_stack(self, method: str) -> None:
        if method != "supervisorctl stop all":
            raise ValueError(method)
        self.supervisor().ctl("start", "all")

    def leftovers(self, method: str) -> list[str]:
        """What is still running of the app after stop_stack(method): should be nothing."""
        if method != "supervisorctl stop all":
            raise ValueError(method)
        return [f"{p.pid} {p.args}" for p in app_processes(self.app_host())]

    def services_down(self) -> list[str]:
        """The stack's services (compose services, systemd units) that are not running: should be none."""
        raise NotImplementedError

    def restore(self) -> None:
        """After a test, whatever it did: the stack up, every program RUNNING, the site healthy."""
        raise NotImplementedError

    def start_stopped_programs(self) -> None:
        """Starts every program that is not RUNNING."""
        supervisor = self.supervisor()
        for name, program in supervisor.status().items():
            if program.state != "RUNNING":
                supervisor.start(name)
