"""What the HTTP views and the WebSocket consumers share: validation, storing, broadcasting."""

import json
import logging
import re
import socket
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import ordering
from .models import Job, Message

logger = logging.getLogger(__name__)

BOARD_GROUP = "board"
JOBS_CHANNEL = "jobs"
# The CHANNEL_LAYERS alias (config/settings.py) of the job queue: a queue, not pub/sub.
JOBS_LAYER = "jobs"
# Largest id a database stores (a signed 64-bit integer): the top of every `after` range.
MAX_ID = 2**63 - 1


class InvalidInput(ValueError):
    """Input a client sent that the app refuses; the message is shown to the client as is."""


def job_group(job_id: int) -> str:
    return f"job-{job_id}"


def drain_group(host: str | None = None) -> str:
    """The group every socket of this host's Daphne processes is in ("drain-<hostname>"): a rolling
    deploy closes them all with one group_send (`manage.py drain`) before the host restarts."""
    return "drain-" + re.sub(r"[^A-Za-z0-9._-]", "-", host or socket.gethostname())[:90]


def parse_json_object(raw: str | bytes, what: str) -> dict:
    """Return a client's JSON (an HTTP body or a socket frame) as a dict, or raise InvalidInput.

    Everything json.loads can raise on input is a refusal, not a crash: malformed JSON, bytes that
    are not UTF-8, nesting deeper than Python's recursion limit, integers over its digit limit.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidInput("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limit
        raise InvalidInput(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return data


_INTEGER = re.compile(r"-?[0-9]+")


def parse_int(name: str, raw: str | None, default: int | None, low: int, high: int) -> int | None:
    """Return a query parameter as an integer in [low, high], default when absent or empty.

    Only ASCII digits count: Python's int() would also take "1_000", " 7 " and other scripts' digits.
    """
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        raise InvalidInput(f"{name} must be an integer")
    try:
        value = int(raw)
    except ValueError:  # more digits than Python converts: far out of range anyway
        value = None
    if value is None or not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def check_storable(text: str, name: str) -> None:
    """Refuse text a database cannot store: NUL (PostgreSQL rejects it) and lone UTF-16 surrogates,
    which JSON's "\\ud800" escapes can produce but UTF-8 cannot encode (SQLite's driver fails)."""
    if "\x00" in text:
        raise InvalidInput(f"{name} must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f"{name} must be valid Unicode: a lone surrogate (U+{ord(text[exc.start]):04X}) cannot be stored"
        ) from None


def validate_text(value) -> str:
    if not isinstance(value, str):
        raise InvalidInput("text must be a string")
    text = value.strip()
    if not text:
        raise InvalidInput("text must not be blank")
    if len(text) > Message.MAX_LENGTH:
        raise InvalidInput(f"text must be at most {Message.MAX_LENGTH} characters")
    check_storable(text, "text")
    return text


def validate_steps(value) -> int:
    # bool is an int in Python; `true` is not a step count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput("steps must be an integer")
    if not 1 <= value <= Job.MAX_STEPS:
        raise InvalidInput(f"steps must be between 1 and {Job.MAX_STEPS}")
    return value


def uses_channel_layer() -> bool:
    """Whether this deployment has a channel layer: False in deploy_mode wsgi (settings.DEPLOY_MODE),
    where messages are only stored (browsers poll for them) and jobs only queued in the database
    (`manage.py pollworker` claims them); True in split and asgi."""
    return settings.DEPLOY_MODE != "wsgi"


def post_message(text) -> Message:
    """Store a message, then broadcast it to the board once the transaction has committed (not in
    deploy_mode wsgi: no channel layer, uses_channel_layer()).

    Messages commit in id order (board.ordering: one lock per insert on PostgreSQL), which the
    board consumer's "each id once, ascending" relies on. Raises InvalidInput for text the app
    refuses (validate_text).
    """
    text = validate_text(text)
    with transaction.atomic():
        ordering.lock_message_ids()
        message = Message.objects.create(text=text)
        if uses_channel_layer():
            transaction.on_commit(lambda: broadcast_message(message))
    logger.info("message stored id=%s", message.id)
    return message


def message_frame(message: Message) -> str:
    """The board socket's frame for a message, as JSON text: {"type": "message", "id", "text", "created"}."""
    return json.dumps({"type": "message", **message.as_json()})


def board_event(message: Message) -> dict:
    """The group message for the board: the id (for ordering and gap fill in the consumer) and the
    frame already serialised, so N sockets cost one json.dumps, not N (issue 9)."""
    return {"type": "board.message", "id": message.id, "frame": message_frame(message)}


def broadcast_message(message: Message) -> None:
    # The message is stored already: a broadcast that fails (Redis down) is logged, not raised,
    # and clients pick the message up from the database when they reconnect.
    try:
        async_to_sync(get_channel_layer().group_send)(BOARD_GROUP, board_event(message))
    except Exception:
        logger.exception("broadcast of message id=%s failed; clients will backfill it", message.id)


def create_job(steps) -> Job:
    """Store a job and hand it to the workers once the transaction has committed; in deploy_mode wsgi
    (no channel layer) it stays queued in the database, where `manage.py pollworker` claims it."""
    steps = validate_steps(steps)
    lease = timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    with transaction.atomic():
        job = Job.objects.create(total=steps, lease_until=lease)
        if uses_channel_layer():
            transaction.on_commit(lambda: dispatch_job(job.id))
    logger.info("job queued id=%s steps=%s", job.id, steps)
    return job


def dispatch_job(job_id: int) -> None:
    # Channel delivery is at-most-once: if this send fails or the message is lost, the job's lease
    # runs out and a worker's sweeper sends it again.
    try:
        async_to_sync(get_channel_layer(JOBS_LAYER).send)(JOBS_CHANNEL, {"type": "job.run", "id": job_id})
    except Exception:
        logger.exception("sending job id=%s to the workers failed; the lease sweeper will retry", job_id)


def messages_after(after: int, limit: int) -> list[Message]:
    return list(Message.objects.filter(id__gt=after).order_by("id")[:limit])


def messages_page(after: int, limit: int) -> dict:
    """GET /api/messages' answer, also the long poll's: `{"messages": [as_json, ...], "has_more": bool}`,
    the first `limit` messages with id > after in id order; has_more when more were stored."""
    page = messages_after(after, limit + 1)
    return {"messages": [m.as_json() for m in page[:limit]], "has_more": len(page) > limit}


def latest_messages(count: int) -> list[Message]:
    return list(reversed(Message.objects.order_by("-id")[:count]))
