"""channels-redis' pub/sub channel layer, telling the consumers when its Redis connection is lost.

Why pub/sub: `RedisChannelLayer` copies a group message once per member, and every Daphne process
then fetches those copies one Redis round trip at a time, under one lock. `RedisPubSubChannelLayer`
publishes a group message once; each process receives it once and hands it to its local members
(shared/notes/fanout-profile.md: fan-out p99 at 1,000 sockets 171 ms against 382 ms).

What it lacks: channels-redis 4.x documents `on_disconnect` for the pub/sub layer but no longer
calls it (django/channels_redis#406, since #326). When the subscriber connection drops, the layer
logs, reconnects and re-subscribes by itself, and whatever was published meanwhile is gone without
anyone knowing: a board socket would show those messages only when a later one opened a gap.

`RedisPubSubChannelLayer` below does what channels_redis#259 designed: with `on_disconnect` set to a
message type (e.g. "channel_layer.disconnect"), a lost connection puts that message on every
channel of the process, so each consumer can close its socket (the board closes with 4503, and the
client reconnects with `?after=` and backfills from the database). The shard then starts afresh: the
broken connection and its subscriptions are dropped, and the next subscribe opens a new connection.
`on_reconnect` is refused: every consumer was told to go, so after a reconnect there is nobody who
missed anything.

Everything else (send, groups, flush, shards, Sentinel hosts) is channels-redis' own. The subclasses
lean on its internals (`RedisSingleShardConnection._do_receiving`, `RedisPubSubLoopLayer._shards`)
as of channels-redis 4.3.0, pinned in requirements.txt; tests/unit/test_redis_outage.py kills a real
redis-server to prove the behaviour, so an upgrade that changes them fails there.
"""

import asyncio
import logging

from channels_redis import pubsub
from channels_redis.utils import _wrap_close, decode_hosts
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)
LAYER = "config.channel_layer.RedisPubSubChannelLayer"


class _ShardConnection(pubsub.RedisSingleShardConnection):
    """One Redis host's connection whose receive loop, on a lost connection, tells every local
    channel (`on_disconnect`) and forgets the connection and its subscriptions."""

    async def _do_receiving(self):
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                await self._connection_lost(exc)
                return  # the next subscribe starts a new receive task on a new connection

    async def _connection_lost(self, exc: Exception) -> None:
        told = self.channel_layer.tell_every_channel(self.channel_layer.on_disconnect)
        logger.warning(
            "channel layer: lost the subscriber connection to Redis (%s: %s); told %d local channels",
            type(exc).__name__,
            exc,
            told,
        )
        self._receive_task = None  # this task: flush() must not cancel and await itself
        try:
            await self.flush()
        except Exception as close_exc:  # the connection is broken already; closing it may fail too
            logger.debug("closing the lost Redis connection failed: %s", close_exc)
            self._redis = self._pubsub = None
            self._subscribed_to = set()


class _LoopLayer(pubsub.RedisPubSubLoopLayer):
    """channels-redis' per-event-loop layer with `_ShardConnection`s."""

    def __init__(self, hosts=None, on_disconnect=None, on_reconnect=None, **kwargs):
        if not on_disconnect:
            # Without it, sockets would stay open on a connection that lost their subscriptions.
            raise ImproperlyConfigured(f"{LAYER}: CONFIG needs on_disconnect, a message type the consumers handle")
        if on_reconnect is not None:
            raise ImproperlyConfigured(f"{LAYER}: on_reconnect is unsupported; on_disconnect tells every consumer")
        super().__init__(hosts, on_disconnect=on_disconnect, **kwargs)
        self._shards = [_ShardConnection(host, self) for host in decode_hosts(hosts)]

    async def _subscribe_to_channel(self, channel):
        try:
            await super()._subscribe_to_channel(channel)
        except BaseException:
            # Redis unreachable: the consumer fails to start, so its queue would never be read.
            self.channels.pop(channel, None)
            raise

    def tell_every_channel(self, message_type: str | None) -> int:
        """Put {"type": message_type} on every channel of this process; return how many (0 if unset)."""
        if not message_type:
            return 0
        data = self.channel_layer.serialize({"type": message_type})
        for queue in self.channels.values():
            queue.put_nowait(data)
        return len(self.channels)


class RedisPubSubChannelLayer(pubsub.RedisPubSubChannelLayer):
    """`channels_redis.pubsub.RedisPubSubChannelLayer` whose `on_disconnect` works (see the module).

    CONFIG as channels-redis documents it: `hosts` (list of URLs or connection kwargs, or a
    Sentinel `master_name`/`sentinels` dict), `prefix`, `on_disconnect` (a message type, e.g.
    "channel_layer.disconnect": handled by a consumer method `channel_layer_disconnect`).
    Raises ImproperlyConfigured, on first use in an event loop, without `on_disconnect` or with
    `on_reconnect`.
    """

    def _get_layer(self):
        # channels-redis' own _get_layer, with _LoopLayer for its RedisPubSubLoopLayer.
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer
