"""Django's ASGI handler for requests that are parked (long polling), without a thread per request.

Django's ASGIHandler runs every request in an asgiref ThreadSensitiveContext: the first sync call of
the request (every MiddlewareMixin middleware's process_request is one) starts an OS thread that
lives, idle, until the request ends. A long poll lasts up to 55 s, so 1,000 parked requests held
1,000 threads in one Daphne process; measured on the compose stack (pids_limit 512), about 490
parked requests made Daphne fail with "can't start new thread", its /ws/healthz included.

`ParkedRequestHandler` is Django's handler without that context: the requests' sync calls run on
asgiref's one thread-sensitive thread of the process, the one the consumers' database calls use
(`database_sync_to_async`), each call a few microseconds of middleware; the view itself is async and
does its database reads on the event loop's thread pool (board/longpoll.py). Everything else
(middleware, URL resolution, the view, disconnect handling) is Django's own.
"""

from django.core.handlers.asgi import ASGIHandler

# Paths served by ParkedRequestHandler (config/asgi.py); everything else gets Django's own handler.
PARKED_PATHS = frozenset({"/api/messages/wait"})


class ParkedRequestHandler(ASGIHandler):
    """ASGIHandler whose requests share the process's thread-sensitive thread (see the module)."""

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        await self.handle(scope, receive, send)


def route_parked(django_app, parked_app):
    """An ASGI app for HTTP that sends PARKED_PATHS to parked_app and every other path to django_app."""

    async def http(scope, receive, send):
        app = parked_app if scope.get("path") in PARKED_PATHS else django_app
        await app(scope, receive, send)

    return http
