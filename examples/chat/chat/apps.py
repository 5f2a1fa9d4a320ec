from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The chat example's one app: rooms over WebSocket and their archive."""

    name = "chat"
