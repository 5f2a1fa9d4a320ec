"""Daphne closes a socket whose message is too big with close code 1009, instead of dropping it.

Daphne (4.2) passes `--websocket-max-message-size` / `--websocket-max-frame-size` to autobahn, which
fails a connection over them with 1009 "message too big" (RFC 6455 7.4.1). But autobahn's servers
default to `failByDrop`: failing a connection means cutting TCP without a close frame, so the client
(through Nginx too) sees only 1006 "abnormal closure", the same as a crash. Daphne has no option for
it; this sets autobahn's `failByDrop=False` on the factory Daphne builds, so a failed connection
sends its close frame (1009 here, 1002 for a protocol error) and then closes, within autobahn's
closing-handshake timeout. Deploy variable: daphne_ws_max_message_size (deploy/defaults.yml).

`install()` runs when config.asgi is imported, which Daphne's command line does before it builds
its server. It leans on `daphne.server.WebSocketFactory` (daphne 4.2.3, pinned in requirements.txt);
tests/unit/test_socket_limits.py runs a real Daphne and fails if an upgrade changes it.
"""

import logging

logger = logging.getLogger(__name__)


def install() -> bool:
    """Make Daphne's WebSocket factory send a close frame when it fails a connection.

    Returns True when installed (or already), False when Daphne is not importable (another ASGI
    server runs the app: nothing to do).
    """
    try:
        from daphne import server
    except ImportError:
        return False
    if getattr(server.WebSocketFactory, "closes_failed_connections", False):
        return True

    class WebSocketFactory(server.WebSocketFactory):
        """daphne.ws_protocol.WebSocketFactory with autobahn's failByDrop off."""

        closes_failed_connections = True

        def setProtocolOptions(self, **options):  # noqa: N802 (autobahn's name)
            options.setdefault("failByDrop", False)
            super().setProtocolOptions(**options)

    server.WebSocketFactory = WebSocketFactory
    return True
