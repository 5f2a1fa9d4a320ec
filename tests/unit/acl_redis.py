"""redis-server started from the rendered deploy/redis templates: the settings, the default user
disabled, and the app's ACL user with a password appended, as each target does it."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, str(REPO / "deploy" / "render.py")]
# Where deploy/redis/app-user.acl.j2 is rendered (its first line).
APP_USER_ACL = Path("etc/redis/channels-stack-app-user.acl")
SETTINGS = Path("etc/redis/channels-stack.conf")


def app_user_rule(root: Path) -> list[str]:
    """The rendered app user's `user` directive without its leading `user`: name, then the rules."""
    lines = [line for line in (root / APP_USER_ACL).read_text().splitlines() if line.startswith("user ")]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])[1:]


def render_redis(root: Path, port: int, *target_vars: Path) -> None:
    """Render deploy/redis/ into root for a redis-server on 127.0.0.1:port."""
    args = [*RENDER, "--root", str(root), "--only", "redis/", "--set", "redis_bind_addresses=[127.0.0.1]"]
    for path in target_vars:
        args += ["--vars", str(path)]
    subprocess.run([*args, "--set", f"redis_port={port}"], check=True)


def redis_server_argv(root: Path, password: str, *extra_users: list[str]) -> list[str]:
    """redis-server with the rendered settings and the app user given `password` (the compose redis
    entrypoint's way: --user <the rendered rule> >password), plus any other `user` rules."""
    argv = ["redis-server", str(root / SETTINGS), "--dir", str(root), "--user", *app_user_rule(root), f">{password}"]
    for rule in extra_users:
        argv += ["--user", *rule]
    return argv


def wait_until_up(client: redis.Redis, process: subprocess.Popen, timeout: float = 10) -> None:
    """Return once client's PING is answered; raise RuntimeError if the server exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError as exc:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"redis-server did not start: {exc}") from exc
            time.sleep(0.05)
