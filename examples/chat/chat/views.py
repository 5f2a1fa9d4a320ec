"""HTTP views of the chat example: the page, a room's archive, and the health probe."""

import logging
import os

import redis
from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from chat import archive as room_archive

logger = logging.getLogger(__name__)

# Seconds a health probe waits for Redis.
REDIS_TIMEOUT = 2


@ensure_csrf_cookie
def index(request):
    """The chat page (static/chat/chat.js joins a room over /ws/chat/<room>/)."""
    return render(request, "chat/index.html")


def archive(request, room):
    """GET: the room's archived messages, {"room", "messages": [{"id", "text", "at"}, ...]} oldest
    first; 404 for a name that is not a room's."""
    try:
        messages = room_archive.read(room)
    except ValueError:
        raise Http404("no such room") from None
    return JsonResponse({"room": room, "messages": messages})


def check_redis() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_archive() -> str:
    directory = room_archive.archive_dir()
    directory.mkdir(parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK):
        raise OSError(f"{directory} is not writable")
    return "ok"


def status(request):
    """The health probe (the stack's contract, README "Use it for your project"): 200 {"status": "ok",
    "checks", "interface"} when Redis answers and the archive is writable, else 503 with "status":
    "error" and "failing". "interface" says which tier answered: "wsgi" (Gunicorn) or "asgi" (Daphne)."""
    checks = {}
    for name, check in (("redis", check_redis), ("archive", check_archive)):
        try:
            checks[name] = check()
        except Exception as exc:  # noqa: BLE001 (any failure is "unhealthy", named in the answer)
            checks[name] = f"error: {exc}"
            logger.warning("health check %s failed: %s", name, exc)
    healthy = all(result == "ok" for result in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "checks": checks,
        "interface": "asgi" if hasattr(request, "scope") else "wsgi",
    }
    if not healthy:
        body["failing"] = [name for name, result in checks.items() if result != "ok"]
    return JsonResponse(body, status=200 if healthy else 503)
