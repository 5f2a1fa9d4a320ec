"""The room consumer: every socket of a room gets every message sent to it, whichever Daphne process
holds it (a channel layer group per room), and each message goes to the archive worker."""

import json
import time
import uuid

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from chat.archive import ARCHIVE_CHANNEL

# Longest message text, in characters.
MAX_TEXT = 500


def room_group(room: str) -> str:
    """The channel layer group of a room."""
    return f"room.{room}"


class RoomConsumer(AsyncJsonWebsocketConsumer):
    """A socket in one room. Frames from the client: {"text": str}; to the client: {"type": "ready",
    "room", "served_by": "host:port" of the Daphne process}, then {"type": "message", "id", "room",
    "text", "at": UNIX seconds} for each message of the room, or {"type": "error", "error"} for a
    frame it refused (the socket stays open)."""

    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(room_group(self.room), self.channel_name)
        await self.accept()
        # The Daphne process's listening address (ASGI's optional "server"; Daphne sets it).
        host, port = self.scope.get("server") or ("", None)
        await self.send_json({"type": "ready", "room": self.room, "served_by": f"{host}:{port}"})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(room_group(self.room), self.channel_name)

    @classmethod
    async def decode_json(cls, text_data):
        # A frame that is not JSON is refused like a bad message, not by closing the socket.
        try:
            return json.loads(text_data)
        except ValueError:
            return None

    async def receive_json(self, content, **kwargs):
        text = content.get("text") if isinstance(content, dict) else None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            await self.send_json({"type": "error", "error": f'expected {{"text": 1 to {MAX_TEXT} characters}}'})
            return
        message = {"id": uuid.uuid4().hex, "room": self.room, "text": text, "at": time.time()}
        await self.channel_layer.group_send(room_group(self.room), {"type": "chat.message", **message})
        await self.channel_layer.send(ARCHIVE_CHANNEL, {"type": "archive.message", **message})

    async def chat_message(self, event):
        await self.send_json({"type": "message", **{k: event[k] for k in ("id", "room", "text", "at")}})
