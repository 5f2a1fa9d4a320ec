"""Redis access control on the running stack (deploy/redis): the app's programs log in as the ACL
user, which is refused every command channels-redis does not use, and Redis' default user cannot
log in. Asked from the app's own host with the app's own REDIS_URL (read from a running program's
environment, so the password never appears on this side or on a command line)."""

import json
import shlex

import pytest

# Run with the app's Python on the app's host: connects as the app (REDIS_URL of the given PID),
# and without a user name / as `default` with the app's password; prints what each attempt got.
PROBE = r"""
import json, sys, redis
environ = dict(v.split("=", 1) for v in open(f"/proc/{sys.argv[1]}/environ").read().split("\0") if "=" in v)
url = environ["REDIS_URL"]
kwargs = redis.connection.parse_url(url)
app = redis.Redis.from_url(url, socket_timeout=5)

def outcome(call):
    try:
        return "ok: %r" % (call(),)
    except redis.exceptions.RedisError as exc:
        return "%s: %s" % (type(exc).__name__, exc)

host = dict(host=kwargs["host"], port=kwargs.get("port", 6379), socket_timeout=5)
print(json.dumps({
    "user": kwargs.get("username"),
    "ping": outcome(app.ping),
    "flushall": outcome(app.flushall),
    "config": outcome(lambda: app.config_get("maxmemory")),
    "keys": outcome(lambda: app.keys("*")),
    "foreign_key": outcome(lambda: app.zadd("not-the-app", {"x": 1})),
    "anonymous": outcome(redis.Redis(**host).ping),
    "default_user": outcome(redis.Redis(username="default", password=kwargs.get("password"), **host).ping),
}))
"""


@pytest.fixture
def probe(target, app_host, supervisor):
    """What the app's Redis user, and a client without one, got on the running stack."""
    pid = supervisor.status()[f"daphne:daphne-{target.daphne_ports[0]}"].pid
    result = app_host.run(f"{target.python} -c {shlex.quote(PROBE)} {pid}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def test_app_logs_in_to_redis_as_its_acl_user(target, probe):
    """Tests that the app's REDIS_URL names the deploy's ACL user, which may PING (the health checks)."""
    assert probe["user"] == target.variables["redis_app_user"]
    assert probe["ping"] == "ok: True"


@pytest.mark.parametrize("attempt", ["flushall", "config", "keys"])
def test_app_user_is_refused_commands_channels_redis_does_not_use(probe, attempt):
    """Tests that FLUSHALL, CONFIG and KEYS are refused to the app's Redis user on the running stack."""
    assert probe[attempt].startswith("NoPermissionError: this user has no permissions to run"), probe[attempt]


def test_app_user_is_refused_keys_outside_the_channel_layers_prefix(probe):
    """Tests that the app's Redis user cannot write a key the channel layers do not use."""
    assert probe["foreign_key"].startswith("NoPermissionError"), probe["foreign_key"]


def test_redis_default_user_cannot_log_in(probe):
    """Tests that a client without a user name gets NOAUTH, and `default` with the app's password is refused."""
    assert probe["anonymous"].startswith("AuthenticationError"), probe["anonymous"]
    assert "WRONGPASS" in probe["default_user"] or "disabled" in probe["default_user"], probe["default_user"]
