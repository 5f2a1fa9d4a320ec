"""Redis access control (deploy/redis): the default user is off, and the app's ACL user may run only
what channels-redis and the health checks use, on the channel layers' keys and channels. Against a
real redis-server started from the rendered templates alone (the rest of the unit tier runs the app
as that user, which proves it is enough)."""

import asyncio
import shlex
import socket
import subprocess

import pytest
import redis
from acl_redis import app_user_rule, redis_server_argv, render_redis, wait_until_up
from django.conf import settings

PASSWORD = "acl-test-password"  # noqa: S105 (this module's own redis-server)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory):
    """(port, app user name) of a redis-server run from the rendered templates, no other user added."""
    root = tmp_path_factory.mktemp("acl-redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    render_redis(root, port)
    server = subprocess.Popen([*redis_server_argv(root, PASSWORD), "--save", ""], stdout=subprocess.DEVNULL)
    user = app_user_rule(root)[0]
    try:
        wait_until_up(redis.Redis(port=port, username=user, password=PASSWORD), server)
        yield port, user
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def app_client(acl_redis):
    port, user = acl_redis
    return redis.Redis(port=port, username=user, password=PASSWORD, socket_timeout=5)


@pytest.mark.parametrize(
    "command",
    [
        "FLUSHALL",
        "FLUSHDB",
        "KEYS *",
        "CONFIG GET maxmemory",
        "CONFIG SET maxmemory-policy allkeys-lru",
        "SHUTDOWN NOSAVE",
        "BGSAVE",
        "EVALSHA 6eeafcd47cdc6ace492f1e8dc70c47b4258bf161 0",
        "ACL LIST",
        "MONITOR",
        "SCRIPT FLUSH",
        "CLIENT KILL TYPE pubsub",
        "SET channels-stack:probe 1",
        "GET channels-stack:probe",
    ],
)
def test_app_user_is_refused_commands_channels_redis_does_not_use(app_client, command):
    """Tests that the app's Redis user gets NOPERM for a command outside its list."""
    with pytest.raises(redis.exceptions.NoPermissionError, match="no permissions to run"):
        app_client.execute_command(*shlex.split(command))


def test_app_user_is_refused_keys_and_channels_outside_the_layers_prefix(app_client):
    """Tests that the app's Redis user may touch only keys and channels under the channel layers' prefix."""
    with pytest.raises(redis.exceptions.NoPermissionError, match="keys"):
        app_client.zadd("someone-else:queue", {"x": 1})
    with pytest.raises(redis.exceptions.NoPermissionError, match="channels"):
        app_client.publish("someone-else", "x")
    # Redis 7 checks a script's calls too.
    with pytest.raises(redis.exceptions.ResponseError, match="can't access at least one of the keys"):
        app_client.eval("return redis.call('DEL', ARGV[1])", 0, "someone-else:queue")


def test_app_user_may_run_what_the_queue_layer_and_health_checks_send(app_client):
    """Tests a channels-redis queue round trip with the app user's commands, Lua scripts included."""
    assert app_client.ping() is True
    assert app_client.zadd("channels-stack:probe", {"m": 1}) == 1
    assert app_client.eval("return redis.call('ZCOUNT', ARGV[1], '-inf', '+inf')", 0, "channels-stack:probe") == 1
    assert app_client.bzpopmin("channels-stack:probe", timeout=1) == (b"channels-stack:probe", b"m", 1.0)
    assert app_client.publish("channels-stack__group__board", "x") == 0


def test_queue_layer_groups_work_with_the_app_users_commands(acl_redis):
    """Tests that channels-redis' queue layer (RedisChannelLayer, what most projects use for groups)
    can group_add, group_send and receive as the app user: its transaction and scripts are allowed."""
    from channels_redis.core import RedisChannelLayer

    port, user = acl_redis

    async def round_trip() -> dict:
        layer = RedisChannelLayer(
            hosts=[{"address": f"redis://{user}:{PASSWORD}@127.0.0.1:{port}/0"}], prefix="channels-stack"
        )
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "chat.message", "text": "hi"})
        try:
            return await asyncio.wait_for(layer.receive(channel), 5)
        finally:
            await layer.group_discard("room", channel)
            await layer.close_pools()

    assert asyncio.run(round_trip()) == {"type": "chat.message", "text": "hi"}


def test_default_user_cannot_log_in(acl_redis):
    """Tests that a client without a user name gets NOAUTH, and logging in as `default` is refused."""
    port, _ = acl_redis
    with pytest.raises(redis.exceptions.AuthenticationError, match="NOAUTH|Authentication required"):
        redis.Redis(port=port).ping()
    for password in ("", PASSWORD, "anything"):
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, username="default", password=password).ping()


def test_app_user_with_a_wrong_password_is_refused(acl_redis):
    """Tests that the app's user name alone is not enough."""
    port, user = acl_redis
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=port, username=user, password="wrong").ping()  # noqa: S106 (a wrong one)


def test_channel_layers_use_the_prefix_the_acl_allows(tmp_path):
    """Tests that every CHANNEL_LAYERS prefix is the one the app user's key and channel patterns name."""
    render_redis(tmp_path, 6379)
    rule = app_user_rule(tmp_path)
    patterns = {token[1:] for token in rule if token[0] in "~&"}
    prefixes = {layer["CONFIG"]["prefix"] for layer in settings.CHANNEL_LAYERS.values()}
    assert patterns == {f"{prefix}*" for prefix in prefixes}, (patterns, prefixes)


def test_the_app_logs_in_as_the_acl_user(acl_redis):
    """Tests that the unit tier's REDIS_URL, like each target's, names the ACL user (not `default`)."""
    _, user = acl_redis
    assert redis.connection.parse_url(settings.REDIS_URL)["username"] == user
