"""config.channel_layer.RedisPubSubChannelLayer: its configuration is checked (the outage itself is
proven with a real redis-server killed in test_redis_outage.py)."""

import asyncio

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.channel_layer import RedisPubSubChannelLayer


def layer(**config) -> RedisPubSubChannelLayer:
    # The product's prefix: the app's Redis user may use no other channel (deploy/redis/app-user.acl.j2).
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return RedisPubSubChannelLayer(hosts=[{"address": settings.REDIS_URL}], prefix=prefix, **config)


async def test_layer_without_on_disconnect_is_refused():
    """Tests that a layer that could leave sockets open on a lost subscription does not start."""
    with pytest.raises(ImproperlyConfigured, match="needs on_disconnect"):
        await layer().new_channel()


async def test_layer_with_on_reconnect_is_refused():
    """Tests that the hook this layer cannot honour is an error, not silently ignored."""
    with pytest.raises(ImproperlyConfigured, match="on_reconnect is unsupported"):
        await layer(on_disconnect="x.gone", on_reconnect="x.back").new_channel()


async def test_a_lost_connection_puts_on_disconnect_on_every_local_channel(redis_server):
    """Tests that every channel of the process, group member or not, is told (CLIENT KILL drops the
    subscriber connection the way a Redis restart does)."""
    channels = layer(on_disconnect="x.gone")
    member, loner = await channels.new_channel(), await channels.new_channel()
    await channels.group_add("g", member)
    redis_server.client_kill_filter(_type="pubsub")
    assert await asyncio.wait_for(channels.receive(member), 5) == {"type": "x.gone"}
    assert await asyncio.wait_for(channels.receive(loner), 5) == {"type": "x.gone"}
    # A new channel on the same layer subscribes afresh and gets group messages again.
    fresh = await channels.new_channel()
    await channels.group_add("g", fresh)
    await channels.group_send("g", {"type": "x.hello"})
    assert await asyncio.wait_for(channels.receive(fresh), 5) == {"type": "x.hello"}
    await channels.flush()
