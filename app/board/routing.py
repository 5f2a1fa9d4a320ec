from django.urls import path, re_path

from . import consumers, handshake

websocket_urlpatterns = [
    path("ws/board/", consumers.BoardConsumer.as_asgi()),
    path("ws/jobs/<int:job_id>/", consumers.JobConsumer.as_asgi()),
    # Last: any other path is refused at the handshake (403, one WARNING line), not a 500.
    re_path(r"", handshake.no_route),
]
