"""URLs of the chat example: the page, a room's archive, and the health probes.

Gunicorn and Daphne both load them; Nginx sends /ws/ to Daphne, so /ws/status probes the ASGI tier
and /status the WSGI tier (deploy-vars.yml app_health_path, app_ws_health_path).
"""

from django.urls import path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/<slug:room>/archive", views.archive, name="archive"),
    path("status", views.status, name="status"),
    path("ws/status", views.status, name="ws-status"),
]
