"""The chat example's own tests; tests/unit/test_example_chat.py runs them (from examples/chat:
`DJANGO_DEBUG=1 python -m pytest --ds=chatsite.settings chat/tests.py`)."""

import json
import tempfile

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import SimpleTestCase, override_settings

from chat import archive
from chat.archive import ARCHIVE_CHANNEL, ArchiveConsumer
from chat.routing import websocket_urlpatterns

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def room_socket(room: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/chat/{room}/")


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
class RoomConsumerTests(SimpleTestCase):
    async def test_a_message_reaches_its_room_and_the_archive_channel_but_no_other_room(self):
        """Tests that a message goes to every socket of its room, none of another, and to chat-archive."""
        await get_channel_layer().flush()  # the in-memory layer outlives a test
        sockets = [room_socket("a"), room_socket("a"), room_socket("b")]
        for socket in sockets:
            connected, _ = await socket.connect()
            assert connected
            assert (await socket.receive_json_from())["type"] == "ready"
        await sockets[0].send_json_to({"text": "hi"})
        for socket in sockets[:2]:
            message = await socket.receive_json_from()
            assert (message["type"], message["room"], message["text"]) == ("message", "a", "hi")
        assert await sockets[2].receive_nothing()
        queued = await get_channel_layer().receive(ARCHIVE_CHANNEL)
        assert (queued["type"], queued["room"], queued["text"]) == ("archive.message", "a", "hi")
        for socket in sockets:
            await socket.disconnect()

    async def test_a_bad_frame_gets_an_error_and_the_socket_stays_open(self):
        """Tests that non-JSON, empty and over-long texts get an error frame, then a good one is sent."""
        socket = room_socket("c")
        await socket.connect()
        await socket.receive_json_from()
        for frame in ("not json", json.dumps({"text": ""}), json.dumps({"text": "x" * 501})):
            await socket.send_to(text_data=frame)
            assert (await socket.receive_json_from())["type"] == "error"
        await socket.send_json_to({"text": "ok"})
        assert (await socket.receive_json_from())["text"] == "ok"
        await socket.disconnect()

    async def test_a_path_that_is_not_a_room_is_refused(self):
        """Tests that a room name with other characters matches no route."""
        with pytest.raises(ValueError, match="No route found"):
            await room_socket("a%20b").connect()


class ArchiveTests(SimpleTestCase):
    def setUp(self):
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        self.enterContext(override_settings(DATA_DIR=directory.name, CHAT_ARCHIVE_KEEP=2))

    def test_the_worker_archives_messages_and_keeps_the_last_ones(self):
        """Tests that the chat-archive handler appends each message to its room, keeping CHAT_ARCHIVE_KEEP."""
        worker = ArchiveConsumer()
        for n in range(3):
            worker.archive_message({"type": "archive.message", "id": str(n), "room": "r", "text": f"m{n}", "at": n})
        assert [m["text"] for m in archive.read("r")] == ["m1", "m2"]

    def test_a_name_that_is_not_a_room_has_no_archive_file(self):
        """Tests that a name that could leave the archive directory is refused."""
        with pytest.raises(ValueError, match="not a room name"):
            archive.archive_path("../settings")

    def test_the_archive_view_and_health_probe_answer(self):
        """Tests that the archive is served as JSON and /status is 503 naming redis when Redis is unreachable."""
        archive.append("r", {"id": "1", "text": "kept", "at": 1}, keep=5)
        response = self.client.get("/rooms/r/archive")
        assert response.json() == {"room": "r", "messages": [{"id": "1", "text": "kept", "at": 1}]}
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            status = self.client.get("/status")
        assert (status.status_code, status.json()["failing"]) == (503, ["redis"])
