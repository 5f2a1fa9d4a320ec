"""Abuse limits on sockets through Nginx, on each target (deploy/defaults.yml: daphne_ws_post_burst,
daphne_ws_post_rate, daphne_ws_max_message_size): a socket posting over its rate gets a rate-limit
error frame and stays open; a message over the size limit closes that socket with 1009; other
sockets and the server stay healthy; a client posting within the rate is never limited."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from .stack import read_until_ready, receive_json


def post(ws, text: str) -> dict:
    """Send a post frame; the socket's answer (its own message coming back, or an error)."""
    ws.send(json.dumps({"type": "post", "text": text}))
    while True:
        frame = receive_json(ws, 10)
        # Another client's message may arrive first; the answer is the error or this text.
        if frame["type"] == "error" or frame.get("text") == text:
            return frame


def frames_until_closed(ws) -> None:
    """Read frames until the socket closes (raises ConnectionClosed), at most 10 s for each."""
    while True:
        receive_json(ws, 10)


def test_posts_over_a_sockets_rate_get_an_error_frame_and_the_socket_stays_open(target, site):
    """Tests that the post after the burst is refused with a rate-limit error frame, that a second
    socket posts meanwhile, and that the limited socket posts again after retry_after."""
    burst = target.variables["daphne_ws_post_burst"]
    tag = uuid.uuid4().hex[:8]
    with site.websocket("/ws/board/") as flooder, site.websocket("/ws/board/") as other:
        read_until_ready(flooder)
        read_until_ready(other)
        answers = [post(flooder, f"{tag} flood {n}") for n in range(burst + 1)]
        assert [a["type"] for a in answers] == ["message"] * burst + ["error"], answers
        refused = answers[-1]
        assert refused["error"].startswith(f"rate limited: at most {burst} posts at once"), refused
        assert post(other, f"{tag} other")["type"] == "message"
        time.sleep(refused["retry_after"] * 1.5)
        assert post(flooder, f"{tag} after the wait")["type"] == "message"
    stored = [m["text"] for m in site.get("/api/messages?limit=200&after=0").json()["messages"]]
    assert f"{tag} flood {burst}" not in stored and f"{tag} flood {burst - 1}" in stored
    assert site.healthy()


def test_a_message_over_the_size_limit_closes_its_socket_with_1009(target, site):
    """Tests that a message over daphne_ws_max_message_size closes that socket with 1009 "message too
    big" through Nginx, while another socket keeps posting and the site stays healthy."""
    size = target.variables["daphne_ws_max_message_size"]
    with site.websocket("/ws/board/") as big, site.websocket("/ws/board/") as other:
        read_until_ready(big)
        read_until_ready(other)
        big.send(json.dumps({"type": "post", "text": "x" * size}))
        with pytest.raises(ConnectionClosed) as closed:
            frames_until_closed(big)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009, closed.value
        assert post(other, f"after a big one {uuid.uuid4().hex[:8]}")["type"] == "message"
    assert site.healthy()


def test_a_client_posting_within_the_rate_is_never_limited(target, site):
    """Tests that more posts than the burst, sent no faster than daphne_ws_post_rate, all go through."""
    burst, rate = target.variables["daphne_ws_post_burst"], target.variables["daphne_ws_post_rate"]
    tag = uuid.uuid4().hex[:8]
    with site.websocket("/ws/board/") as ws:
        read_until_ready(ws)
        for n in range(burst + 2):
            assert post(ws, f"{tag} steady {n}")["type"] == "message"
            time.sleep(1.1 / rate)
