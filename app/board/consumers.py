"""WebSocket consumers: the live board and a job's progress."""

import json
import logging
from urllib.parse import parse_qs

import redis
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from . import services
from .handshake import header
from .limits import PostRate
from .middleware import clean_request_id
from .models import Job, Message

logger = logging.getLogger(__name__)

# The backlog is sent in pages of this many messages, however far behind the client is.
BACKLOG_PAGE = 200
# Close code when the channel layer (Redis) is unreachable: "try again later" (the app-defined
# range is 4000-4999; Daphne refuses the standard 1012/1013 from an application).
CLOSE_UNAVAILABLE = 4503
# Close code of a drained host (`manage.py drain`, a rolling deploy): "reconnect at once", the load
# balancer no longer sends this host new sockets (app-defined, like 4503; board.js skips its backoff).
CLOSE_DRAINED = 4012
# A client that gives no `after` gets the same latest messages the board page shows.
DEFAULT_BACKLOG = 50


def client_address(scope) -> str:
    """host:port of the client as the server saw it (behind Nginx: the address Nginx forwarded)."""
    host, port = scope.get("client") or ("-", "-")
    return f"{host}:{port}"


class JsonSocketMixin:
    """Request id for logs, JSON frames out, and an error frame for a frame the client got wrong."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            # Redis is gone while the socket opens (joining the group failed): it could get no live
            # messages. Close it with CLOSE_UNAVAILABLE so the client retries, and backfills, once
            # Redis is back. (Sockets already open are told by the layer: channel_layer_disconnect.)
            logger.warning("channel layer unreachable (%s); closing the socket with %s", exc, CLOSE_UNAVAILABLE)
            await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})

    async def server_drain(self, event) -> None:
        """This host is being drained (`manage.py drain`): close with CLOSE_DRAINED so the client
        reconnects at once, through the load balancer, to a host that stays."""
        await self.close(code=CLOSE_DRAINED)

    async def join_drain_group(self) -> None:
        await self.channel_layer.group_add(services.drain_group(), self.channel_name)

    async def leave_drain_group(self) -> None:
        try:
            await self.channel_layer.group_discard(services.drain_group(), self.channel_name)
        except Exception as exc:  # Redis gone: nothing to leave
            logger.warning("leaving the drain group failed: %s", exc)

    async def channel_layer_disconnect(self, event) -> None:
        """The layer lost Redis (config.channel_layer): live messages may have been missed, and no
        more can come. Close with CLOSE_UNAVAILABLE, so the client reconnects and backfills."""
        await self.close(code=CLOSE_UNAVAILABLE)

    def setup_request_id(self) -> None:
        self.request_id = clean_request_id(header(self.scope, b"x-request-id"))

    def log(self, message: str, *args) -> None:
        logger.info(message, *args, extra={"request_id": self.request_id})

    async def send_json(self, data: dict) -> None:
        await self.send(text_data=json.dumps(data))

    async def send_error(self, message: str) -> None:
        await self.send_json({"type": "error", "error": message})

    async def read_frame(self, text_data, bytes_data) -> dict | None:
        """Return the frame as a dict, or answer with an error frame and return None."""
        if text_data is None:
            await self.send_error("binary frames are not supported; send JSON text")
            return None
        try:
            return services.parse_json_object(text_data, "a frame")
        except services.InvalidInput as exc:
            await self.send_error(str(exc))
            return None


class BoardConsumer(JsonSocketMixin, AsyncWebsocketConsumer):
    """Sends every stored message after `after`, then live ones: each id once, in ascending order."""

    async def connect(self):
        self.setup_request_id()
        try:
            after = self.parse_after()
        except services.InvalidInput as exc:
            logger.warning("board handshake refused: %s", exc, extra={"request_id": self.request_id})
            await self.close(code=4400)  # before accept: the handshake is refused
            return
        self.post_rate = PostRate(settings.WS_POST_RATE, settings.WS_POST_BURST)
        self.posts_refused = 0
        # Join before reading the backlog, so nothing committed in between is missed; duplicates
        # are dropped by id in board_message.
        await self.channel_layer.group_add(services.BOARD_GROUP, self.channel_name)
        await self.join_drain_group()
        await self.accept()
        self.last_id = after if after is not None else await database_sync_to_async(self.default_after)()
        await self.send_backlog()
        host, port = self.scope.get("server") or ("", "")
        await self.send_json({"type": "ready", "last_id": self.last_id, "served_by": f"{host}:{port}"})
        self.log("board socket open after=%s last_id=%s client=%s", after, self.last_id, client_address(self.scope))

    def parse_after(self) -> int | None:
        """The client's resume point: the same rules as the API's `after` (InvalidInput otherwise)."""
        values = parse_qs(self.scope.get("query_string", b"").decode("latin-1")).get("after")
        return services.parse_int("after", values[0] if values else None, None, 0, services.MAX_ID)

    @staticmethod
    def default_after() -> int:
        latest = services.latest_messages(DEFAULT_BACKLOG)
        return latest[0].id - 1 if latest else 0

    async def send_backlog(self, up_to: int | None = None) -> None:
        """Send stored messages with id > last_id (and <= up_to), page by page."""
        while True:
            page = await database_sync_to_async(self.backlog_page)(self.last_id, up_to)
            for message in page:
                await self.send_json({"type": "message", **message.as_json()})
                self.last_id = message.id
            if len(page) < BACKLOG_PAGE:
                return

    @staticmethod
    def backlog_page(after: int, up_to: int | None) -> list[Message]:
        messages = Message.objects.filter(id__gt=after)
        if up_to is not None:
            messages = messages.filter(id__lte=up_to)
        return list(messages.order_by("id")[:BACKLOG_PAGE])

    async def dispatch(self, message):
        """Live board messages go straight to their handler; everything else as Channels does it.

        Channels' AsyncConsumer.dispatch first closes stale database connections in a worker
        thread (`aclose_old_connections`, a sync_to_async hop) before every handler. For the board
        that was one thread hop per message per socket, the largest single cost of a Daphne process
        at 1,000 sockets (shared/notes/fanout-profile.md). board_message touches the database only
        through database_sync_to_async, which closes stale connections around its own call.
        """
        if message["type"] == "board.message":
            await self.board_message(message)
        else:
            await super().dispatch(message)

    async def board_message(self, event):
        message_id = event["id"]
        if message_id <= self.last_id:
            return  # already sent with the backlog
        if message_id > self.last_id + 1:
            # Broadcasts can overtake each other; fill the gap from the database, in order.
            await self.send_backlog(up_to=message_id)
            return
        # Serialised once by the producer (services.board_event), sent as it is.
        await self.send(text_data=event["frame"])
        self.last_id = message_id

    async def receive(self, text_data=None, bytes_data=None):
        frame = await self.read_frame(text_data, bytes_data)
        if frame is None:
            return
        if frame.get("type") != "post":
            await self.send_error('unknown frame type; send {"type": "post", "text": "..."}')
            return
        if not await self.post_rate.take():
            await self.refuse_post()
            return
        try:
            message = await database_sync_to_async(services.post_message)(frame.get("text"))
        except services.InvalidInput as exc:
            await self.send_error(str(exc))
            return
        self.log("message posted over websocket id=%s", message.id)

    async def refuse_post(self) -> None:
        """Answer a post over the socket's rate (board/limits.py) with an error frame; the socket stays
        open. Logged once per socket (the first refusal), and counted when it closes."""
        self.posts_refused += 1
        if self.posts_refused == 1:
            logger.warning(
                "board socket over its post rate (%s); refusing posts client=%s",
                self.post_rate.describe(),
                client_address(self.scope),
                extra={"request_id": self.request_id},
            )
        await self.send_json(
            {
                "type": "error",
                "error": f"rate limited: {self.post_rate.describe()}; this post was not stored",
                "retry_after": self.post_rate.retry_after,
            }
        )

    async def disconnect(self, code):
        if getattr(self, "posts_refused", 0):
            self.log("board socket closed after %d posts refused by its rate", self.posts_refused)
        try:
            await self.channel_layer.group_discard(services.BOARD_GROUP, self.channel_name)
        except Exception as exc:  # Redis gone: the group entry expires by itself
            logger.warning("leaving the board group failed: %s", exc)
        await self.leave_drain_group()


class JobConsumer(JsonSocketMixin, AsyncWebsocketConsumer):
    """Sends a job's current state at once, then each step's progress until it is finished."""

    async def connect(self):
        self.setup_request_id()
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        job = await database_sync_to_async(Job.objects.filter(pk=self.job_id).first)()
        if job is None:
            await self.close(code=4404)  # before accept: the handshake is refused
            return
        await self.channel_layer.group_add(services.job_group(self.job_id), self.channel_name)
        await self.join_drain_group()
        await self.accept()
        # Read again after joining, so a step that ran in between is not missed.
        job = await database_sync_to_async(Job.objects.get)(pk=self.job_id)
        self.last_done = -1
        await self.job_progress({"type": "job.progress", **job.as_json()})

    async def job_progress(self, event):
        if event["done"] < self.last_done and event["state"] != Job.FINISHED:
            return  # an older step than the one already sent
        self.last_done = event["done"]
        await self.send_json({**event, "type": "job.progress"})

    async def receive(self, text_data=None, bytes_data=None):
        if await self.read_frame(text_data, bytes_data) is not None:
            await self.send_error("this socket only sends progress; it takes no frames")

    async def disconnect(self, code):
        try:
            await self.channel_layer.group_discard(services.job_group(self.job_id), self.channel_name)
        except Exception as exc:
            logger.warning("leaving the job group failed: %s", exc)
        await self.leave_drain_group()
