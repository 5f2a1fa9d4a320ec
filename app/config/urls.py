"""URL configuration: the board page, the JSON API and the health probes.

Gunicorn and Daphne both load these; Nginx sends /ws/ to Daphne, so /ws/healthz probes the ASGI
tier and /healthz the WSGI tier.
"""

from django.urls import path

from board import views

urlpatterns = [
    path("", views.board, name="board"),
    path("api/messages", views.messages, name="messages"),
    # Long polling: Nginx sends it to Daphne (under Gunicorn it answers 404).
    path("api/messages/wait", views.messages_wait, name="messages-wait"),
    path("api/jobs", views.jobs, name="jobs"),
    path("api/jobs/<int:job_id>", views.job_detail, name="job-detail"),
    path("healthz", views.healthz, name="healthz"),
    path("ws/healthz", views.healthz, name="ws-healthz"),
]

# Django's own 400s (a malformed form body, too many query parameters) are JSON like the API's.
handler400 = "board.views.bad_request"
