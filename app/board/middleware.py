"""Request ids: taken from Nginx's X-Request-ID (or made here), put on every log line and response;
and bad requests logged as what they are."""

import contextvars
import logging
import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def clean_request_id(value: str | None) -> str:
    """Return value if it is a well-formed request id, else a new one (never log raw input)."""
    if value and _VALID_ID.match(value):
        return value
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Sync and async (Django's "sync_and_async_middleware"): under ASGI a sync middleware would run
    the rest of the request, view included, from a thread it blocks for the request's whole life,
    one blocked thread per parked long poll (board/longpoll.py)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        token = self.start(request)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        return self.finish(request, response)

    async def __acall__(self, request):
        token = self.start(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id_var.reset(token)
        return self.finish(request, response)

    @staticmethod
    def start(request) -> contextvars.Token:
        request.request_id = clean_request_id(request.headers.get("X-Request-ID"))
        return request_id_var.set(request.request_id)

    @staticmethod
    def finish(request, response):
        response["X-Request-ID"] = request.request_id
        return response


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record so the log format can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class ClientErrorFilter(logging.Filter):
    """Logs a request Django answered with a 4xx as one WARNING line, without a traceback.

    Django logs a SuspiciousOperation (DisallowedHost, TooManyFieldsSent, a malformed multipart
    body) at ERROR with its traceback, which reads like a crash of the app; it was the client's
    mistake, and the answer (400) already says so.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = None
            record.exc_text = None
        return True
