"""WebSocket handshakes the app refuses before any consumer runs: a foreign Origin, a path no route takes.

Daphne 4.2 does not implement the ASGI "WebSocket Denial Response" extension
(`websocket.http.response.start`; django/daphne#486, its PR #487 closed unmerged): a handshake the
application closes before accepting is always answered 403, whatever the reason. So a path with no
route is refused with 403 as well, not 404; without the catch-all route it was a ValueError in
URLRouter, a 500 and a traceback in the log.
"""

import io
import logging

from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.middleware.csrf import CsrfViewMiddleware

from .middleware import clean_request_id

logger = logging.getLogger(__name__)

# Paths and origins are client input: log at most this much of one, escaped (%r).
LOGGED_INPUT_CHARS = 200


def header(scope, name: bytes) -> str | None:
    """The first value of a request header of the handshake, or None."""
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def request_id(scope) -> str:
    return clean_request_id(header(scope, b"x-request-id"))


async def refuse(scope, receive, send, reason: str, *args) -> None:
    """Refuse the handshake (Daphne answers 403) and log why, once, at WARNING."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client went away first
    logger.warning("websocket handshake refused: " + reason, *args, extra={"request_id": request_id(scope)})
    await send({"type": "websocket.close"})


def handshake_request(scope) -> ASGIRequest:
    """The handshake as the Django request the same client's HTTP POST would be: Host and
    X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER) mean the same to both."""
    http_scope = {
        **scope,
        "type": "http",
        "method": "GET",
        # Not needed here, and Django would decode it as UTF-8.
        "query_string": b"",
        # A WebSocket scope's scheme is ws or wss (Daphne sets none: ws); behind Nginx,
        # X-Forwarded-Proto decides, as it does for HTTP.
        "scheme": "https" if scope.get("scheme") == "wss" else "http",
    }
    return ASGIRequest(http_scope, io.BytesIO())


def origin_allowed(scope) -> bool:
    """True when the handshake's Origin is one Django's CSRF check accepts for an HTTP POST.

    That check (django.middleware.csrf.CsrfViewMiddleware._origin_verified) accepts the site's own
    origin, scheme://host[:port] with the Host header as sent, and the CSRF_TRUSTED_ORIGINS entries,
    exactly or by their `https://*.example.com` form. Django offers it as no public function; it is
    called here rather than copied so the two can never drift apart (tests/unit/test_handshake.py
    compares the socket's answer with an HTTP POST's for the same origins).
    """
    if header(scope, b"origin") is None:
        return False  # browsers always send one; a handshake without it is not from a page
    request = handshake_request(scope)
    try:
        request.get_host()  # in ALLOWED_HOSTS, as every HTTP request must be
    except DisallowedHost:
        return False
    return CsrfViewMiddleware(lambda request: None)._origin_verified(request)


class SameOriginValidator:
    """ASGI middleware: a WebSocket handshake goes on only from an origin an HTTP POST could come from.

    Channels' AllowedHostsOriginValidator compares host names only, so a page on another port or
    scheme of the same host (http://127.0.0.1:8081 against the site on :8080) could open sockets
    and post, while the same page's HTTP POST got 403. This uses Django's CSRF origin check instead
    (see origin_allowed). A missing Origin is refused.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not origin_allowed(scope):
            origin = header(scope, b"origin")
            shown = "none" if origin is None else repr(origin[:LOGGED_INPUT_CHARS])
            return await refuse(scope, receive, send, "origin %s is not this site's", shown)
        return await self.application(scope, receive, send)


async def no_route(scope, receive, send) -> None:
    """The last WebSocket route: refuses every handshake the routes before it did not take."""
    await refuse(scope, receive, send, "no route for path %r", scope["path"][:LOGGED_INPUT_CHARS])
