"""Long polls parked in the ASGI application Daphne runs (config.asgi) hold no thread each
(config/parked_http.py)."""

import asyncio
import json
import threading

import pytest
from channels.testing import HttpCommunicator
from test_longpoll import parked, post, watch  # noqa: F401 (watch: a fixture the test uses)

from config.asgi import application


# Not marked `postgresql`: on PostgreSQL this test left six connections open on the event loop's pool
# threads (the database reads), which kept pytest-django from dropping its test database at the end.
@pytest.mark.django_db(transaction=True)
async def test_parked_requests_through_the_asgi_application_hold_no_thread_each(watch):  # noqa: F811
    """Tests that 40 long polls parked in the ASGI application Daphne runs (config.asgi) add no thread
    per request (Django's handler would start one each: config/parked_http.py), and all get the next
    message."""
    last = (await post("seen already"))["id"]
    threads_before = threading.active_count()
    path = f"/api/messages/wait?after={last}&timeout=30"
    polls = [HttpCommunicator(application, "GET", path, headers=[(b"host", b"localhost")]) for _ in range(40)]
    waiting = [asyncio.create_task(poll.get_response(timeout=40)) for poll in polls]
    await parked(watch, 40)
    # New threads: the event loop's pool for database reads and the one thread-sensitive thread, a
    # few in all; Django's own handler would add one per parked request.
    assert threading.active_count() - threads_before < 10
    message = await post("for all forty")
    for response in await asyncio.gather(*waiting):
        assert response["status"] == 200
        assert json.loads(response["body"]) == {"messages": [message], "has_more": False}
