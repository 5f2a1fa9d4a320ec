"""
ASGI config for the chat example.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
# Set up Django before anything imports a consumer.
django_asgi_app = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.archive import ARCHIVE_CHANNEL, ArchiveConsumer  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # Pages and /ws/status (Daphne's health probe: Nginx sends everything under /ws/ here).
        "http": django_asgi_app,
        # No users, so no AuthMiddlewareStack; a handshake from another site's page is refused.
        "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
        # `manage.py runworker chat-archive` (deploy-vars.yml worker_channels) runs this consumer.
        "channel": ChannelNameRouter({ARCHIVE_CHANNEL: ArchiveConsumer.as_asgi()}),
    }
)
