"""The room archive: the `chat-archive` worker appends each message to its room's file in the data
directory (APP_DATA_DIR/archive/<room>.jsonl, one JSON object a line), keeping the last
CHAT_ARCHIVE_KEEP; GET /rooms/<room>/archive reads it back.

A message reaches the worker through the channel layer ("chat-archive" channel): it waits in Redis
until a worker takes it, so a worker that is restarting loses nothing sent meanwhile (within
channels-redis' expiry, 60 s).
"""

import fcntl
import json
import logging
import re
from pathlib import Path

from channels.consumer import SyncConsumer
from django.conf import settings

ARCHIVE_CHANNEL = "chat-archive"
ROOM_PATTERN = re.compile(r"^[-\w]{1,50}$")

logger = logging.getLogger(__name__)


def archive_dir() -> Path:
    """Directory of the room files."""
    return Path(settings.DATA_DIR) / "archive"


def archive_path(room: str) -> Path:
    """The file of `room`; ValueError for a name that is not a room's (it could leave the directory)."""
    if not ROOM_PATTERN.match(room):
        raise ValueError(f"not a room name: {room!r}")
    return archive_dir() / f"{room}.jsonl"


def append(room: str, entry: dict, keep: int) -> None:
    """Adds entry to the room's file and drops all but the last `keep` lines, under an exclusive lock
    (several worker processes may archive the same room)."""
    path = archive_path(room)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        lines = file.read().splitlines()[-(keep - 1) :] if keep > 1 else []
        lines.append(json.dumps(entry, ensure_ascii=False))
        file.seek(0)
        file.truncate()
        file.write("\n".join(lines) + "\n")


def read(room: str) -> list[dict]:
    """The room's archived messages, oldest first; [] for a room never archived."""
    try:
        text = archive_path(room).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


class ArchiveConsumer(SyncConsumer):
    """Consumer of the "chat-archive" channel: {"type": "archive.message", "id", "room", "text", "at"}."""

    def archive_message(self, message):
        entry = {key: message[key] for key in ("id", "text", "at")}
        append(message["room"], entry, settings.CHAT_ARCHIVE_KEEP)
        logger.info("archived message %s of room %s", message["id"], message["room"])
