"""The JSON API and the board page, through Django's test client, with a real Redis behind."""

import asyncio
import contextlib
import io
import json
import logging

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import AsyncClient, Client
from layer_settings import channel_layers_at

from board import services
from board.models import Job, Message

# Also run on PostgreSQL (make test-unit: UNIT_DATABASE=postgresql -m postgresql).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]


@contextlib.contextmanager
def app_log():
    """What the app's configured log handler (settings.LOGGING "stderr", with its filters) writes meanwhile."""
    (handler,) = [h for h in logging.getLogger().handlers if h.name == "stderr"]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


def test_post_message_returns_201_with_the_stored_message(api):
    """Tests that a valid message is stored and answered with 201, its id, text and time."""
    response = api.post("/api/messages", {"text": "  hello board  "})
    assert response.status_code == 201
    body = response.json()
    assert body["text"] == "hello board"
    assert set(body) == {"id", "text", "created"}
    assert Message.objects.get(pk=body["id"]).text == "hello board"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("{}", "text must be a string"),
        ('{"text": 42}', "text must be a string"),
        ('{"text": ["a"]}', "text must be a string"),
        ('{"text": "   "}', "text must not be blank"),
        (json.dumps({"text": "x" * 501}), "at most 500 characters"),
        # Text no database can store: a lone surrogate (as a JSON escape, or as the raw UTF-8-style
        # bytes json.loads lets through) and NUL, which PostgreSQL refuses.
        ('{"text": "\\ud800"}', "lone surrogate (U+D800)"),
        ('{"text": "ok \\udfff ok"}', "lone surrogate (U+DFFF)"),
        (b'{"text": "\xed\xa0\x80"}', "lone surrogate (U+D800)"),
        ('{"text": "a\\u0000b"}', "must not contain NUL"),
        # What json.loads raises besides JSONDecodeError: too deep, an integer over the digit limit.
        ("[" * 50_000, "nested too deeply"),
        ('{"text": ' + "9" * 5000 + "}", "invalid JSON"),
        (b'{"text": "\xff"}', "invalid JSON"),
    ],
)
def test_post_message_with_bad_input_is_answered_400_and_stores_nothing(client, body, error):
    """Tests that each kind of bad message body gets a 400 naming the problem and stores nothing."""
    response = client.post("/api/messages", body, content_type="application/json")
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    ["[" * 50_000, '{"steps": ' + "9" * 5000 + "}"],
    ids=["nested-too-deeply", "integer-over-digit-limit"],
)
def test_post_job_with_json_that_python_cannot_parse_is_answered_400(client, body):
    """Tests that the job endpoint refuses JSON json.loads raises on with 400, like the message endpoint."""
    response = client.post("/api/jobs", body, content_type="application/json")
    assert response.status_code == 400
    assert "invalid JSON" in response.json()["error"]
    assert Job.objects.count() == 0


# Emoji (with skin tone, ZWJ sequence and flag), Hebrew and Arabic (right to left), mixed direction
# with a bidi mark, combining accents, and a character outside the Basic Multilingual Plane.
UNICODE_TEXTS = [
    "party 🎉👍🏽 family 👩‍👩‍👧 flag 🇺🇦",
    "שלום עולם",
    "مرحبا بالعالم",
    "abc \u200fשלום\u200e 123 عربى",
    "e\u0301 a\u0308 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_emoji_and_right_to_left_text_round_trip_unchanged(api, client, text):
    """Tests that any storable text comes back from POST, the list and the page exactly as sent."""
    response = api.post("/api/messages", {"text": text})
    assert response.status_code == 201
    assert response.json()["text"] == text
    listed = api.get("/api/messages", after=response.json()["id"] - 1).json()["messages"]
    assert [m["text"] for m in listed] == [text]
    assert text in client.get("/").content.decode()


def test_post_message_of_exactly_500_characters_is_accepted(api):
    """Tests that the length limit is inclusive."""
    assert api.post("/api/messages", {"text": "x" * 500}).status_code == 201


def test_post_message_as_form_data_is_refused_with_400(client):
    """Tests that a body that is not declared as JSON gets a 400."""
    response = client.post("/api/messages", {"text": "hi"})
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_post_message_without_csrf_token_is_refused_403():
    """Tests that Django's CSRF protection applies to the API like to any browser POST."""
    client = Client(enforce_csrf_checks=True)
    response = client.post("/api/messages", {"text": "hi"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert Message.objects.count() == 0


def test_post_message_with_the_page_csrf_token_is_accepted():
    """Tests that the token the board page sets lets the browser post."""
    client = Client(enforce_csrf_checks=True)
    client.get("/")
    token = client.cookies["csrftoken"].value
    response = client.post("/api/messages", {"text": "hi"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


async def test_posted_message_is_broadcast_to_the_board_group():
    """Tests that a stored message reaches a member of the `board` group through Redis."""
    # One event loop throughout: a pub/sub subscription lives as long as its loop.
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("board", channel)
    response = await AsyncClient().post("/api/messages", {"text": "to everyone"}, content_type="application/json")
    event = await asyncio.wait_for(layer.receive(channel), 5)
    message = response.json()
    assert event == {"type": "board.message", "id": message["id"], "frame": json.dumps({"type": "message", **message})}


def test_list_messages_after_id_with_limit_pages_in_ascending_order(api):
    """Tests that ?after=&limit= returns the next page, oldest first, and says whether more follow."""
    ids = [api.post("/api/messages", {"text": f"m{n}"}).json()["id"] for n in range(5)]
    first = api.get("/api/messages", after=ids[0], limit=2).json()
    assert [m["id"] for m in first["messages"]] == ids[1:3]
    assert first["has_more"] is True
    rest = api.get("/api/messages", after=ids[2], limit=200).json()
    assert [m["id"] for m in rest["messages"]] == ids[3:]
    assert rest["has_more"] is False


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"after": "x"}, "after must be an integer"),
        ({"after": "-1"}, "after must be between"),
        ({"after": "99999999999999999999"}, "after must be between"),
        ({"after": "9" * 5000}, "after must be between"),
        # Python's int() takes these; a query parameter should not.
        ({"after": "1_0"}, "after must be an integer"),
        ({"after": " 1"}, "after must be an integer"),
        ({"after": "\u0661"}, "after must be an integer"),
        ({"after": "1\x00"}, "after must be an integer"),
        ({"limit": "0"}, "limit must be between 1 and 200"),
        ({"limit": "201"}, "limit must be between 1 and 200"),
    ],
)
def test_list_messages_with_bad_parameters_is_answered_400(api, params, error):
    """Tests that bad paging parameters get a 400 naming them."""
    response = api.get("/api/messages", **params)
    assert response.status_code == 400
    assert error in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("delete", "/api/messages", "GET, HEAD, POST"),
        ("get", "/api/jobs", "POST"),
        ("post", "/api/jobs/1", "GET, HEAD"),
        ("post", "/healthz", "GET, HEAD"),
        ("put", "/ws/healthz", "GET, HEAD"),
    ],
)
def test_unsupported_method_is_answered_json_405_with_allow(client, method, path, allowed):
    """Tests that a method an endpoint does not serve gets a JSON 405 whose Allow lists HEAD with GET."""
    response = getattr(client, method)(path)
    assert response.status_code == 405
    assert response["Allow"] == allowed
    assert "method not allowed" in response.json()["error"]


def test_board_page_refuses_post_with_405_allowing_get_and_head(client):
    """Tests that the page answers a POST with 405 and Allow: GET, HEAD."""
    response = client.post("/")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/", "/healthz", "/ws/healthz", "/api/messages?limit=5", "/api/jobs/{job}"])
def test_head_is_answered_like_get_without_a_body(client, path):
    """Tests that HEAD on every GET endpoint gets GET's status and headers, and no body."""
    job = Job.objects.create(total=1, lease_until="2030-01-01T00:00Z")
    url = path.format(job=job.id)
    got = client.get(url)
    head = client.head(url)
    assert got.status_code == 200
    assert head.status_code == got.status_code
    assert head["Content-Type"] == got["Content-Type"]
    assert head.content == b""


def test_head_on_an_unknown_job_is_404_like_get(client):
    """Tests that HEAD answers the same 404 as GET for a job that does not exist."""
    assert client.head("/api/jobs/424242").status_code == client.get("/api/jobs/424242").status_code == 404


def test_post_job_returns_202_queued_and_is_sent_to_the_jobs_channel(api):
    """Tests that a job is stored as queued, answered 202, and handed to the workers."""
    response = api.post("/api/jobs", {"steps": 3})
    assert response.status_code == 202
    body = response.json()
    assert body["state"] == "queued"
    assert response["Location"] == f"/api/jobs/{body['id']}"
    layer = get_channel_layer(services.JOBS_LAYER)
    assert async_to_sync(layer.receive)(services.JOBS_CHANNEL) == {"type": "job.run", "id": body["id"]}


@pytest.mark.parametrize(
    ("steps", "error"),
    [
        (0, "between 1 and 50"),
        (51, "between 1 and 50"),
        ("3", "must be an integer"),
        (True, "must be an integer"),
        (2.5, "must be an integer"),
        (None, "must be an integer"),
    ],
)
def test_post_job_with_bad_steps_is_answered_400_and_stores_nothing(api, steps, error):
    """Tests that steps outside 1..50 or of the wrong type get a 400 and no job."""
    response = api.post("/api/jobs", {"steps": steps})
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert Job.objects.count() == 0


def test_get_job_returns_its_progress(api):
    """Tests that a job's state, done and total are readable by id."""
    job_id = api.post("/api/jobs", {"steps": 4}).json()["id"]
    assert api.get(f"/api/jobs/{job_id}").json() == {"id": job_id, "state": "queued", "done": 0, "total": 4}


def test_get_unknown_job_is_answered_404(api):
    """Tests that an unknown job id gets a JSON 404."""
    response = api.get("/api/jobs/999999")
    assert response.status_code == 404
    assert "not found" in response.json()["error"]


def test_board_page_shows_the_latest_50_messages_and_the_resume_point(api, client):
    """Tests that the page renders the newest 50 messages oldest first, and the id the socket resumes from."""
    ids = [api.post("/api/messages", {"text": f"message {n}"}).json()["id"] for n in range(55)]
    response = client.get("/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "message 4<" not in page and "message 5<" in page and "message 54<" in page
    assert page.index("message 5<") < page.index("message 54<")
    assert f'data-last-id="{ids[-1]}"' in page
    assert "csrftoken" in response.cookies


@pytest.mark.parametrize("path", ["/healthz", "/ws/healthz"])
def test_healthz_reports_ok_when_database_and_redis_answer(client, path):
    """Tests that both health URLs answer 200 with each check ok."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "channel_layer": "ok"}
    assert response.json()["interface"] == "wsgi"


def test_healthz_reports_503_naming_the_channel_layer_when_redis_is_unreachable(client, settings):
    """Tests that an unreachable Redis turns /healthz into a 503 that names the channel layer."""
    settings.REDIS_HOSTS = [{"address": "redis://127.0.0.1:1/0"}]
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["channel_layer"]
    assert response.json()["checks"]["database"] == "ok"


def test_post_message_while_redis_is_down_is_stored_and_the_failed_broadcast_logged(api, settings, caplog):
    """Tests that a Redis outage costs the live broadcast only: the message is stored and answered 201."""
    settings.CHANNEL_LAYERS = channel_layers_at("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    response = api.post("/api/messages", {"text": "stored anyway"})
    assert response.status_code == 201
    assert Message.objects.filter(text="stored anyway").exists()
    assert "broadcast of message" in caplog.text


def test_every_response_carries_the_request_id_from_nginx(client):
    """Tests that X-Request-ID is echoed back, and replaced when malformed."""
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    made_up = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith newline")["X-Request-ID"]
    assert made_up != "bad id\nwith newline" and len(made_up) == 32


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("get", {"path": "/api/messages?" + "a&" * 1001}),
        ("get", {"path": "/healthz", "HTTP_HOST": "localhost:8080@evil.example"}),
        ("post", {"path": "/api/messages", "data": "a", "content_type": "multipart/form-data"}),
        ("post", {"path": "/api/messages", "data": "a&" * 1001, "content_type": "application/x-www-form-urlencoded"}),
    ],
    ids=["too-many-query-parameters", "disallowed-host", "multipart-without-boundary", "too-many-form-fields"],
)
def test_request_django_cannot_read_is_a_json_400_logged_as_one_warning_without_traceback(method, kwargs):
    """Tests that a request Django refuses while reading it gets a JSON 400 and one WARNING log line, not
    an ERROR with a traceback."""
    client = Client(enforce_csrf_checks=True)
    token = client.get("/").cookies["csrftoken"].value
    path = kwargs.pop("path")
    with app_log() as log:
        response = getattr(client, method)(path, HTTP_X_CSRFTOKEN=token, **kwargs)
    assert response.status_code == 400
    assert "bad request" in response.json()["error"]
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and " WARNING " in lines[0], lines
