"""What the faults suite does to a target beyond its site and its supervisor programs: the machine
or containers around the app (Redis, Nginx, supervisord, the init that keeps it running, reboots,
stops).

One class per target kind; the tests call the same methods on both, so a fault is described once.
The shared plumbing (Target, Site, Supervisor, wait_until) comes from tests/e2e.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass

import testinfra
from e2e.stack import Site, Supervisor, wait_until
from e2e.targets import REPO, Target, _compose_command

# Every program RUNNING and the site healthy again (a reboot, a stack brought up again).
WHOLE_SECONDS = 180
# Commands run on the hosts (docker exec) or on this machine.
COMMAND_SECONDS = 120
# Programs of the app that must not outlive a stop (matched in their command lines).
APP_PROCESS_MARKERS = ("gunicorn", "daphne", "runworker", "ops.fatal_retry")
SUPERVISOR_STATES = {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}


def run(command: list[str], timeout: float = COMMAND_SECONDS, env: dict | None = None) -> str:
    """Run a command on this machine; its stdout, or RuntimeError with its stderr."""
    result = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=timeout, cwd=REPO, env=env or dict(os.environ)
    )
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    uid: int
    # Start time in clock ticks since the kernel booted: with the pid, it names a process even
    # across container restarts, where the same pids come back.
    start: int
    args: str


# Fields of /proc/<pid>/stat after "pid (comm) ", which may itself hold spaces: 2 = ppid, 20 = starttime.
STAT_FIELDS = 'sed "s/.*) //" "/proc/$pid/stat" 2>/dev/null | cut -d" " -f2,20'


def processes(host) -> list[Process]:
    """Every process on a testinfra host, read from /proc (the Nginx image has no ps)."""
    script = (
        "for d in /proc/[0-9]*; do pid=${d#/proc/}; "
        f"stat=$({STAT_FIELDS}); "
        'uid=$(awk "/^Uid:/ {print \\$2}" "$d/status" 2>/dev/null); '
        'args=$(tr "\\0" " " < "$d/cmdline" 2>/dev/null); '
        '[ -n "$args" ] && [ -n "$stat" ] && printf "%s %s %s %s\\n" "$pid" "$stat" "$uid" "$args"; '
        "done; true"
    )
    result = host.run(script)
    found = []
    for line in result.stdout.splitlines():
        pid, ppid, start, uid, args = line.split(" ", 4)
        found.append(Process(int(pid), int(ppid), int(uid), int(start), args.strip()))
    return found


def app_processes(host) -> list[Process]:
    """The app's program processes (Gunicorn, Daphne, workers, the fatal-retry listener)."""
    return [p for p in processes(host) if any(marker in p.args for marker in APP_PROCESS_MARKERS)]


class Stack:
    """A target and what can be done to it. Subclasses: ComposeStack, VmStack."""

    # How Nginx is told to reload its configuration; how the whole stack is stopped.
    reload_methods: tuple[str, ...] = ()
    stop_methods: tuple[str, ...] = ()
    # Command prefix that runs a command as the app user on the app host.
    as_app_user: str = ""
    # What restarts supervisord when it dies, for the report.
    supervisord_keeper: str = ""

    def __init__(self, target: Target):
        self.target = target

    # --- the app host ---------------------------------------------------------------------
    def app_host(self):
        """A fresh testinfra host (a restarted stack may have new containers)."""
        return testinfra.get_host(self.target.host_spec())

    def supervisor(self) -> Supervisor:
        return Supervisor(self.target, self.app_host())

    def site(self) -> Site:
        return Site(self.target)

    def program_states(self) -> dict[str, tuple[str, int, int]]:
        """name -> (state, pid, start time in ticks); {} while supervisord does not answer.

        The start time tells a restarted program from the old one even where pids repeat (a
        restarted container numbers its processes from 1 again).
        """
        ctl = self.target.supervisorctl
        script = (
            f'out=$({ctl} status); printf "%s\\n---\\n" "$out"; '
            'echo "$out" | awk \'$3 == "pid" { sub(",", "", $4); print $4 }\' | '
            f'while read -r pid; do printf "%s %s\\n" "$pid" "$({STAT_FIELDS} | cut -d" " -f2)"; done'
        )
        try:
            result = self.app_host().run(script)
        except Exception:  # noqa: BLE001 (container gone or restarting: "no answer")
            return {}
        status, _, starts = result.stdout.partition("\n---\n")
        start_of = {}
        for line in starts.splitlines():
            pid, _, start = line.partition(" ")
            start_of[int(pid)] = int(start) if start.strip().isdigit() else 0
        states = {}
        for line in status.splitlines():
            fields = line.split()
            if len(fields) < 2 or fields[1] not in SUPERVISOR_STATES:
                continue
            pid = int(fields[3].rstrip(",")) if len(fields) > 3 and fields[2] == "pid" else 0
            states[fields[0]] = (fields[1], pid, start_of.get(pid, 0))
        return states

    def whole(self) -> bool:
        """Every program RUNNING and both tiers healthy through Nginx."""
        states = self.program_states()
        if not states or any(states.get(name, ("MISSING", 0))[0] != "RUNNING" for name in self.target.programs):
            return False
        return self.site().healthy()

    def wait_whole(self, timeout: float = WHOLE_SECONDS) -> None:
        wait_until(self.whole, timeout, f"{self.target.name}: every program RUNNING and the site healthy", 1)

    def app_log_lines(self, needle: str) -> list[str]:
        """Lines of the programs' logs (since the host was made) that contain needle."""
        raise NotImplementedError

    def run_as_app_user(self, command: str):
        return self.app_host().run(f"{self.as_app_user}{command}")

    def exec_prefix(self) -> list[str]:
        """The command line that runs a command on the app host with its stdin and stdout kept
        open to this machine (testinfra's run() waits for the end)."""
        spec = self.target.host_spec()
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

    # --- faults -----------------------------------------------------------------------------
    def stop_redis(self) -> None:
        raise NotImplementedError

    def start_redis(self) -> None:
        raise NotImplementedError

    def nginx_host(self):
        raise NotImplementedError

    def nginx_workers(self) -> set[int]:
        return {p.pid for p in processes(self.nginx_host()) if p.args.startswith("nginx: worker process")}

    def reload_nginx(self, method: str) -> None:
        raise NotImplementedError

    def supervisord_pid(self) -> int:
        result = self.supervisor().ctl("pid")
        return int(result.stdout.strip())

    def supervisord_process(self) -> tuple[int, int]:
        """supervisord's (pid, start ticks): a restarted container may give it the same pid again."""
        pid = self.supervisord_pid()
        result = self.app_host().run(STAT_FIELDS.replace("$pid", str(pid)) + ' | cut -d" " -f2')
        return pid, int(result.stdout.strip() or 0)

    def supervisord_restarts(self) -> int:
        """How often the keeper of supervisord (systemd, the container runtime) restarted it."""
        raise NotImplementedError

    def reboot(self) -> None:
        """Restart the machine / every container; returns when they run again (not yet healthy)."""
        raise NotImplementedError

    def stop_stack(self, method: str) -> None:
        """Stop every program (or the whole stack); returns when it has stopped."""
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
        if method == "supervisorctl stop all":
            return [f"{p.pid} {p.args}" for p in app_processes(self.app_host())]
        raise NotImplementedError

    def restore(self) -> None:
        """After a test, whatever it did: the stack up, every program RUNNING, the site healthy."""
        raise NotImplementedError


class ComposeStack(Stack):
    """docker-compose.yml: nginx, app and redis containers of project E2E_COMPOSE_PROJECT."""

    reload_methods = ("nginx -s reload",)
    stop_methods = ("supervisorctl stop all", "make down")
    as_app_user = ""  # the app container runs as the app user already
    supervisord_keeper = "container restart policy"

    def __init__(self, target: Target):
        super().__init__(target)
        self.project = os.environ.get("E2E_COMPOSE_PROJECT", "channels-stack")
        self.compose = [*_compose_command(), "-p", self.project]
        self.env = dict(os.environ)
        if os.environ.get("E2E_HTTP_PORT"):
            self.env["HTTP_PORT"] = os.environ["E2E_HTTP_PORT"]

    def compose_run(self, *args: str, timeout: float = COMMAND_SECONDS) -> str:
        return run([*self.compose, *args], timeout=timeout, env=self.env)

    def container(self, service: str) -> str:
        ids = self.compose_run("ps", "-q", service).split()
        if not ids:
            raise RuntimeError(f"compose project {self.project}: no {service} container")
        return ids[0]

    def app_log_lines(self, needle: str) -> list[str]:
        result = subprocess.run(
            ["docker", "logs", self.container("app")], capture_output=True, text=True, check=False, timeout=60
        )
        return [line for line in (result.stdout + result.stderr).splitlines() if needle in line]

    def stop_redis(self) -> None:
        self.compose_run("stop", "--timeout", "10", "redis")

    def start_redis(self) -> None:
        self.compose_run("start", "redis")

    def nginx_host(self):
        return testinfra.get_host(f"docker://{self.container('nginx')}")

    def reload_nginx(self, method: str) -> None:
        assert method == "nginx -s reload", method
        result = self.nginx_host().run("nginx -s reload")
        assert result.rc == 0, result.stderr

    def supervisord_restarts(self) -> int:
        return int(run(["docker", "inspect", "--format", "{{.RestartCount}}", self.container("app")]))

    def reboot(self) -> None:
        self.compose_run("restart", timeout=300)

    def stop_stack(self, method: str) -> None:
        if method == "make down":
            compose = shlex.join(_compose_command())
            run(["make", "--no-print-directory", "down", f"COMPOSE={compose}", f"COMPOSE_PROJECT={self.project}"], 300)
        else:
            super().stop_stack(method)

    def start_stack(self, method: str) -> None:
        if method == "make down":
            run(["bash", "docker/up.sh", *self.compose], timeout=600, env=self.env)
        else:
            super().start_stack(method)

    def leftovers(self, method: str) -> list[str]:
        if method == "make down":
            containers = run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={self.project}"])
            return containers.splitlines()[1:]
        return super().leftovers(method)

    def restore(self) -> None:
        services = self.compose_run("ps", "--services", "--filter", "status=running").split()
        if sorted(services) != ["app", "nginx", "redis"]:
            run(["bash", "docker/up.sh", *self.compose], timeout=600, env=self.env)
        supervisor = self.supervisor()
        for name, program in supervisor.status().items():
            if program.state != "RUNNING":
                supervisor.start(name)
        self.wait_whole()


class VmStack(Stack):
    """The systemd test host (ansible/vm.mk): Nginx, Redis and channels-stack.service in one machine."""

    reload_methods = ("nginx -s reload", "ansible handler")
    stop_methods = ("supervisorctl stop all", "systemctl stop")
    as_app_user = "runuser -u channels -- "
    supervisord_keeper = "systemd Restart=always"
    service = "channels-stack"

    def __init__(self, target: Target):
        super().__init__(target)
        self.container = os.environ.get("VM_CONTAINER", "channels-stack-vm")

    def host(self):
        return self.app_host()

    def systemctl(self, *args: str):
        result = self.host().run(shlex.join(["systemctl", *args]))
        assert result.rc == 0, f"systemctl {' '.join(args)}: {result.stdout} {result.stderr}"
        return result.stdout.strip()

    def app_log_lines(self, needle: str) -> list[str]:
        result = self.host().run("cat /var/log/channels-stack/*.log")
        return [line for line in result.stdout.splitlines() if needle in line]

    def stop_redis(self) -> None:
        self.systemctl("stop", "redis-server")

    def start_redis(self) -> None:
        self.systemctl("start", "redis-server")

    def nginx_host(self):
        return self.host()

    def reload_nginx(self, method: str) -> None:
        if method == "nginx -s reload":
            result = self.host().run("nginx -s reload")
            assert result.rc == 0, result.stderr
        elif method == "ansible handler":
            env = {
                **os.environ,
                "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
                "VM_CONTAINER": self.container,
            }
            playbook = str(REPO / "tests" / "faults" / "reload-nginx.yml")
            inventory = str(REPO / "ansible" / "inventories" / "local-vm")
            run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", inventory, playbook], 300, env)
        else:
            raise ValueError(method)

    def supervisord_pid(self) -> int:
        return int(self.systemctl("show", "--property", "MainPID", "--value", self.service))

    def supervisord_restarts(self) -> int:
        return int(self.systemctl("show", "--property", "NRestarts", "--value", self.service))

    def reboot(self) -> None:
        # docker sends systemd SIGRTMIN+3 (the image's STOPSIGNAL): an orderly shutdown that stops
        # channels-stack.service within its TimeoutStopSec, like `reboot` on a VM.
        run(["docker", "restart", "--time", "90", self.container], timeout=300)
        wait_until(self.booted, 120, f"{self.container} booted", 1)

    def booted(self) -> bool:
        state = self.host().run("systemctl is-system-running").stdout.strip()
        return state in {"running", "degraded"}

    def stop_stack(self, method: str) -> None:
        if method == "systemctl stop":
            self.systemctl("stop", self.service)
        else:
            super().stop_stack(method)

    def start_stack(self, method: str) -> None:
        if method == "systemctl stop":
            self.systemctl("start", self.service)
        else:
            super().start_stack(method)

    def leftovers(self, method: str) -> list[str]:
        if method == "systemctl stop":
            host = self.host()
            uid = host.user(self.target.app_user).uid
            return [f"{p.pid} {p.args}" for p in processes(host) if p.uid == uid]
        return super().leftovers(method)

    def restore(self) -> None:
        if not self.booted():
            wait_until(self.booted, 120, f"{self.container} booted", 1)
        for unit in ("redis-server", "nginx", self.service):
            if self.host().run(f"systemctl is-active {unit}").rc != 0:
                self.systemctl("start", unit)
        supervisor = self.supervisor()
        wait_until(lambda: supervisor.status(), 60, "supervisord answers", 1)
        for name, program in supervisor.status().items():
            if program.state != "RUNNING":
                supervisor.start(name)
        self.wait_whole()


STACKS = {"compose": ComposeStack, "vm": VmStack}


def make_stack(target: Target) -> Stack:
    return STACKS[target.name](target)


DATABASE = "/var/lib/channels-stack/db.sqlite3"  # app_data_dir of deploy/defaults.yml
# The lock holder lets go by itself after this long, whatever happens to the test.
LOCK_LIMIT_SECONDS = 120
# The holder's script: it says "held" only once BEGIN IMMEDIATE has returned, and lets go when the
# test writes a line to its stdin or closes it (or the test, and so `docker exec`, dies).
LOCK_SCRIPT = """
import signal, sqlite3, sys
signal.alarm({limit})
connection = sqlite3.connect({database!r}, isolation_level=None, timeout=30)
connection.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
connection.execute("ROLLBACK")
print("released", flush=True)
"""


class DatabaseLock:
    """Holds SQLite's write lock on the app host from `with` until release(): a request that writes
    meanwhile waits inside its Gunicorn worker (busy timeout 20 s), in flight for as long as the
    test chooses (a long write transaction elsewhere: a migration, a bulk import).

    The holder itself says when it holds the lock, on its stdout. Issue 15: the lock used to be
    inferred from a probe failing with "database is locked", which the poster's own writes also
    caused, so the probe could pass before `docker exec` had even started the holder, and the
    request meant to be in flight was answered at once.
    Raises TimedOut when the holder does not hold the lock within `timeout` seconds.
    """

    def __init__(self, stack: Stack, timeout: float = 30):
        self.stack = stack
        self.timeout = timeout
        self.held_at: float | None = None
        self.released_at: float | None = None
        self.process: subprocess.Popen | None = None
        self.output: list[str] = []

    def __enter__(self) -> DatabaseLock:
        script = LOCK_SCRIPT.format(limit=LOCK_LIMIT_SECONDS, database=DATABASE)
        command = f"{self.stack.as_app_user}{self.stack.target.python} -c {shlex.quote(script)}"
        self.process = subprocess.Popen(
            [*self.stack.exec_prefix(), "sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        reader = threading.Thread(target=self._read, name="database-lock-output", daemon=True)
        reader.start()
        try:
            wait_until(lambda: "held" in self.output, self.timeout, "the lock holder says it holds the lock", 0.05)
        except BaseException:
            self.release()
            raise
        self.held_at = time.monotonic()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.strip())

    def release(self) -> None:
        """Let go of the lock (idempotent); waits until the holder has rolled back and exited."""
        if self.process is None or self.released_at is not None:
            return
        # From here on a waiting request may go on: stamped before the holder is told.
        self.released_at = time.monotonic()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def __exit__(self, *exc_info) -> None:
        self.release()


class PortBlocker:
    """A stray process of the app user listening on a program's port, so the program cannot bind
    it and dies at every start (a crash loop with a cause outside the program). Exits by itself
    after `seconds` at the latest."""

    def __init__(self, stack: Stack, port: int, seconds: int = 180):
        self.stack = stack
        self.port = port
        self.seconds = seconds
        self.pid: int | None = None

    def __enter__(self) -> PortBlocker:
        script = (
            "import socket, time; s = socket.socket(); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(({self.stack.target.bind_host!r}, {self.port})); s.listen(); time.sleep({self.seconds})"
        )
        inner = f"nohup {self.stack.target.python} -c {shlex.quote(script)} >/dev/null 2>&1 & echo $!"
        result = self.stack.run_as_app_user(f"sh -c {shlex.quote(inner)}")
        assert result.rc == 0, result.stderr
        self.pid = int(result.stdout.strip())
        wait_until(self.listening, 10, f"blocker listening on {self.port}", 0.2)
        return self

    def listening(self) -> bool:
        return self.stack.app_host().socket(f"tcp://{self.stack.target.bind_host}:{self.port}").is_listening

    def free(self) -> None:
        if self.pid is not None:
            self.stack.app_host().run(f"kill {self.pid}")
            self.pid = None

    def __exit__(self, *exc_info) -> None:
        self.free()
