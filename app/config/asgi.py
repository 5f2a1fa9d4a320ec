"""
ASGI config for the channels-stack project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import os

from django.core.asgi import get_asgi_application

from config import daphne_close

# An over-size message gets close code 1009, not a dropped connection (config/daphne_close.py).
daphne_close.install()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Set up Django (apps, models) before anything imports a consumer.
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from board.handshake import SameOriginValidator  # noqa: E402
from board.jobs import JobRunnerConsumer  # noqa: E402
from board.routing import websocket_urlpatterns  # noqa: E402
from config.parked_http import ParkedRequestHandler, route_parked  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Long polls without Django's thread per request (config/parked_http.py); the rest as Django does.
        "http": route_parked(django_asgi_app, ParkedRequestHandler()),
        # A handshake is refused unless its Origin is one an HTTP POST to this site may come from
        # (Django's CSRF origin check: scheme, host and port, or CSRF_TRUSTED_ORIGINS). Channels'
        # AllowedHostsOriginValidator compares host names only, so it is not used.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        # `manage.py runworker jobs` runs this consumer for messages on the "jobs" channel.
        "channel": ChannelNameRouter({"jobs": JobRunnerConsumer.as_asgi()}),
    }
)
