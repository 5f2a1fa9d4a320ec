"""Nginx sends pages and the API to Gunicorn and /ws/ to Daphne, proved by stopping each tier."""

import pytest
from websockets.exceptions import InvalidStatus

from .stack import read_until_ready


@pytest.mark.parametrize(
    ("stopped", "page_answers", "socket_opens"),
    [
        pytest.param("daphne:*", True, False, id="daphne-stopped"),
        pytest.param("gunicorn", False, True, id="gunicorn-stopped"),
    ],
)
def test_stopping_one_tier_breaks_only_the_routes_it_serves(site, supervisor, stopped, page_answers, socket_opens):
    """Tests that with Daphne stopped / still answers and /ws/ and the long poll fail, and with Gunicorn
    stopped the reverse."""
    supervisor.stop(stopped)

    page = site.get("/")
    api = site.get("/api/messages?limit=1")
    long_poll = site.get("/api/messages/wait?after=0&timeout=0")
    assert (page.status_code == 200) is page_answers, f"GET / -> {page.status_code}"
    assert (api.status_code == 200) is page_answers, f"GET /api/messages -> {api.status_code}"
    assert (long_poll.status_code == 200) is socket_opens, f"GET /api/messages/wait -> {long_poll.status_code}"

    if socket_opens:
        with site.websocket("/ws/board/") as socket:
            assert read_until_ready(socket)["type"] == "ready"
    else:
        with pytest.raises(InvalidStatus) as refused:
            site.websocket("/ws/board/").close()
        assert refused.value.response.status_code in {502, 503, 504}
