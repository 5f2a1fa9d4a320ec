"""WebSocket routes: one room per path, /ws/chat/<room>/ (room: 1-50 letters, digits, "-", "_")."""

from django.urls import re_path

from chat.consumers import RoomConsumer

websocket_urlpatterns = [
    re_path(r"^ws/chat/(?P<room>[-\w]{1,50})/$", RoomConsumer.as_asgi()),
]
