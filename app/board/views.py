"""The board page, the JSON API and the health probe. Every API error is JSON: {"error": "..."}."""

import functools
import logging
import os

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_safe
from supervisor import childutils

from config.redis_hosts import sync_client

from . import longpoll, services
from .models import Job

logger = logging.getLogger(__name__)

BOARD_PAGE_SIZE = 50
API_MAX_LIMIT = 200
# GET /api/messages/wait's `timeout` in seconds (issue 14's contract): Nginx's proxy_read_timeout for
# the location is above the maximum (deploy/nginx/channels-stack.conf.j2; tests/unit/test_longpoll.py).
LONGPOLL_DEFAULT_TIMEOUT = 25
LONGPOLL_MAX_TIMEOUT = 55
# What the page may use to stay live, in the order it tries them (board.js), per deploy mode.
TRANSPORTS = {"split": "websocket longpoll poll", "asgi": "websocket longpoll poll", "wsgi": "poll"}


def error(status: int, message: str, **headers) -> JsonResponse:
    return JsonResponse({"error": message}, status=status, headers=headers)


# Every GET endpoint answers HEAD too (monitors and load balancers probe with it); the WSGI and ASGI
# servers and Nginx send no body with the answer.
SAFE_METHODS = ["GET", "HEAD"]


def method_not_allowed(allowed: list[str]) -> JsonResponse:
    return error(405, f"method not allowed; use {', '.join(allowed)}", Allow=", ".join(allowed))


def json_methods(*allowed: str):
    """Like Django's require_http_methods, but the 405 is JSON like every other API error."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if request.method not in allowed:
                return method_not_allowed(list(allowed))
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def read_json_object(request) -> dict:
    if request.content_type != "application/json":
        raise services.InvalidInput("Content-Type must be application/json")
    return services.parse_json_object(request.body, "the body")


def int_param(request, name: str, default: int, low: int, high: int) -> int:
    return services.parse_int(name, request.GET.get(name), default, low, high)


@require_safe
@ensure_csrf_cookie
def board(request):
    messages = services.latest_messages(BOARD_PAGE_SIZE)
    last_id = messages[-1].id if messages else 0
    context = {"messages": messages, "last_id": last_id, "transports": page_transports()}
    return render(request, "board/index.html", context)


def deploy_mode() -> str:
    """settings.DEPLOY_MODE (split, asgi or wsgi: README "Deploy modes"); split where it is not set."""
    return getattr(settings, "DEPLOY_MODE", "split")


def page_transports() -> str:
    """The page's data-transports: what this deployment offers, space-separated, preferred first."""
    return TRANSPORTS[deploy_mode()]


def messages(request):
    try:
        if request.method in SAFE_METHODS:
            after = int_param(request, "after", 0, 0, services.MAX_ID)
            limit = int_param(request, "limit", BOARD_PAGE_SIZE, 1, API_MAX_LIMIT)
            return JsonResponse(services.messages_page(after, limit))
        if request.method == "POST":
            message = services.post_message(read_json_object(request).get("text"))
            return JsonResponse(message.as_json(), status=201)
    except services.InvalidInput as exc:
        return error(400, str(exc))
    except RequestDataTooBig:
        return error(413, "request body too large")
    return method_not_allowed([*SAFE_METHODS, "POST"])


async def messages_wait(request):
    """GET /api/messages/wait?after=N[&limit=L][&timeout=S]: long polling (board/longpoll.py).

    Answers like GET /api/messages (same `after` and `limit`) as soon as messages after N are stored,
    waiting up to `timeout` seconds (default LONGPOLL_DEFAULT_TIMEOUT, 0 to LONGPOLL_MAX_TIMEOUT) for
    the next one; after the timeout `{"messages": [], "has_more": false}`. Served by Daphne only:
    under WSGI (Gunicorn, or deploy mode wsgi) 404 at once, so no WSGI worker is ever held. Errors
    (JSON): 400 bad after/limit/timeout, 405 other than GET/HEAD, 503 when Redis is unreachable.
    """
    if not isinstance(request, ASGIRequest) or deploy_mode() == "wsgi":
        return error(404, "long polling needs the ASGI server (deploy_mode split or asgi)")
    if request.method not in SAFE_METHODS:
        return method_not_allowed(SAFE_METHODS)
    try:
        after = int_param(request, "after", 0, 0, services.MAX_ID)
        limit = int_param(request, "limit", BOARD_PAGE_SIZE, 1, API_MAX_LIMIT)
        timeout = int_param(request, "timeout", LONGPOLL_DEFAULT_TIMEOUT, 0, LONGPOLL_MAX_TIMEOUT)
    except services.InvalidInput as exc:
        return error(400, str(exc))
    try:
        body = await longpoll.wait_for_messages(after, limit, timeout)
    except longpoll.LayerUnavailable as exc:
        logger.warning("long poll refused: %s", exc)
        unavailable = "long polling is unavailable (the channel layer is unreachable); retry later"
        return error(503, unavailable, **{"Retry-After": "5"})
    return HttpResponse(body, content_type="application/json")


def jobs(request):
    if request.method != "POST":
        return method_not_allowed(["POST"])
    try:
        job = services.create_job(read_json_object(request).get("steps"))
    except services.InvalidInput as exc:
        return error(400, str(exc))
    except RequestDataTooBig:
        return error(413, "request body too large")
    return JsonResponse({"id": job.id, "state": job.state}, status=202, headers={"Location": f"/api/jobs/{job.id}"})


@json_methods(*SAFE_METHODS)
def job_detail(request, job_id: int):
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return error(404, f"job {job_id} not found")
    return JsonResponse(job.as_json())


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_channel_layer() -> str:
    client = sync_client(settings.REDIS_HOSTS[0], timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_programs() -> str:
    """No supervisor program may be FATAL (given up on); STOPPED is an operator's choice, not a fault."""
    infos = childutils.getRPCInterface(os.environ).supervisor.getAllProcessInfo()
    fatal = sorted(f"{info['group']}:{info['name']}" for info in infos if info["statename"] == "FATAL")
    if fatal:
        raise RuntimeError(f"FATAL: {', '.join(fatal)}")
    return "ok"


def health_checks() -> dict:
    """The checks /healthz runs, by name: the database, Redis (not in deploy_mode wsgi: no channel
    layer there) and, under supervisor, that no program is FATAL."""
    checks = {"database": check_database}
    if services.uses_channel_layer():
        checks["channel_layer"] = check_channel_layer
    # supervisor tells its programs where it listens; outside supervisor there is nothing to ask.
    if "SUPERVISOR_SERVER_URL" in os.environ:
        checks["programs"] = check_programs
    return checks


@json_methods(*SAFE_METHODS)
def healthz(request):
    checks = {}
    for name, check in health_checks().items():
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = f"error: {exc}"
            logger.warning("health check %s failed: %s", name, exc)
    if hasattr(request, "scope"):
        # Under ASGI (Daphne) a view runs on a thread of its own that ends with the request, so a
        # persistent connection (CONN_MAX_AGE) would only wait for the garbage collector: close it.
        # Django advises against persistent connections under ASGI for this reason; the consumers'
        # database calls run on one long-lived thread (database_sync_to_async), where they work
        # as under WSGI (README "PostgreSQL").
        connection.close()
    healthy = all(result == "ok" for result in checks.values())
    body = {
        "status": "ok" if healthy else "error",
        "checks": checks,
        # Which tier answered: Gunicorn (WSGI) or Daphne (ASGI).
        "interface": "asgi" if hasattr(request, "scope") else "wsgi",
    }
    if not healthy:
        body["failing"] = [name for name, result in checks.items() if result != "ok"]
    return JsonResponse(body, status=200 if healthy else 503)


def bad_request(request, exception=None):
    """Django's 400 for a request it could not parse (handler400), as a JSON error."""
    return error(400, "bad request: it could not be read")


def csrf_failure(request, reason=""):
    return error(403, f"CSRF verification failed: {reason}")
