"""Long polling (issue 14): a request parked until the board has a message after the client's last id.

`GET /api/messages/wait?after=N&timeout=S` (board.views.messages_wait) answers at once when messages
after N are stored, else waits up to S seconds for the next one the board group broadcasts
(services.broadcast_message, after commit), then answers like `GET /api/messages`.

No message is lost between "read the database" and "start waiting": a request registers with the
process's board subscription first and reads second (`wait_for_messages`), so a message committed
after the read is broadcast to a subscription that already exists. A broadcast lost with Redis
(broadcast_message logs it) is not lost either: the client's next request reads the database.

What a thousand parked requests cost, and why one subscription per process (BoardWatch):
- The pub/sub layer (config/channel_layer.py) subscribes each channel it makes (`new_channel`: one
  SUBSCRIBE) and unsubscribes it when its `receive` is cancelled; group_add subscribes the group's
  Redis channel once per process. One channel and one group_add per request would cost two Redis
  round trips per request, made one at a time under the shard's single lock (the same lock every
  publish takes), and every broadcast ends every parked request at once: at 1,000 clients and one
  update a second, 2,000 SUBSCRIBE/UNSUBSCRIBE a second queued behind each other, per process.
- Instead each event loop (one per Daphne process) has one BoardWatch: one channel in the board
  group, joined on the first long poll, whose one listening task wakes every parked request of the
  process. A parked request then costs no Redis command at all, only an asyncio future; Redis sees
  two subscriptions per Daphne process (its channel and the board group) however many clients wait.
- A broadcast that is the very next id for a request (id == after + 1, the case of every client
  that is up to date) is answered from the broadcast itself: the response body is built once per
  broadcast per process, so N parked requests cost no database query and one json.dumps, like the
  board socket's frame (issue 9). Any other case (a gap, a lost subscription) reads the database.
- Database reads run on the event loop's thread pool (thread_sensitive=False), whose few
  long-lived threads keep their connections (CONN_MAX_AGE, checked before reuse), instead of the
  request's own thread, which would open and drop a connection per request.
- No thread per parked request: Django's ASGI handler would give every request an OS thread of its
  own for the sync middleware (asgiref ThreadSensitiveContext), held until the request ends; about
  490 parked requests exhausted the compose app container's pids_limit. config/parked_http.py serves
  this path without that context. What a parked request costs is then an asyncio task, a future,
  its socket and Django's request object (README "Falling back to polling" gives the measurement).

When the layer loses Redis it puts "channel_layer.disconnect" on every channel of the process
(config/channel_layer.py): BoardWatch then wakes every parked request, which reads the database and
answers or joins again on a new connection; when Redis cannot be reached, LayerUnavailable.
"""

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass

import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import services

logger = logging.getLogger(__name__)

# The message type the layer puts on every local channel when it loses Redis (settings CHANNEL_LAYERS).
LAYER_LOST = "channel_layer.disconnect"


class LayerUnavailable(RuntimeError):
    """The channel layer (Redis) cannot be reached, so a request could not start waiting."""


@dataclass(frozen=True)
class Broadcast:
    """A board message as the board group delivered it: its id, and the long poll's whole answer for a
    client whose last id is id - 1 (`{"messages": [message], "has_more": false}`, JSON text)."""

    id: int
    body: str

    @classmethod
    def from_event(cls, event: dict) -> "Broadcast":
        """From services.board_event's group message ({"type", "id", "frame"})."""
        message = json.loads(event["frame"])
        message.pop("type", None)
        return cls(event["id"], json.dumps({"messages": [message], "has_more": False}))


class BoardWatch:
    """One event loop's member of the board group, shared by every long poll parked in that loop.

    `watch()` returns an asyncio future resolved with the next Broadcast, or with None when the
    subscription was lost (the caller reads the database and watches again); the group is joined
    before it returns. `forget(future)` when done with it.
    """

    def __init__(self, layer):
        self.layer = layer
        self.channel: str | None = None
        self.task: asyncio.Task | None = None
        self.waiters: set[asyncio.Future] = set()
        self.joining = asyncio.Lock()

    async def watch(self) -> asyncio.Future:
        """Raises LayerUnavailable when the group cannot be joined (Redis unreachable)."""
        if self.task is None:
            async with self.joining:
                if self.task is None:
                    await self.join()
        future = asyncio.get_running_loop().create_future()
        self.waiters.add(future)
        return future

    def forget(self, future: asyncio.Future) -> None:
        self.waiters.discard(future)

    async def join(self) -> None:
        try:
            channel = await self.layer.new_channel(prefix="longpoll.")
            await self.layer.group_add(services.BOARD_GROUP, channel)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise LayerUnavailable(f"the channel layer is unreachable: {exc}") from exc
        self.channel = channel
        self.task = asyncio.create_task(self.listen(channel), name="board long-poll watch")
        logger.info("long polling: joined the board group as %s", channel)

    async def listen(self, channel: str) -> None:
        try:
            while True:
                event = await self.layer.receive(channel)
                if event.get("type") == "board.message":
                    self.wake(Broadcast.from_event(event))
                elif event.get("type") == LAYER_LOST:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("long polling: receiving from the board group failed")
        await self.lost(channel)

    def wake(self, broadcast: Broadcast | None) -> None:
        waiters, self.waiters = self.waiters, set()
        for future in waiters:
            if not future.done():
                future.set_result(broadcast)

    async def lost(self, channel: str) -> None:
        """The subscription is gone: wake everyone (None), leave the group, and let the next watch join."""
        self.task = None
        self.channel = None
        self.wake(None)
        logger.warning("long polling: lost the board subscription; woke the parked requests")
        # The layer has dropped the connection and its subscriptions; forget the channel's queue and
        # group entry (a consumer's cancelled receive does the same), no Redis command needed.
        self.layer.channels.pop(channel, None)
        try:
            await self.layer.group_discard(services.BOARD_GROUP, channel)
        except Exception as exc:
            logger.debug("leaving the board group after a lost connection failed: %s", exc)

    async def close(self) -> None:
        """Stop listening and leave the group (tests; a process that ends needs nothing)."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.channel is not None:
            try:
                await self.layer.group_discard(services.BOARD_GROUP, self.channel)
            except Exception as exc:
                logger.debug("leaving the board group failed: %s", exc)
            self.channel = None
        self.wake(None)


# One BoardWatch per event loop (Daphne runs one loop per process), for the loop's channel layer.
_watches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BoardWatch]" = weakref.WeakKeyDictionary()


def board_watch() -> BoardWatch:
    loop = asyncio.get_running_loop()
    layer = get_channel_layer()
    watch = _watches.get(loop)
    if watch is None or watch.layer is not layer:
        watch = _watches[loop] = BoardWatch(layer)
    return watch


def read_page(after: int, limit: int) -> dict:
    """GET /api/messages' answer for after/limit, or an empty dict when nothing is stored after `after`."""
    page = services.messages_page(after, limit)
    return page if page["messages"] else {}


async def wait_for_messages(after: int, limit: int, timeout: float) -> str:
    """The long poll: the answer (JSON text, `{"messages": [...], "has_more": bool}` like GET
    /api/messages) as soon as messages after `after` are stored, or with no messages after `timeout`
    seconds. Raises LayerUnavailable when it cannot start waiting (Redis unreachable)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    watch = board_watch()
    read = database_sync_to_async(read_page, thread_sensitive=False)
    while True:
        waiter = await watch.watch()  # subscribed before the read: nothing committed after it is missed
        try:
            page = await read(after, limit)
            if page:
                return json.dumps(page)
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                broadcast = await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                break
            if broadcast is not None and broadcast.id == after + 1:
                return broadcast.body
            # A gap (broadcasts overtook each other, or an id was never committed), an id already
            # seen, or a lost subscription: the database says what there is.
        finally:
            watch.forget(waiter)
    return json.dumps({"messages": [], "has_more": False})
