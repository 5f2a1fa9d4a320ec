"""Long polling, GET /api/messages/wait (board/longpoll.py), through Django's ASGI test client with the
unit tier's real Redis behind it (and a throwaway one for an outage)."""

import asyncio
import json
import time

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.test import AsyncClient, Client
from layer_settings import channel_layers_at
from test_redis_outage import throwaway_redis  # noqa: F401 (a fixture the tests use)

from board import longpoll, services, views
from board.models import Message

# Also run on PostgreSQL (make test-unit: UNIT_DATABASE=postgresql -m postgresql).
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgresql]

WAIT = "/api/messages/wait"
# Seconds a request that should answer at once (or soon after a broadcast) may take on a loaded box.
PROMPT = 5


@pytest.fixture
async def watch(monkeypatch):
    """The event loop's BoardWatch, whose `empty_reads` counts the database reads that found nothing
    (a request then waits); closed after the test (its task would outlive the test's loop)."""
    watch = longpoll.board_watch()
    watch.empty_reads = []
    read_page = longpoll.read_page

    def counted(after, limit):
        page = read_page(after, limit)
        if not page:
            watch.empty_reads.append(after)
        return page

    monkeypatch.setattr(longpoll, "read_page", counted)
    yield watch
    await watch.close()


async def parked(watch, count: int = 1) -> None:
    """Return once `count` requests have found nothing to answer and wait on the board subscription."""
    deadline = time.monotonic() + PROMPT
    while len(watch.waiters) < count or len(watch.empty_reads) < count:
        assert time.monotonic() < deadline, f"{len(watch.waiters)} of {count} requests parked"
        await asyncio.sleep(0.01)


async def post(text: str) -> dict:
    response = await AsyncClient().post("/api/messages", {"text": text}, content_type="application/json")
    assert response.status_code == 201
    return response.json()


async def timed_get(path: str, **params):
    """(response, seconds) of a GET through the ASGI handler; fails after 70 s (the longest wait is 55)."""
    started = time.monotonic()
    response = await asyncio.wait_for(AsyncClient().get(path, params), 70)
    return response, time.monotonic() - started


async def test_wait_with_stored_messages_after_the_id_answers_at_once_like_the_list(watch):
    """Tests that a long poll whose client is behind answers at once, the same body as GET /api/messages."""
    ids = [(await post(f"backlog {n}"))["id"] for n in range(3)]
    response, seconds = await timed_get(WAIT, after=ids[0], timeout=55)
    listed = await AsyncClient().get("/api/messages", {"after": ids[0]})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == listed.json()
    assert [m["id"] for m in response.json()["messages"]] == ids[1:]
    assert seconds < PROMPT


async def test_wait_pages_with_limit_and_says_more_follow(watch):
    """Tests that `limit` pages the answer and has_more says more are stored, as in GET /api/messages."""
    ids = [(await post(f"page {n}"))["id"] for n in range(3)]
    response, _ = await timed_get(WAIT, after=ids[0] - 1, limit=2)
    assert [m["id"] for m in response.json()["messages"]] == ids[:2]
    assert response.json()["has_more"] is True


async def test_parked_wait_is_woken_by_the_next_posted_message(watch):
    """Tests that a client that is up to date waits, and gets a message posted meanwhile at once."""
    last = (await post("seen already"))["id"]
    waiting = asyncio.create_task(timed_get(WAIT, after=last, timeout=30))
    await parked(watch)
    message = await post("the next one")
    response, seconds = await waiting
    assert response.json() == {"messages": [message], "has_more": False}
    assert seconds < PROMPT + 1


async def test_wait_gets_every_message_after_the_id_when_the_broadcast_skips_one(watch):
    """Tests that a broadcast with a gap before it (a message that was stored but never broadcast)
    answers with every message after the client's id, in order."""
    last = (await post("seen already"))["id"]
    waiting = asyncio.create_task(timed_get(WAIT, after=last, timeout=30))
    await parked(watch)
    silent = await database_sync_to_async(Message.objects.create)(text="stored, never broadcast")
    loud = await post("broadcast")
    response, _ = await waiting
    assert [m["id"] for m in response.json()["messages"]] == [silent.id, loud["id"]]


async def test_wait_with_nothing_new_answers_empty_after_its_timeout(watch):
    """Tests that a long poll nobody wakes answers `{"messages": [], "has_more": false}` after `timeout` s."""
    last = (await post("nothing after this"))["id"]
    response, seconds = await timed_get(WAIT, after=last, timeout=1)
    assert response.status_code == 200
    assert response.json() == {"messages": [], "has_more": False}
    assert 1 <= seconds < 1 + PROMPT


async def test_message_committed_between_the_read_and_the_wait_is_not_lost(watch, monkeypatch):
    """Tests that a message stored right after the request read the database (before it waits) still
    answers the request: it subscribed before reading, so the message's broadcast reaches it."""
    last = (await post("seen already"))["id"]
    read_page = longpoll.read_page
    posted = []

    def read_then_post(after, limit):
        page = read_page(after, limit)
        if not posted:
            posted.append(services.post_message("committed after the read"))
        return page

    monkeypatch.setattr(longpoll, "read_page", read_then_post)
    response, seconds = await timed_get(WAIT, after=last, timeout=20)
    assert [m["id"] for m in response.json()["messages"]] == [posted[0].id]
    assert seconds < PROMPT + 1


async def test_parked_requests_share_one_board_subscription(watch, redis_server):
    """Tests that 20 parked long polls cost Redis two subscriptions (the process's channel and the
    board group), not one per request, and that one broadcast answers them all."""
    last = (await post("seen already"))["id"]
    waiting = [asyncio.create_task(timed_get(WAIT, after=last, timeout=30)) for _ in range(20)]
    await parked(watch, 20)
    channels = await sync_to_async(redis_server.pubsub_channels)()
    assert len(channels) == 2, channels
    message = await post("for all twenty")
    for response, _ in await asyncio.gather(*waiting):
        assert response.json() == {"messages": [message], "has_more": False}


async def test_parked_wait_survives_a_lost_redis_connection_and_gets_the_next_message(watch, redis_server):
    """Tests that when Redis drops the subscriber connection, parked requests join again on a new one
    and still get the next message (no request hangs on a dead subscription)."""
    last = (await post("seen already"))["id"]
    waiting = asyncio.create_task(timed_get(WAIT, after=last, timeout=30))
    await parked(watch)
    first_channel = watch.channel
    await sync_to_async(redis_server.client_kill_filter)(_type="pubsub")
    deadline = time.monotonic() + 10
    while watch.channel in (None, first_channel) or not watch.waiters:
        assert time.monotonic() < deadline, "the watch never joined again"
        await asyncio.sleep(0.05)
    message = await post("after the lost connection")
    response, _ = await waiting
    assert response.json()["messages"] == [message]


async def test_wait_while_redis_is_down_is_answered_503(throwaway_redis, settings):  # noqa: F811
    """Tests that a long poll that cannot join the board group (Redis down) gets a JSON 503 with
    Retry-After, not a hang or a 500."""
    settings.CHANNEL_LAYERS = channel_layers_at(throwaway_redis.url, socket_connect_timeout=1)
    throwaway_redis.stop()
    response, seconds = await timed_get(WAIT, after=0, timeout=5)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "channel layer is unreachable" in response.json()["error"]
    await longpoll.board_watch().close()


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"after": "x"}, "after must be an integer"),
        ({"after": "-1"}, "after must be between"),
        ({"after": "1_0"}, "after must be an integer"),
        ({"timeout": "soon"}, "timeout must be an integer"),
        ({"timeout": "2.5"}, "timeout must be an integer"),
        ({"timeout": "-1"}, "timeout must be between 0 and 55"),
        ({"timeout": "56"}, "timeout must be between 0 and 55"),
        ({"limit": "0"}, "limit must be between 1 and 200"),
    ],
)
async def test_wait_with_bad_parameters_is_answered_400(params, error):
    """Tests that bad after/timeout/limit get a JSON 400 naming them, at once."""
    response, seconds = await timed_get(WAIT, **params)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert seconds < PROMPT


@pytest.mark.parametrize("method", ["post", "put", "delete"])
async def test_wait_other_than_get_or_head_is_answered_json_405(method):
    """Tests that the long poll takes GET and HEAD only, with a JSON 405 and Allow."""
    response = await getattr(AsyncClient(), method)(WAIT)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_wait_under_wsgi_is_answered_404_at_once():
    """Tests that a long poll reaching the WSGI server (Gunicorn) is refused with the contract's JSON 404
    at once instead of holding a worker."""
    started = time.monotonic()
    response = Client().get(WAIT, {"after": 0, "timeout": 55})
    assert response.status_code == 404
    assert response.json() == {"error": "long polling needs the ASGI server (deploy_mode split or asgi)"}
    assert time.monotonic() - started < PROMPT


async def test_wait_in_deploy_mode_wsgi_is_answered_404_under_asgi_too(settings):
    """Tests that deploy mode wsgi (no channel layer) refuses long polling whichever server answers."""
    settings.DEPLOY_MODE = "wsgi"
    response, _ = await timed_get(WAIT, after=0, timeout=55)
    assert response.status_code == 404
    assert "needs the ASGI server" in response.json()["error"]


@pytest.mark.parametrize(
    ("mode", "transports"),
    [
        (None, "websocket longpoll poll"),
        ("split", "websocket longpoll poll"),
        ("asgi", "websocket longpoll poll"),
        ("wsgi", "poll"),
    ],
)
def test_page_names_the_transports_the_deploy_mode_offers(settings, mode, transports):
    """Tests that the board page's data-transports lists what the deployment serves, preferred first
    (no DEPLOY_MODE setting: split)."""
    if mode is None:
        del settings.DEPLOY_MODE
    else:
        settings.DEPLOY_MODE = mode
    page = Client().get("/").content.decode()
    assert f'data-transports="{transports}"' in page
    assert views.page_transports() == transports


def test_broadcast_answer_is_the_list_answer_for_one_message():
    """Tests that the body built once per broadcast is what GET /api/messages says for that message."""
    message = services.post_message("one message")
    broadcast = longpoll.Broadcast.from_event(services.board_event(message))
    assert broadcast.id == message.id
    assert json.loads(broadcast.body) == services.messages_page(message.id - 1, views.BOARD_PAGE_SIZE)
