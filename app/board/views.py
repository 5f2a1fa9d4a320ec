"""The board page, the JSON API and the health probe. Every API error is JSON: {"error": "..."}."""

import json
import logging
import os

import redis
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET
from supervisor import childutils

from . import services
from .models import Job

logger = logging.getLogger(__name__)

BOARD_PAGE_SIZE = 50
API_MAX_LIMIT = 200


def error(status: int, message: str, **headers) -> JsonResponse:
    return JsonResponse({"error": message}, status=status, headers=headers)


def method_not_allowed(allowed: list[str]) -> JsonResponse:
    return error(405, f"method not allowed; use {', '.join(allowed)}", Allow=", ".join(allowed))


def read_json_object(request) -> dict:
    if request.content_type != "application/json":
        raise services.InvalidInput("Content-Type must be application/json")
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise services.InvalidInput(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise services.InvalidInput("the body must be a JSON object")
    return data


def int_param(request, name: str, default: int, low: int, high: int) -> int:
    raw = request.GET.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise services.InvalidInput(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise services.InvalidInput(f"{name} must be between {low} and {high}")
    return value


@require_GET
@ensure_csrf_cookie
def board(request):
    messages = services.latest_messages(BOARD_PAGE_SIZE)
    last_id = messages[-1].id if messages else 0
    return render(request, "board/index.html", {"messages": messages, "last_id": last_id})


def messages(request):
    try:
        if request.method == "GET":
            after = int_param(request, "after", 0, 0, 2**63 - 1)
            limit = int_param(request, "limit", BOARD_PAGE_SIZE, 1, API_MAX_LIMIT)
            page = services.messages_after(after, limit + 1)
            return JsonResponse({"messages": [m.as_json() for m in page[:limit]], "has_more": len(page) > limit})
        if request.method == "POST":
            message = services.post_message(read_json_object(request).get("text"))
            return JsonResponse(message.as_json(), status=201)
    except services.InvalidInput as exc:
        return error(400, str(exc))
    except RequestDataTooBig:
        return error(413, "request body too large")
    return method_not_allowed(["GET", "POST"])


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


@require_GET
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
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
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
    checks = {"database": check_database, "channel_layer": check_channel_layer}
    # supervisor tells its programs where it listens; outside supervisor there is nothing to ask.
    if "SUPERVISOR_SERVER_URL" in os.environ:
        checks["programs"] = check_programs
    return checks


@require_GET
def healthz(request):
    checks = {}
    for name, check in health_checks().items():
        try:
            checks[name] = check()
        except Exception as exc:
            checks[name] = f"error: {exc}"
            logger.warning("health check %s failed: %s", name, exc)
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


def csrf_failure(request, reason=""):
    return error(403, f"CSRF verification failed: {reason}")
